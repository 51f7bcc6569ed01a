"""Room history in this process's memory: the last messages of each room that
keeps history, each with its position (the room's epoch and an offset).

A room's position is a pair. The ``offset`` counts the room's messages (1, 2,
3...; never reused while the epoch stands). The ``epoch`` is a short string
that names one unbroken run of offsets: it changes whenever the room's history
may have lost a message. Here that is when the process starts (a random
prefix per process) and when a room's record is dropped because it holds no
message any more (all expired, or evicted to stay within
``history_max_bytes``): the room's next message starts a new epoch at offset
1. A reader holding (epoch, offset) can therefore tell what it missed: the
messages after its offset under the same epoch, if the first kept one is the
next offset; otherwise it cannot know, and must start afresh.

Three bounds, all counted in ``stats``: ``history_size`` messages per room,
``history_ttl`` seconds per message, and ``history_max_bytes`` for every room
of the hub together (one hub per app per event loop: per process, in
practice), evicting the oldest message first. What is counted is each
message's payload plus what holding it costs (the entry, its position, its
time, its place in two queues), and each room's record (its queue, its epoch)
while it holds a message, so the figure follows the process's real growth. A
quiet room's record (a member learnt its position, no message is kept) is not
counted: it is dropped ``history_ttl`` after that.

Which rooms keep history is ``history_rooms``: None (every room), a glob
pattern or a list of them (``"chat:*"``; patterns match str names only), or a
function of the room name. The answer is remembered per room (a bounded
cache), so a function is asked once per room, not per message; a function
that raises is logged and its room keeps no history.
"""

from __future__ import annotations

import fnmatch
import itertools
import logging
import os
import re
import sys
import time
from collections import deque
from itertools import islice
from typing import Any, Callable, Hashable, NamedTuple

__all__ = ["HistoryMessage", "MemoryHistory", "RoomChoice", "room_selector"]

log = logging.getLogger("fastws")

#: What holding one message costs besides its payload object: the entry tuple
#: (72), its offset (28) and time (24) objects, and a slot in the room's and the
#: process's queues (8 each). Measured on CPython 3.10-3.13 (sys.getsizeof).
ENTRY_OVERHEAD = 72 + 28 + 24 + 8 + 8
#: What the fastws.v1 form adds to a message (its type, room, position, frame
#: header), at most, for a room name of ordinary length.
_ENVELOPE_WEIGHT = 160
#: What one room's record costs: its queue (an empty deque holds one block),
#: the record, its epoch string, and its slot in the rooms' dict.
ROOM_OVERHEAD = sys.getsizeof(deque()) + 80 + sys.getsizeof("0" * 12) + 100
#: Rooms whose history_rooms answer is remembered; past it the cache restarts.
_DECISIONS_MAX = 65536
# Why a message was evicted (indexes into MemoryHistory._evicted).
_SIZE, _AGE, _MEMORY = 0, 1, 2

# Epochs: a random prefix per process, then a counter, so no two records of one
# process share an epoch and a restarted process shares none with its past.
_EPOCH_PREFIX = os.urandom(3).hex()
_epochs = itertools.count(1)


class HistoryMessage(NamedTuple):
    """One stored room message and its position."""

    room: Hashable
    epoch: str
    offset: int
    data: str | bytes           # str for a text message, bytes for a binary one


def room_selector(rooms: Any) -> Callable[[Hashable], bool]:
    """``history_rooms`` as a function of the room name (see the module docstring)."""
    if rooms is None:
        return lambda room: True
    if callable(rooms):
        return lambda room: bool(rooms(room))
    patterns = [rooms] if isinstance(rooms, str) else list(rooms)
    if not all(isinstance(p, str) for p in patterns):
        raise TypeError(f"websocket(history_rooms=...) takes None, a glob pattern, a list of "
                        f"them, or a function of the room name; got {rooms!r}")
    matcher = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)) \
        if patterns else None
    return lambda room: type(room) is str and matcher is not None \
        and matcher.match(room) is not None


#: What an empty bytes object holds besides its data (sys.getsizeof(b"")).
_BYTES_HEAD = sys.getsizeof(b"")


def _footprint(payload):
    """The memory a stored payload holds (sys.getsizeof, without the call for bytes)."""
    if type(payload) is bytes:
        return len(payload) + _BYTES_HEAD
    return sys.getsizeof(payload)


class RoomChoice:
    """``history_rooms`` asked once per room: the answers are remembered (at
    most ``_DECISIONS_MAX`` rooms, then the memory restarts); a function that
    raises is logged and its room keeps no history."""

    def __init__(self, rooms: Any = None) -> None:
        self._wanted = room_selector(rooms)
        self._answers: dict[Hashable, bool] = {}

    def __call__(self, room: Hashable) -> bool:
        answer = self._answers.get(room)
        if answer is None:
            try:
                answer = bool(self._wanted(room))
            except Exception:
                log.exception("history_rooms raised for room %r: it keeps no history", room)
                answer = False
            if len(self._answers) >= _DECISIONS_MAX:
                self._answers.clear()
            self._answers[room] = answer
        return answer


def new_epoch() -> str:
    """A fresh epoch: this process's random prefix and a counter (hex)."""
    return f"{_EPOCH_PREFIX}{next(_epochs):x}"


class _Room:
    """One room's history: its name, its epoch, the last offset given, the kept
    entries (offset, time, opcode, payload), and how many of its places in the
    process's eviction queue are empty (their messages dropped already)."""

    def __init__(self, room: Hashable, now: Any) -> None:
        self.room = room
        self.epoch = new_epoch()
        self.offset = 0
        self.entries = deque()
        self.stale = 0
        # When a member last learnt the position of this record while it held
        # no message: kept that long (history_ttl) so a quiet room stays recoverable.
        self.touched = now


class MemoryHistory:
    """The history of every room of one hub, in memory (no backplane)."""

    def __init__(self, size: int, ttl: float, max_bytes: int, rooms: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._choice = RoomChoice(rooms)
        self._clock = clock
        self._rooms = {}
        # One place per stored message, naming its room, in the order stored:
        # the oldest message is the leftmost place whose room has not dropped it
        # already (``_Room.stale`` counts those, always the room's leftmost).
        self._order = deque()
        self._kept = 0
        # Records left without a message by reads' expiry: dropped by sweep.
        self._emptied = set()
        self._swept = 0.0
        #: Bytes held (messages, their keeping, the rooms' records).
        self.nbytes = 0
        self._stored = 0
        self._evicted = [0, 0, 0]       # by size, by age, by memory
        self._rooms_dropped = 0
        self._last = None

    @property
    def stats(self) -> dict[str, int]:
        """Messages stored, and evicted by each bound; room records dropped."""
        return {"stored": self._stored, "evicted_size": self._evicted[_SIZE],
                "evicted_ttl": self._evicted[_AGE], "evicted_bytes": self._evicted[_MEMORY],
                "rooms_dropped": self._rooms_dropped}

    # ------------------------------------------------------------------ writing

    def keeps(self, room):  # (room: Hashable) -> bool; typed in history.pxd
        """Whether ``room`` keeps history (``history_rooms``)."""
        return room in self._rooms or self._choice(room)

    def append(self, room, opcode, payload):  # -> (epoch, offset) | None; typed in history.pxd
        """Store one message published to ``room`` (text as str, binary as bytes);
        its (epoch, offset), or None when the room keeps no history."""
        now = self._clock()
        rec = self._record(room, now)
        if rec is None:
            return None
        if type(payload) is not str and type(payload) is not bytes:
            payload = bytes(payload)
        offset = rec.offset = rec.offset + 1
        entries = rec.entries
        if not entries:
            self.nbytes += ROOM_OVERHEAD    # a record counts while it holds a message
        entries.append((offset, now, opcode, payload))
        self.nbytes += _footprint(payload) + ENTRY_OVERHEAD
        self._kept += 1
        self._order.append(rec)
        self._stored += 1
        self._last = (rec.epoch, offset)
        if len(entries) > self.size:
            self._drop_oldest(rec, _SIZE)
        if now - entries[0][1] >= self.ttl:
            self._expire(rec, now)
        if self.nbytes > self.max_bytes:
            while self.nbytes > self.max_bytes and self._order:
                self._evict_oldest()
        if len(self._order) > 2 * self._kept + 1024:
            self._compact()
        return rec.epoch, offset

    def _record(self, room, now):
        """The room's record, made now if the room keeps history; else None."""
        rec = self._rooms.get(room)
        if rec is None and self.keeps(room):
            rec = self._rooms[room] = _Room(room, now)
        return rec

    def _drop_oldest(self, rec, reason):
        payload = rec.entries.popleft()[3]
        self.nbytes -= _footprint(payload) + ENTRY_OVERHEAD
        if not rec.entries:
            self.nbytes -= ROOM_OVERHEAD
        self._kept -= 1
        rec.stale += 1              # its place in _order is now empty
        self._evicted[reason] += 1

    def _expire(self, rec, now):
        entries = rec.entries
        while entries and now - entries[0][1] >= self.ttl:
            self._drop_oldest(rec, _AGE)
        if not entries:
            self._emptied.add(rec)

    def _evict_oldest(self):
        rec = self._order.popleft()
        if rec.stale:
            rec.stale -= 1          # that message was gone already
        elif rec.entries:
            self._drop_oldest(rec, _MEMORY)
            rec.stale -= 1          # and its place was the one just taken
            if not rec.entries:
                self._forget(rec)   # its whole history went: a new epoch next time

    def _forget(self, rec):
        """Drop an empty room's record (its places left in _order are all stale)."""
        if self._rooms.get(rec.room) is rec:
            del self._rooms[rec.room]
            self._rooms_dropped += 1
        self._emptied.discard(rec)

    def _compact(self):
        """Drop the empty places from ``_order`` (a room that drops its own old
        messages, by size or age, leaves them behind), in one pass that keeps
        the order. Amortized: it runs when at least half are empty."""
        kept: deque[_Room] = deque()
        for rec in self._order:
            if rec.stale:
                rec.stale -= 1
            else:
                kept.append(rec)
        self._order = kept

    # ------------------------------------------------------------------ reading

    def position(self, room: Hashable) -> tuple[str, int] | None:
        """The room's (epoch, last offset), or None when it has no history record."""
        rec = self._rooms.get(room)
        return None if rec is None else (rec.epoch, rec.offset)

    def stored_last(self) -> tuple[str, int] | None:
        """The position of the message ``append`` stored last (``app.publish``)."""
        return self._last

    def touch(self, room: Hashable) -> tuple[str, int] | None:
        """The room's current position for a member that joins it, its record
        made if need be (a quiet room's position must outlive the join, for
        ``history_ttl``); None when the room keeps no history."""
        now = self._clock()
        rec = self._record(room, now)
        if rec is None:
            return None
        # Kept at least history_ttl from now, even once its messages expire.
        rec.touched = now
        if not rec.entries:
            self._emptied.add(rec)
        return rec.epoch, rec.offset

    def check(self, room: Hashable, epoch: Any, offset: Any) -> str | None:
        """Why the messages after (``epoch``, ``offset``) cannot all be served
        (docs/protocol.md's reasons), or None when they can: the history holds
        every one of them."""
        if type(offset) is not int or offset < 0 or type(epoch) is not str:
            return "bad position"
        rec = self._rooms.get(room)
        if rec is None or epoch != rec.epoch:
            # No record (a restarted process, a record dropped) is a new epoch too.
            return "epoch changed"
        if offset > rec.offset:
            return "bad position"
        self._expire(rec, self._clock())
        entries = rec.entries
        first = entries[0][0] if entries else rec.offset + 1
        if offset + 1 < first:
            return "too old"
        return None

    def after(self, room: Hashable, offset: int, max_bytes: int) -> list[tuple[int, int, Any]]:
        """(offset, kind, payload) of the room's messages after ``offset``, oldest
        first, as many as fit in about ``max_bytes`` as fastws.v1 frames (at
        least one when there is one). For a replay: ``check`` first."""
        rec = self._rooms.get(room)
        if rec is None:
            return []
        entries = rec.entries
        first = entries[0][0] if entries else rec.offset + 1
        out: list[tuple[int, int, Any]] = []
        size = 0
        for entry in islice(entries, max(0, offset + 1 - first), None):
            payload = entry[3]
            # What it weighs as a fastws.v1 frame: base64 or escaping can make
            # a payload a third larger, and the envelope adds its fields.
            weight = len(payload) * 4 // 3 + _ENVELOPE_WEIGHT
            if out and size + weight > max_bytes:
                break
            size += weight
            out.append((entry[0], entry[2], payload))
        return out

    def read(self, room: Hashable, since: int | None = None, limit: int = 100) -> list[HistoryMessage]:
        """The room's kept messages, oldest first: with ``since``, those after
        that offset (at most ``limit``, the oldest of them); without, the last
        ``limit``."""
        rec = self._rooms.get(room)
        if rec is None or limit <= 0:
            return []
        self._expire(rec, self._clock())
        entries = rec.entries
        if since is None:
            picked = list(islice(entries, max(0, len(entries) - limit), None))
        else:
            first = entries[0][0] if entries else rec.offset + 1
            start = min(len(entries), max(0, since + 1 - first))
            picked = list(islice(entries, start, start + limit))
        # Text is kept as it was published: a str, or the bytes a dumps such as
        # orjson returned (read back as str, as a client receives it).
        return [HistoryMessage(room, rec.epoch, offset,
                               payload.decode() if opcode != 2 and type(payload) is bytes else payload)
                for offset, _t, opcode, payload in picked]

    # ------------------------------------------------------------------ upkeep

    def sweep(self, now: Any = None) -> None:
        """Expire what is past ``history_ttl`` and drop the records of rooms left
        with no message (their next message starts a new epoch). The server
        calls it with its timers; it works at most once a second, and only on
        what expired (the oldest messages are at the left of ``_order``)."""
        now = self._clock() if now is None else float(now)
        if now - self._swept < 1.0:
            return
        self._swept = now
        order = self._order
        ttl = self.ttl
        while order:
            rec = order[0]
            if rec.stale:
                order.popleft()
                rec.stale -= 1
            elif rec.entries and now - rec.entries[0][1] >= ttl:
                order.popleft()
                self._drop_oldest(rec, _AGE)
                rec.stale -= 1
                if not rec.entries:
                    self._emptied.add(rec)
            else:
                break
        for rec in list(self._emptied):
            if rec.entries:
                self._emptied.discard(rec)
            elif now - rec.touched >= ttl:
                self._forget(rec)
