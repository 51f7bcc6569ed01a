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
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, Hashable

from fastws.runtime._wire import room_message
from fastws.runtime.eager import start_task

__all__ = ["V1", "POSITIONS_PREFIX", "MAX_POSITIONS", "MAX_POSITIONS_BYTES", "Session",
           "negotiate_v1", "read_positions"]

log = logging.getLogger("fastws")

V1 = "fastws.v1"
POSITIONS_PREFIX = "fastws.v1.positions."
#: What one client may state: rooms past the 64th are not read; a list of more
#: than 4 KiB of JSON is not read at all (docs/protocol.md, section 4).
MAX_POSITIONS = 64
MAX_POSITIONS_BYTES = 4096
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
    except (binascii.Error, ValueError):
        return {}, "malformed"
    if type(items) is not list:
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
        elif type(epoch) is not str or type(offset) is not int or offset < 0:
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
        tell the outcome and the position, and make it a member."""
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
        if not replay.step():
            self.pending[room] = replay
            replay.task = start_task(ws._pacing()[0], replay.run())

    def left(self, ws: Any, room: Hashable) -> None:
        """The handler took ``ws`` out of ``room``: any replay stops."""
        self.pending.pop(room, None)
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
        # Half the high-water mark per batch: with what waits already, the
        # socket stays under max_backpressure while it drains.
        self.batch = max(1, ws._pacing()[1] // 2)
        self.task: Any = None       # held here: the loop keeps only a weak reference

    def step(self) -> bool:
        """Send one batch; True when the replay is over (caught up, and the
        room joined; or stopped)."""
        history = self.registry.history
        room = self.room
        if self.session.pending.get(room, self) is not self:
            return True             # left meanwhile (or joined again: a new replay)
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
                if ws.ready_state != 1 or self.room not in ws.rooms:
                    self.session.pending.pop(self.room, None)
                    return
                if self.step():
                    return
        except Exception:
            log.exception("replay of room %r to %s failed", self.room, ws.remote_address)
            self.session.pending.pop(self.room, None)
            ws.close(1011, "replay failed")
