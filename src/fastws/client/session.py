"""The Python client of fastws's ``fastws.v1`` protocol (docs/protocol.md), on
the ``websockets`` client library (``pip install 'fastws[client]'``).

    import fastws.client

    async with fastws.client.connect("ws://host/chat/lobby", recover=True) as c:
        c.on("recovered", lambda room, recovered, missed: ...)
        await c.send("hello")
        async for msg in c:
            print(msg.room, msg.offset, msg.data)

It reconnects by itself (exponential backoff with full jitter; at once after
1012), states where it stopped in each room when it comes back, and the server
replays what it missed, or says it cannot (``recovered`` is False: reload).
Messages arrive in order across reconnects, with no gap and no duplicate when
recovery succeeds. Nothing is queued while disconnected: ``send`` raises
``NotConnectedError``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import random
from typing import Any, AsyncIterator, Callable, Hashable, NamedTuple, Sequence

from fastws.errors import NotConnectedError

try:
    from websockets.asyncio.client import ClientConnection
    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import ConnectionClosed, InvalidHandshake
except ImportError as exc:         # pragma: no cover - depends on the install
    raise ImportError("fastws.client needs the websockets library: "
                      "pip install 'fastws[client]'") from exc

__all__ = ["Client", "Message", "NotConnectedError", "connect", "RECONNECT_CODES"]

log = logging.getLogger("fastws.client")

V1 = "fastws.v1"
POSITIONS_PREFIX = "fastws.v1.positions."
MAX_POSITIONS = 64
MAX_POSITIONS_BYTES = 4096
#: Close codes after which the client comes back (docs/protocol.md, section 6);
#: 4000-4099 too. Any other code ends the session.
RECONNECT_CODES = frozenset({1001, 1005, 1006, 1011, 1012, 1013, 1014})
#: The client's own events; a server event of one of these names arrives as a message.
RESERVED = frozenset({"message", "open", "close", "recovered", "reconnecting", "gap"})


class Message(NamedTuple):
    """One message from the server: ``data`` typed as sent (a JSON value, str or
    bytes); ``room``, ``epoch``, ``offset`` for a room message (None for a
    direct one; epoch and offset None too when the room keeps no history)."""

    data: Any
    room: Hashable | None = None
    epoch: str | None = None
    offset: int | None = None


def reconnects(code: int) -> bool:
    """Whether a close with ``code`` means "come back"."""
    return code in RECONNECT_CODES or 4000 <= code <= 4099


def positions_token(positions: dict[Hashable, tuple[str, int]]) -> tuple[str | None, set[Hashable]]:
    """The ``fastws.v1.positions.`` token for ``positions`` (the most recently
    updated last), within the protocol's bounds (None when there are none),
    and the rooms it holds: the oldest are left out to fit."""
    items = [[room, epoch, offset] for room, (epoch, offset) in positions.items()][-MAX_POSITIONS:]
    while items:
        raw = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
        if len(raw) <= MAX_POSITIONS_BYTES:
            token = POSITIONS_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")
            return token, {item[0] for item in items}
        items.pop(0)            # the oldest goes first
    return None, set()


class Client:
    """A ``fastws.v1`` connection that reconnects and recovers by itself. Made
    by ``connect``; use it as an async context manager and iterate over it."""

    def __init__(self, url: str, *, recover: bool = True, subprotocols: Sequence[str] = (),
                 backoff: tuple[float, float] = (0.5, 30.0), queue: int = 1024,
                 stable_after: float = 5.0, rng: Callable[[], float] = random.random,
                 **options: Any) -> None:
        self.url = url
        self._stable_after = stable_after
        self.recover = recover
        self._app_protocols = tuple(subprotocols)
        self._base, self._cap = backoff
        self._random = rng
        self._options = options
        #: room -> (epoch, offset): where this client stands in each room with history.
        self.positions: dict[Hashable, tuple[str, int]] = {}
        #: The application's subprotocol, if the server speaks it with fastws.v1.
        self.subprotocol: str | None = None
        #: How the session ended (None while it goes on).
        self.close_code: int | None = None
        self.close_reason = ""
        self._handlers: dict[str, list[Callable[..., Any]]] = {}
        self._inbox: asyncio.Queue[Message | None] = asyncio.Queue(queue)
        self._ws: ClientConnection | None = None
        self._heartbeat = 0.0
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False
        self._plain = False         # the server did not answer fastws.v1: plain messages
        self._done = False          # the session is over: the iterator ends once the inbox is empty
        # Rooms this client held a position in when it (re)connected: each
        # must be answered with an outcome, or it lost messages unsaid.
        self._expecting: set[Hashable] = set()

    # ------------------------------------------------------------------ public

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._ws is not None

    def on(self, event: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        """Call ``handler`` on ``event``: ``recovered`` (room, recovered, missed),
        ``open`` (), ``close`` (code, reason, will_reconnect), ``reconnecting``
        (attempt, delay), ``gap`` (room, expected, got), or a server event's
        type (its payload: the object less "type"). Returns the handler."""
        self._handlers.setdefault(event, []).append(handler)
        return handler

    def off(self, event: str, handler: Callable[..., Any]) -> bool:
        """Stop calling ``handler`` on ``event``; False if it was not registered."""
        handlers = self._handlers.get(event, [])
        if handler in handlers:
            handlers.remove(handler)
            return True
        return False

    async def send(self, data: Any) -> None:
        """Send ``data``: str as text, bytes-like as binary, anything else as
        JSON. Raises NotConnectedError while disconnected (nothing is queued)."""
        ws = self._ws
        if ws is None:
            raise NotConnectedError("not connected: nothing was sent")
        if not isinstance(data, (str, bytes, bytearray, memoryview)):
            data = json.dumps(data, separators=(",", ":"))
        try:
            await ws.send(data)
        except ConnectionClosed as exc:
            raise NotConnectedError("the connection closed: the message may not have "
                                    "been sent") from exc

    async def emit(self, type: str, payload: Any = None) -> None:
        """Send the event ``{"type": type, ...payload}`` (a non-dict payload
        goes as ``"data"``)."""
        body = dict(payload) if isinstance(payload, dict) else \
            ({} if payload is None else {"data": payload})
        await self.send({"type": type, **body})

    async def close(self) -> None:
        """End the session for good (no reconnect)."""
        self._stopping = True
        if self.close_code is None:
            self.close_code = 1000
        ws = self._ws
        runner = self._runner
        if runner is not None and not runner.done():
            # It may be waiting to reconnect, or on a full inbox nobody reads.
            runner.cancel()
            # wait() neither raises the runner's cancellation nor hides ours.
            await asyncio.wait([runner])
        if ws is not None:
            # What is still unread must be read (and dropped) for the server's
            # close frame to come through: websockets stops reading when its
            # own queue of messages is full.
            drain = asyncio.ensure_future(_discard(ws))
            try:
                await ws.close()
            finally:
                drain.cancel()
            self._fire("close", 1000, "", False)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._messages()

    async def _messages(self) -> AsyncIterator[Message]:
        while not (self._done and self._inbox.empty()):
            msg = await self._inbox.get()
            if msg is None:
                return
            yield msg

    async def __aenter__(self) -> Client:
        ws = await self._open()          # the first attempt's failure is the caller's
        self._ws = ws                    # send() works from here on
        self._runner = asyncio.ensure_future(self._run(ws))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ the session

    def _offer(self) -> list[str]:
        offer = [f"{V1}+{name}" for name in self._app_protocols] + [V1]
        self._expecting = set(self.positions) if self.recover else set()
        if self.recover:
            token, _ = positions_token(self.positions)
            if token is not None:
                offer.append(token)
        return offer

    async def _open(self) -> ClientConnection:
        ws = await ws_connect(self.url, subprotocols=self._offer(), **self._options)
        answer = ws.subprotocol or ""
        # A server that does not speak fastws.v1 is served plainly (protocol.md, 1).
        self._plain = answer != V1 and not answer.startswith(V1 + "+")
        self.subprotocol = (answer or None) if self._plain else (answer[len(V1) + 1:] or None)
        return ws

    async def _run(self, ws: ClientConnection | None) -> None:
        loop = asyncio.get_running_loop()
        attempt = 0
        restart = False
        try:
            while not self._stopping:
                if ws is None:
                    delay = self._delay(attempt, restart)
                    attempt += 1
                    self._fire("reconnecting", attempt, delay)
                    await asyncio.sleep(delay)
                    if self._stopping:
                        break
                    try:
                        ws = await self._open()
                    except (OSError, InvalidHandshake, asyncio.TimeoutError) as exc:
                        log.info("fastws.client: reconnecting to %s failed: %s", self.url, exc)
                        continue
                opened = loop.time()
                code, reason = await self._serve(ws)
                ws = None
                # Only a connection that lasted resets the backoff: a server
                # that closes each one at once (1013, 1011) is not hammered.
                if loop.time() - opened >= self._stable_after:
                    attempt = 0
                again = not self._stopping and reconnects(code)
                self._fire("close", code, reason, again)
                if not again:
                    if self.close_code is None:
                        self.close_code, self.close_reason = code, reason
                    break
                restart = code == 1012
        finally:
            self._ws = None
            self._done = True
            try:
                self._inbox.put_nowait(None)    # wakes an iterator waiting on an empty inbox
            except asyncio.QueueFull:
                pass                            # it is not waiting: it sees _done when empty

    def _delay(self, attempt: int, restart: bool) -> float:
        """Full jitter; after 1012 (a restart), within a second at first."""
        window = min(self._cap, self._base * 2 ** attempt)
        return self._random() * (min(self._cap, max(1.0, window)) if restart else window)

    async def _serve(self, ws: ClientConnection) -> tuple[int, str, bool]:
        """Read one connection until it ends: (close code, reason)."""
        self._ws = ws
        self._heartbeat = 0.0
        if self._plain:
            self._fire("open")
        try:
            while True:
                timeout = 2 * self._heartbeat if self._heartbeat > 0 else None
                try:
                    frame = await asyncio.wait_for(ws.recv(), timeout)
                except asyncio.TimeoutError:
                    log.info("fastws.client: no frame from %s for %.1fs: reconnecting",
                             self.url, timeout)
                    self._ws = None
                    ws.transport.abort()
                    return 1006, "heartbeat timeout"
                try:
                    await self._take(frame)
                except Exception:
                    # A frame this client cannot make sense of is logged and
                    # skipped; it must not end the session.
                    log.exception("fastws.client: a frame from %s could not be read", self.url)
        except ConnectionClosed as exc:
            self._ws = None
            rcvd = exc.rcvd
            if rcvd is None:
                return 1006, ""
            return rcvd.code, rcvd.reason

    async def _take(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            await self._inbox.put(Message(frame))
            return
        obj: Any = None
        if frame[:1] == "{":
            try:
                obj = json.loads(frame)
            except ValueError:
                obj = None
        kind = obj.get("type") if isinstance(obj, dict) else None
        if type(kind) is not str:
            await self._inbox.put(Message(frame))
        elif kind.startswith("fastws.") and not self._plain:
            await self._protocol(kind, obj)
        elif kind in self._handlers and kind not in RESERVED:
            del obj["type"]
            self._fire(kind, obj)
        else:
            await self._inbox.put(Message(obj))

    async def _protocol(self, kind: str, msg: dict[str, Any]) -> None:
        room = msg.get("room")
        if kind == "fastws.message":
            if "data" in msg:
                data = msg["data"]
            elif "text" in msg:
                data = msg["text"]
            elif "bytes" in msg:
                try:
                    data = base64.b64decode(msg["bytes"])
                except (binascii.Error, TypeError):
                    log.warning("fastws.client: undecodable bytes in room %r", room)
                    return
            else:
                return                  # a payload kind this client does not know
            epoch, offset = msg.get("epoch"), msg.get("offset")
            if epoch is not None:
                self._advance(room, epoch, offset)
            await self._inbox.put(Message(data, room, epoch, offset))
        elif kind == "fastws.sent":
            # The messages since the last position that we were not sent are our own.
            self._advance(room, msg.get("epoch"), msg.get("offset"), checked=False)
        elif kind == "fastws.joined":
            self.positions.pop(room, None)
            if msg.get("epoch") is not None:
                self.positions[room] = (msg["epoch"], msg["offset"])
            if "recovered" in msg:
                self._expecting.discard(room)
                self._fire("recovered", room, bool(msg["recovered"]), int(msg.get("missed", 0)))
            elif room in self._expecting:
                # Its position did not fit in the list sent: what it missed is lost.
                self._expecting.discard(room)
                self._fire("recovered", room, False, 0)
        elif kind == "fastws.left":
            self.positions.pop(room, None)
        elif kind == "fastws.welcome":
            self._heartbeat = float(msg.get("heartbeat") or 0)
            self._fire("open")
        # fastws.heartbeat and unknown kinds: a sign of life, nothing more

    def _advance(self, room: Hashable, epoch: Any, offset: Any, checked: bool = True) -> None:
        had = self.positions.pop(room, None)
        if checked and had is not None and had[0] == epoch and offset != had[1] + 1:
            self._fire("gap", room, had[1] + 1, offset)
        # Re-inserted: the most recently updated rooms are kept when the list must shrink.
        self.positions[room] = (epoch, offset)

    def _fire(self, event: str, *args: Any) -> None:
        for handler in list(self._handlers.get(event, ())):
            try:
                handler(*args)
            except Exception:
                log.exception("fastws.client: %s handler %r raised", event, handler)


async def _discard(ws: ClientConnection) -> None:
    try:
        while True:
            await ws.recv()
    except ConnectionClosed:
        pass


def connect(url: str, *, recover: bool = True, subprotocols: Sequence[str] = (),
            backoff: tuple[float, float] = (0.5, 30.0), queue: int = 1024,
            stable_after: float = 5.0, **options: Any) -> Client:
    """A ``Client`` for ``url``, to use as ``async with connect(url) as c:``.

    ``recover``: state positions when reconnecting (the server replays what was
    missed). ``subprotocols``: the application's own, offered as
    ``fastws.v1+NAME``. ``backoff``: (base, cap) seconds of the reconnect delay.
    ``queue``: messages held for the iterator before reading pauses (the server
    then sees a slow consumer, closes with 1013, and the client recovers).
    ``stable_after``: seconds a connection must last before the backoff starts
    again from its first step (a server that closes every connection at once
    is retried ever more slowly). Other keywords go to
    ``websockets.asyncio.client.connect``. The first connection's failure
    raises; later ones are retried. A server that does not answer
    ``fastws.v1`` is served plainly (every frame a ``Message`` without room).

    ``recovered`` handlers also hear ``(room, False, 0)`` for a room whose
    position did not fit in the list sent when reconnecting (more than 64
    rooms, or 4 KiB): what it missed there is lost, and the app must reload it.
    """
    return Client(url, recover=recover, subprotocols=subprotocols, backoff=backoff, queue=queue,
                  stable_after=stable_after, **options)
