"""``fastws.v1`` sessions: the subprotocol's negotiation, the positions a
reconnecting client states, and recovery when the route handler joins a room
(docs/protocol.md, sections 1 and 4).

A client offers ``fastws.v1`` (or ``fastws.v1+NAME`` to speak the application's
subprotocol NAME too) and, when it comes back, a ``fastws.v1.positions.DATA``
token: base64url of the JSON ``[[room, epoch, offset], ...]``. The upgrade reads
them into a ``Session``; the socket holds it. When the handler joins the client
to a room it holds a position for, the session sends the messages after that
position from the room's history, then ``fastws.joined`` with the outcome,
then the socket is a member like any other: the same synchronous step that
sends the last of the replay joins the room, so no message published meanwhile
is sent twice or never. A replay larger than half the high-water mark is paced:
one batch, then the socket's drain, then the next, and the room is joined only
once the replay has caught up.

With a backplane the history is in Redis (``fastws.cluster.history``), read
over the network: the socket joins the room at once, but what the room
delivers to it is held aside (``RoomRegistry.hold``) while the history is read
and replayed (after the node's subscription is confirmed, so nothing published
from then on can be missed); then, in one step, what was held is sent, in
offset order and without what the replay sent already, and the hold released.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
from typing import Any, Hashable

from fastws.errors import BackplaneError
from fastws.runtime._wire import room_message, sent_notice
from fastws.runtime.eager import start_task
from fastws.runtime.history import MemoryHistory

__all__ = ["V1", "POSITIONS_PREFIX", "MAX_POSITIONS", "MAX_POSITIONS_BYTES", "Session",
           "negotiate_v1", "read_positions"]

log = logging.getLogger("fastws")

V1 = "fastws.v1"
POSITIONS_PREFIX = "fastws.v1.positions."
#: What one client may state: rooms past the 64th are not read; a list of more
#: than 4 KiB of JSON is not read at all (docs/protocol.md, section 4).
MAX_POSITIONS = 64
MAX_POSITIONS_BYTES = 4096
#: The largest integer JSON carries exactly (2**53 - 1): the bound of a room
#: named by an int and of an offset a client states (a store never gets near
#: it; a Redis stream ID could not even hold some larger ones).
MAX_SAFE_INT = 2**53 - 1
# A position that is there but cannot be served, and why.
_NOT_READ = "not read"
_BAD = "bad position"


def negotiate_v1(offered: str | None, app_subprotocols: Any) -> tuple[str, str | None, str | None] | None:
    """(the token to answer, the application's subprotocol, the positions
    token's data) when the client offered ``fastws.v1``; None otherwise."""
    if not offered or V1 not in offered:
        return None
    tokens = [t.strip() for t in offered.split(",")]
    positions = None
    for token in tokens:
        if token.startswith(POSITIONS_PREFIX):
            positions = token[len(POSITIONS_PREFIX):]
            break
    # The application's preference order decides, as for plain subprotocols.
    for name in app_subprotocols:
        if f"{V1}+{name}" in tokens:
            return f"{V1}+{name}", name, positions
    if V1 not in tokens:
        return None
    plain = next((name for name in app_subprotocols if name in tokens), None)
    return V1, plain, positions


def read_positions(data: str | None) -> tuple[dict[Hashable, Any], str | None]:
    """The positions a client stated: {room: (epoch, offset), or the reason it
    cannot be served}, and why the whole list was not read (None if it was)."""
    if data is None:
        return {}, None
    if len(data) > (MAX_POSITIONS_BYTES * 4 + 2) // 3 + 4:
        return {}, "too large"
    try:
        raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        if len(raw) > MAX_POSITIONS_BYTES:
            return {}, "too large"
        items = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError):
        # RecursionError: 4 KiB of "[[[[..." nests deeper than the parser goes.
        return {}, "malformed"
    if type(items) is not list:
        return {}, "malformed"
    for item in items:
        values = item if type(item) is list else item.values() if type(item) is dict else ()
        if any(type(x) is list or type(x) is dict for x in values):
            # Nested deeper than [[room, epoch, offset], ...]: the same answer
            # whether or not this Python's parser stopped at the nesting.
            return {}, "malformed"
    positions: dict[Hashable, Any] = {}
    for i, item in enumerate(items):
        if type(item) is not list or len(item) != 3 or type(item[0]) not in (str, int):
            continue        # no room to answer for: ignored, as an unknown room is
        room, epoch, offset = item
        if room in positions:
            continue        # the first statement of a room counts
        if i >= MAX_POSITIONS:
            positions[room] = _NOT_READ
        elif type(epoch) is not str or type(offset) is not int or not 0 <= offset <= MAX_SAFE_INT:
            positions[room] = _BAD
        else:
            positions[room] = (epoch, offset)
    return positions, None


def _control(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode()


class Session:
    """What one ``fastws.v1`` socket holds: the positions it stated (each used
    at most once, by the first join of its room) and the replays under way."""

    __slots__ = ("positions", "unread", "pending")

    def __init__(self, positions: str | None = None) -> None:
        self.positions, self.unread = read_positions(positions)
        if self.unread is not None:
            log.info("fastws.v1 positions not read: %s", self.unread)
        self.pending: dict[Hashable, Any] = {}

    def welcome(self, heartbeat: float) -> bytes:
        """The first frame of the session."""
        msg: dict[str, Any] = {"type": "fastws.welcome", "version": 1, "heartbeat": heartbeat}
        if self.unread is not None:
            msg["positions"] = self.unread
        return _control(msg)

    # ------------------------------------------------------------------ joins

    def join(self, ws: Any, room: Hashable, registry: Any) -> None:
        """The handler joins ``ws`` to ``room``: recover it if the client asked,
        tell the outcome and the position, and make it a member. Raises
        TypeError for a room the protocol cannot name (not a str or an int
        that JSON numbers carry exactly)."""
        if type(room) is not str and \
                not (type(room) is int and -MAX_SAFE_INT <= room <= MAX_SAFE_INT):
            raise TypeError(f"a fastws.v1 client's rooms are str, or int within +-(2**53 - 1) "
                            f"(JSON must name them exactly), not {room!r}")
        if room in self.pending:
            return                  # joined already: its replay is under way
        history = registry.history
        wanted = self.positions.pop(room, None)
        if wanted is None and self.unread is not None:
            wanted = _NOT_READ
        if history is None or not history.keeps(room):
            registry.join(room, ws)
            self._joined(ws, room, None, wanted, False, 0, "no history")
            return
        if not isinstance(history, MemoryHistory):
            _RemoteRecovery(self, ws, room, registry, wanted).start()
            return
        if wanted is None:
            registry.join(room, ws)
            self._joined(ws, room, history.touch(room), None, False, 0, None)
            return
        if type(wanted) is str:
            reason = wanted
        else:
            try:
                reason = history.check(room, wanted[0], wanted[1])
            except Exception:
                log.exception("reading the history of room %r failed", room)
                reason = "unavailable"
        if reason is not None:
            registry.join(room, ws)
            self._joined(ws, room, history.touch(room), wanted, False, 0, reason)
            return
        replay = _Replay(self, ws, room, registry, wanted[0], wanted[1])
        self.pending[room] = replay         # before the first step: leave() must see it
        if not replay.step():
            replay.task = start_task(ws._pacing()[0], replay.run())

    def left(self, ws: Any, room: Hashable, registry: Any) -> None:
        """The handler took ``ws`` out of ``room``: any replay stops."""
        if self.pending.pop(room, None) is not None:
            registry.release(room, ws)
        ws._send_control(_control({"type": "fastws.left", "room": room}))

    def _joined(self, ws: Any, room: Hashable, position: tuple[str, int] | None, wanted: Any,
                recovered: bool, missed: int, reason: str | None) -> None:
        msg: dict[str, Any] = {"type": "fastws.joined", "room": room}
        if position is not None:
            msg["epoch"], msg["offset"] = position
        if wanted is not None:
            msg["recovered"] = recovered
            msg["missed"] = missed
            if not recovered:
                msg["reason"] = reason
        ws._send_control(_control(msg))
        if wanted is not None:
            ws._fire("recovered", (room, recovered, missed))


class _Replay:
    """One room's replay to one socket, in batches paced by its drain."""

    __slots__ = ("session", "ws", "room", "registry", "epoch", "last", "missed", "batch", "task")

    def __init__(self, session: Session, ws: Any, room: Hashable, registry: Any,
                 epoch: str, offset: int) -> None:
        self.session = session
        self.ws = ws
        self.room = room
        self.registry = registry
        self.epoch = epoch
        self.last = offset
        self.missed = 0
        # Half the high-water mark per batch (in bytes on the wire, as
        # history.after estimates them): with what waits already, the socket
        # stays under max_backpressure while it drains.
        self.batch = max(1, ws._pacing()[1] // 2)
        self.task: Any = None       # held here: the loop keeps only a weak reference

    def step(self) -> bool:
        """Send one batch; True when the replay is over (caught up, and the
        room joined; or stopped)."""
        history = self.registry.history
        room = self.room
        if self.session.pending.get(room) is not self:
            return True             # left meanwhile (or left and joined again: a new replay)
        if self.missed:
            # Between batches the history may have dropped what is still to send.
            reason = history.check(room, self.epoch, self.last)
            if reason is not None:
                log.info("replay of room %r to %s stopped: the history moved on (%s)", room,
                         self.ws.remote_address, reason)
                return self._finish(False, "history moved on")
        for offset, kind, payload in history.after(room, self.last, self.batch):
            self.ws._send_wire(room_message(room, (self.epoch, offset), kind, payload))
            self.last = offset
            self.missed += 1
        if history.position(room) == (self.epoch, self.last):
            return self._finish(True, None)
        return False

    def _finish(self, recovered: bool, reason: str | None) -> bool:
        session, room = self.session, self.room
        if session.pending.get(room) is self:
            del session.pending[room]
        self.registry.join(room, self.ws)
        position = self.registry.history.touch(room)
        session._joined(self.ws, room, position, (self.epoch, self.last), recovered,
                        self.missed if recovered else 0, reason)
        return True

    async def run(self) -> None:
        """Batches until caught up, each after the socket drained; stops when
        the socket closes or leaves the room."""
        ws = self.ws
        try:
            while True:
                await ws.drain()
                if ws.ready_state != 1:
                    if self.session.pending.get(self.room) is self:
                        del self.session.pending[self.room]
                    return
                if self.step():
                    return
        except Exception:
            log.exception("replay of room %r to %s failed", self.room, ws.remote_address)
            if self.session.pending.get(self.room) is self:
                del self.session.pending[self.room]
            ws.close(1011, "replay failed")


#: Seconds to wait for the node's subscription to a room (Redis down: longer).
SUBSCRIBE_TIMEOUT = 5.0
#: Stream entries read per round trip while replaying (their bytes are paced apart).
READ_BATCH = 256


class _RemoteRecovery:
    """One room's join for one socket when the history is in Redis: the
    position (and the replay, if the client asked), the outcome, then what
    was held meanwhile. The registry holds the room's messages for the socket
    from the registry join on, and closes it with 1013 past ``MAX_HELD`` of
    them (runtime/_rooms.pyx)."""

    __slots__ = ("session", "ws", "room", "registry", "wanted", "held", "task", "missed",
                 "epoch", "last", "top", "told")

    def __init__(self, session: Session, ws: Any, room: Hashable, registry: Any, wanted: Any) -> None:
        self.session = session
        self.ws = ws
        self.room = room
        self.registry = registry
        self.wanted = wanted
        self.held: list[Any] = []
        self.task: Any = None
        self.missed = 0
        # What the socket has been sent of the room so far: held messages at
        # or before it are dropped as sent.
        self.epoch: str | None = None
        self.last = 0
        self.top = 0            # the room's last offset when the history was first read
        self.told = False       # the outcome went out

    def start(self) -> None:
        self.registry.join(self.room, self.ws)
        self.held = self.registry.hold(self.room, self.ws)
        self.session.pending[self.room] = self
        self.task = start_task(self.ws._pacing()[0], self.run())

    def _gone(self) -> bool:
        """Closed, left, or joined again meanwhile: this recovery is over."""
        return self.ws.ready_state != 1 or self.session.pending.get(self.room) is not self

    async def run(self) -> None:
        ws, room = self.ws, self.room
        try:
            await self._recover()
        except Exception as exc:
            if isinstance(exc, BackplaneError):
                log.warning("recovering room %r for %s: %s", room, ws.remote_address, exc)
            else:
                log.exception("recovering room %r for %s failed", room, ws.remote_address)
            if self._gone():
                pass
            elif self.told:
                # The outcome is out: what follows it can no longer be promised.
                ws.close(1011, "recovery failed")
            elif isinstance(exc, BackplaneError):
                self._unreachable()
            else:
                # Its position as of the first read: what is held follows it.
                await self._finish(self.epoch, self.top, "unavailable")
        finally:
            if self.session.pending.get(room) is self:
                del self.session.pending[room]
                self.registry.release(room, ws)

    async def _recover(self) -> None:
        history = self.registry.history
        try:
            await asyncio.wait_for(history.joined(self.room), SUBSCRIBE_TIMEOUT)
        except (asyncio.TimeoutError, LookupError, ConnectionError):
            self._unreachable()
            return
        if self._gone():
            return
        wanted = self.wanted
        asked = type(wanted) is tuple
        # Nothing asked: the position alone (no entry read).
        epoch, top, entries = await history.state(self.room, wanted[1] + 1 if asked else 1,
                                                  READ_BATCH if asked else 0)
        if self._gone():
            return
        self.epoch, self.top = epoch, top
        if not asked:
            await self._finish(epoch, top, wanted)
            return
        reason = None
        if epoch is None or epoch != wanted[0]:
            reason = "epoch changed"
        elif wanted[1] > top:
            reason = "bad position"
        elif wanted[1] < top and (not entries or entries[0][0] != wanted[1] + 1):
            reason = "too old"
        if reason is not None or wanted[1] == top:
            await self._finish(epoch, top, reason)
            return
        self.epoch, self.last = epoch, wanted[1]
        budget = max(1, self.ws._pacing()[1] // 2)
        spent = 0
        while True:
            for offset, kind, payload in entries:
                if offset != self.last + 1 or offset > top:
                    break
                self.ws._send_wire(room_message(self.room, (epoch, offset), kind, payload))
                self.last = offset
                self.missed += 1
                # Paced by bytes (as the memory history's replay is): a batch of
                # big messages never puts the socket past max_backpressure.
                spent += len(payload) * 4 // 3 + 160
                if spent >= budget:
                    spent = 0
                    await self.ws.drain()
                    if self._gone():
                        return
            if self.last >= top:
                # Drained before the hold is released: live messages then go
                # through the backpressure rule like any other.
                await self.ws.drain()
                if not self._gone():
                    await self._finish(epoch, self.last, None)
                return
            again, now, entries = await history.state(self.room, self.last + 1, READ_BATCH)
            if self._gone():
                return
            if again != epoch or not entries or entries[0][0] != self.last + 1:
                # Trimmed under the replay: what is left cannot be served.
                await self._finish(again, now, "history moved on")
                return

    def _unreachable(self) -> None:
        """Redis cannot be read or subscribed to: the socket is closed with
        1013. Joined without a position, it would miss what other nodes
        publish meanwhile and never know; closed, its client keeps its
        positions and recovers when it can."""
        self.ws.close(1013, "history unavailable: reconnect to recover")

    async def _finish(self, epoch: str | None, top: int, reason: Any) -> None:
        """Tell the outcome with the room's position (``epoch``, ``top``),
        then send what was held past it, in order, and release the hold:
        chunks after a drain while they weigh, the rest in the step that
        releases, so nothing falls between. ``reason`` None: recovered; a
        str: not (``wanted`` itself when nothing was asked)."""
        ws, room = self.ws, self.room
        # The messages Redis had published before it answered the last read
        # may still be on their way on the subscriber link: they are held (and
        # dropped as sent) before the hold is released, not delivered after.
        try:
            await self.registry.history.caught_up(self.room)
        except BackplaneError:
            pass        # the link went: what comes after it is not ours to wait for
        if self._gone():
            return
        self.epoch, self.last = epoch, top
        wanted = self.wanted
        recovered = reason is None and wanted is not None
        self.told = True
        self.session._joined(ws, room, None if epoch is None else (epoch, top), wanted,
                             recovered, self.missed if recovered else 0,
                             reason if wanted is not None else None)
        held = self.held
        # As the replay is paced: half the high-water mark per chunk, in
        # bytes on the wire (a payload may go out as base64, with its position).
        budget = max(1, ws._pacing()[1] // 2)
        while True:
            weight = 0
            n = 0
            for pos, kind, payload in held:
                weight += len(payload) * 4 // 3 + 160
                n += 1
                if weight >= budget:
                    break
            if n == len(held):
                break               # light enough to send and release in one step
            self._send_held(held[:n])
            del held[:n]
            await ws.drain()
            if self._gone():
                return
        del self.session.pending[room]
        self._send_held(self.registry.release(room, ws) or [])

    def _send_held(self, items: list[Any]) -> None:
        ws, room = self.ws, self.room
        for pos, kind, payload in items:
            if pos is not None and self.epoch is not None and pos[0] == self.epoch \
                    and pos[1] <= self.last:
                continue                # sent already (replayed), or before the position told
            if kind == -1:
                if pos is not None:
                    ws._send_control(sent_notice(room, pos))
            else:
                ws._send_wire(room_message(room, pos, kind, payload))
