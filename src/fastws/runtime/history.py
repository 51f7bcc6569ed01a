"""Room history in this process's memory: the last messages of each room that
keeps history, each with its position (the room's epoch and an offset).

A room's position is a pair. The ``offset`` counts the room's messages (1, 2,
3...; never reused while the epoch stands). The ``epoch`` is a short random
string that names one unbroken run of offsets: it changes whenever the room's
history may have lost a message, here when the process starts and when a room's
record is dropped (its newest message older than ``history_ttl``). A reader
holding (epoch, offset) therefore knows exactly what it missed, or that it
cannot know.

Three bounds, all counted in ``stats``: ``history_size`` messages per room,
``history_ttl`` seconds per message, and ``history_max_bytes`` for every room
together, evicting the oldest message of the process first. A message's bytes
are its payload's memory plus what holding it costs (the entry, its position,
its time, its place in two queues), so the figure follows the process's real
growth.

Which rooms keep history is ``history_rooms``: None (every room), a glob
pattern or a list of them (``"chat:*"``), or a function of the room name. The
answer is remembered per room (a bounded cache), so a function is asked once
per room, not per message.
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
import time
from collections import deque
from itertools import islice
from typing import Any, Callable, Hashable, NamedTuple

__all__ = ["HistoryMessage", "MemoryHistory", "room_selector"]

#: What holding one message costs besides its payload: the entry tuple (72), its
#: offset (28) and time (24) objects, and a slot in the room's and the
#: process's queues (8 each). Measured on CPython 3.10-3.13 (sys.getsizeof).
ENTRY_OVERHEAD = 72 + 28 + 24 + 8 + 8
#: Rooms whose "no history" answer is remembered; past it the cache restarts.
_DECISIONS_MAX = 65536
# Why a message was evicted (indexes into MemoryHistory._evicted).
_SIZE, _AGE, _MEMORY = 0, 1, 2


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


def new_epoch() -> str:
    """A fresh epoch: 8 hex characters, random, so no two runs share one."""
    return os.urandom(4).hex()


class _Room:
    """One room's history: its epoch, the last offset given, the kept entries
    (offset, time, opcode, payload), and how many of its places in the
    process's eviction queue are empty (their messages dropped by size or age)."""

    __slots__ = ("epoch", "offset", "entries", "stale")

    def __init__(self) -> None:
        self.epoch = new_epoch()
        self.offset = 0
        self.entries: deque[tuple[int, float, int, bytes]] = deque()
        self.stale = 0


# What one kept message costs besides its payload's bytes: the bytes object's
# own header, then ENTRY_OVERHEAD.
_FIXED = sys.getsizeof(b"") + ENTRY_OVERHEAD


class MemoryHistory:
    """The history of every room of one hub, in memory (no backplane)."""

    def __init__(self, size: int, ttl: float, max_bytes: int, rooms: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self.ttl = ttl
        self.max_bytes = max_bytes
        self._wanted = room_selector(rooms)
        self._clock = clock
        self._rooms: dict[Hashable, _Room] = {}
        self._without: set[Hashable] = set()
        # One place per stored message, naming its room, in the order stored:
        # the process's oldest message is the leftmost place whose room has not
        # dropped it already (``_Room.stale`` counts those, always its leftmost).
        self._order: deque[_Room] = deque()
        self._kept = 0
        self._swept = 0.0
        #: Bytes held (payloads and what holding them costs).
        self.nbytes = 0
        self._stored = 0
        self._evicted = [0, 0, 0]       # by size, by age, by memory
        self._rooms_dropped = 0

    @property
    def stats(self) -> dict[str, int]:
        """Messages stored, and evicted by each bound; room records dropped."""
        return {"stored": self._stored, "evicted_size": self._evicted[_SIZE],
                "evicted_ttl": self._evicted[_AGE], "evicted_bytes": self._evicted[_MEMORY],
                "rooms_dropped": self._rooms_dropped}

    # ------------------------------------------------------------------ writing

    def keeps(self, room: Hashable) -> bool:
        """Whether ``room`` keeps history (``history_rooms``)."""
        if room in self._rooms:
            return True
        if room in self._without:
            return False
        if self._wanted(room):
            return True
        if len(self._without) >= _DECISIONS_MAX:
            self._without.clear()
        self._without.add(room)
        return False

    def append(self, room: Hashable, opcode: int, payload: str | bytes) -> tuple[str, int] | None:
        """Store one message published to ``room``; its (epoch, offset), or None
        when the room keeps no history."""
        rec = self._rooms.get(room)
        if rec is None:
            if not self.keeps(room):
                return None
            rec = self._rooms[room] = _Room()
        if type(payload) is str:
            payload = payload.encode()
        elif type(payload) is not bytes:
            payload = bytes(payload)
        now = self._clock()
        offset = rec.offset = rec.offset + 1
        entries = rec.entries
        entries.append((offset, now, opcode, payload))
        self.nbytes += len(payload) + _FIXED
        self._kept += 1
        self._order.append(rec)
        self._stored += 1
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

    def _drop_oldest(self, rec: _Room, reason: int) -> None:
        payload = rec.entries.popleft()[3]
        self.nbytes -= len(payload) + _FIXED
        self._kept -= 1
        rec.stale += 1              # its place in _order is now empty
        self._evicted[reason] += 1

    def _expire(self, rec: _Room, now: float) -> None:
        entries = rec.entries
        while entries and now - entries[0][1] >= self.ttl:
            self._drop_oldest(rec, _AGE)

    def _evict_oldest(self) -> None:
        rec = self._order.popleft()
        if rec.stale:
            rec.stale -= 1          # that message was gone already
        elif rec.entries:
            self._drop_oldest(rec, _MEMORY)
            rec.stale -= 1          # and its place was the one just taken

    def _compact(self) -> None:
        """Rebuild ``_order`` from what is kept (a room that drops its own old
        messages, by size or age, leaves empty places behind): one place per
        kept message, oldest first. Amortized: it runs when half are empty."""
        kept = sorted(((entry[1], rec) for rec in self._rooms.values() for entry in rec.entries),
                      key=lambda pair: pair[0])     # stable: a room's own order holds
        self._order = deque(rec for _t, rec in kept)
        for rec in self._rooms.values():
            rec.stale = 0

    # ------------------------------------------------------------------ reading

    def position(self, room: Hashable) -> tuple[str, int] | None:
        """The room's (epoch, last offset), or None when it has no history record."""
        rec = self._rooms.get(room)
        return None if rec is None else (rec.epoch, rec.offset)

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
        return [HistoryMessage(room, rec.epoch, offset, payload.decode() if opcode == 1 else payload)
                for offset, _t, opcode, payload in picked]

    # ------------------------------------------------------------------ upkeep

    def sweep(self, now: float | None = None) -> None:
        """Expire old messages everywhere and drop the records of rooms with
        none left (the next message of such a room starts a new epoch). The
        server calls it with its timers; it works at most once a second."""
        if now is None:
            now = self._clock()
        if now - self._swept < 1.0:
            return
        self._swept = now
        gone = []
        for room, rec in self._rooms.items():
            self._expire(rec, now)
            if not rec.entries:
                gone.append(room)
        for room in gone:
            del self._rooms[room]
        self._rooms_dropped += len(gone)
        if gone or len(self._order) > 2 * self._kept + 1024:
            self._compact()
