"""WebSocket: the per-connection object users touch.

One connection's events are delivered in arrival order. Synchronous handlers
run inline as frames are parsed; when a handler (or the route handler) returns
an awaitable, one task finishes it and then works through whatever arrived
meanwhile, so async handlers keep order without a task per message.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Hashable

from fastws._frame import (ERROR, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT,
                           FrameParser, ProtocolError, encode_close, encode_frame)
from fastws.events import Handlers, arity, json_event

if TYPE_CHECKING:
    from fastws.app import App
    from fastws.context import Context
    from fastws.plugins.websocket import WebSocketOptions

__all__ = ["ReadyState", "WebSocket"]

log = logging.getLogger("fastws")

# Pause reading from a client whose messages wait behind a slow async handler,
# so a fast sender cannot grow the queue without bound.
_QUEUE_PAUSE = 64
_QUEUE_RESUME = 16


class ReadyState(IntEnum):
    """Connection state, numbered as in the browser API."""
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


def encode_payload(data: Any, dumps: Callable[[Any], Any]) -> tuple[int, Any]:
    """The opcode and payload for ``data``: str is text, bytes-like is binary,
    anything else is serialized with ``dumps`` and sent as text."""
    if type(data) is str:
        return OP_TEXT, data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return OP_BINARY, data
    if isinstance(data, str):
        return OP_TEXT, str(data)
    out = dumps(data)
    if isinstance(out, (bytes, bytearray, memoryview)):
        # e.g. orjson: JSON is UTF-8 text on the wire either way
        return OP_TEXT, bytes(out).decode("utf-8")
    return OP_TEXT, out


class WebSocket:
    """One client connection: send, rooms, broadcast, events, close.

    Created by the server when an upgrade succeeds; route handlers receive it
    as their first argument. The seed's camelCase names are aliases.
    """

    __slots__ = (
        "app", "data", "subprotocol", "remote_address", "ctx",
        "_transport", "_options", "_parser", "_handlers", "_state", "_rooms",
        "_queue", "_busy", "_paused", "_close_fired", "_close_code", "_close_reason",
        "_close_timer", "_loop", "_dumps", "_loads", "_json_events",
        "_drain_waiters", "_skipped", "__weakref__",
    )

    def __init__(self, app: App, transport: asyncio.Transport, options: WebSocketOptions,
                 ctx: Context | None = None, subprotocol: str | None = None) -> None:
        self.app = app
        self.ctx = ctx
        self.data: dict[str, Any] = {}
        self.subprotocol = subprotocol
        self.remote_address = transport.get_extra_info("peername")
        self._transport: asyncio.Transport | None = transport
        self._options = options
        self._parser = FrameParser(max_message_size=options.max_message_size)
        self._handlers = Handlers()
        self._state = ReadyState.OPEN
        self._rooms: list[Hashable] = []
        self._queue: deque[tuple[str, tuple]] = deque()
        self._busy = False
        self._paused = False
        self._close_fired = False
        self._close_code = 1006
        self._close_reason = ""
        self._close_timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()
        self._dumps = options.dumps
        self._loads = options.loads
        self._json_events = options.json_events
        self._drain_waiters: list[asyncio.Future] = []
        self._skipped = 0

    # ------------------------------------------------------------------ state

    @property
    def ready_state(self) -> ReadyState:
        """0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED."""
        return self._state

    readyState = ready_state

    @property
    def room(self) -> Hashable | None:
        """The last joined room still held, or None."""
        return self._rooms[-1] if self._rooms else None

    @property
    def rooms(self) -> tuple[Hashable, ...]:
        """Every room this socket is in, in joining order."""
        return tuple(self._rooms)

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this socket and not yet written to the kernel."""
        t = self._transport
        return t.get_write_buffer_size() if t is not None else 0

    bufferedAmount = buffered_amount

    @property
    def skipped(self) -> int:
        """Broadcasts not delivered to this socket because it was over its
        backpressure limit (``backpressure="skip"`` policy)."""
        return self._skipped

    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed (see the ``close`` event)."""
        return self._close_code if self._close_fired else None

    # ------------------------------------------------------------------ sending

    def send(self, data: Any) -> bool:
        """Send ``data``: str as text, bytes-like as binary, anything else as
        JSON text. Returns False, sending nothing, when the socket is not OPEN
        or (``backpressure="skip"``) is over its backpressure limit."""
        if self._state is not ReadyState.OPEN:
            return False
        opcode, payload = encode_payload(data, self._dumps)
        return self._send_frame(encode_frame(opcode, payload))

    def _send_frame(self, frame: bytes) -> bool:
        """Write one ready frame, honouring the backpressure policy."""
        t = self._transport
        if self._state is not ReadyState.OPEN or t is None:
            return False
        limit = self._options.max_backpressure
        if limit and t.get_write_buffer_size() > limit:
            if self._options.backpressure == "close":
                self._fail(1008, "slow consumer")
            else:
                self._skipped += 1
                self.app._skipped += 1
            return False
        t.write(frame)
        return True

    def ping(self, payload: bytes | str = b"") -> bool:
        """Send a ping; the client's pong fires the ``pong`` event."""
        if self._state is not ReadyState.OPEN or self._transport is None:
            return False
        self._transport.write(encode_frame(OP_PING, payload))
        return True

    async def drain(self) -> None:
        """Wait until the send buffer is back under the backpressure limit."""
        t = self._transport
        limit = self._options.max_backpressure
        if t is None or not limit or t.get_write_buffer_size() <= limit:
            return
        fut = self._loop.create_future()
        self._drain_waiters.append(fut)
        await fut

    # ------------------------------------------------------------------ rooms

    def join(self, room: Hashable) -> None:
        """Join ``room`` (idempotent); it becomes ``ws.room``."""
        if room is None:
            raise TypeError("room must not be None")
        if self._state is ReadyState.CLOSED:
            return
        if room in self._rooms:
            self._rooms.remove(room)
        self._rooms.append(room)
        self.app._rooms.join(room, self)

    def leave(self, room: Hashable) -> None:
        """Leave ``room`` (idempotent)."""
        if room in self._rooms:
            self._rooms.remove(room)
            self.app._rooms.leave(room, self)

    def broadcast(self, room: Hashable | None, data: Any) -> int:
        """Send ``data`` to every member of ``room`` but this socket, framed
        once for all. Returns the number of recipients."""
        if room is None:
            return 0
        return self.app._publish(room, data, self)

    def broadcast_all(self, room: Hashable | None, data: Any) -> int:
        """Send ``data`` to every member of ``room``, this socket included."""
        if room is None:
            return 0
        return self.app._publish(room, data, None)

    broadcastAll = broadcast_all

    # ------------------------------------------------------------------ events

    def on(self, event: str, handler: Callable[..., Any] | None = None) -> Any:
        """Register ``handler`` for ``event``; without a handler, a decorator."""
        if handler is None:
            def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
                self._handlers.add(event, fn)
                return fn
            return decorate
        self._handlers.add(event, handler)
        return handler

    def off(self, event: str, handler: Callable[..., Any]) -> bool:
        """Unregister ``handler``; True if it was registered."""
        return self._handlers.remove(event, handler)

    # ------------------------------------------------------------------ closing

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the closing handshake. The client has ``close_timeout``
        seconds to answer before the connection is cut; ``close`` fires once."""
        if self._state is not ReadyState.OPEN:
            return
        frame = encode_close(code, reason)      # validates code and reason first
        self._start_close(code, reason, frame)

    def _start_close(self, code: int, reason: str, frame: bytes) -> None:
        self._state = ReadyState.CLOSING
        self._close_code, self._close_reason = code, reason
        t = self._transport
        if t is not None:
            t.write(frame)
            self._close_timer = self._loop.call_later(
                self._options.close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if self._transport is not None:
            log.info("closing handshake with %s timed out; dropping the connection",
                     self.remote_address)
            self._transport.abort()

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 §7.1.7): close frame, then TCP close."""
        if self._state is ReadyState.OPEN:
            self._start_close(code, reason, encode_close(code, reason))
        if self._transport is not None:
            self._transport.close()

    # ------------------------------------------------------------------ input

    def _feed(self, data: bytes) -> None:
        """Bytes from the client, in order (called by the protocol)."""
        events = self._parser.feed(data)
        for kind, value in events:
            if kind == OP_TEXT or kind == OP_BINARY:
                self._deliver("message", (value,))
            elif kind == OP_PING:
                if self._state is ReadyState.OPEN and self._transport is not None:
                    self._transport.write(encode_frame(OP_PONG, value))
                self._deliver("ping", (value,))
            elif kind == OP_PONG:
                self._deliver("pong", (value,))
            elif kind == OP_CLOSE:
                self._on_close_frame(*value)
            elif kind == ERROR:
                self._on_protocol_error(value)

    def _on_close_frame(self, code: int, reason: str) -> None:
        if self._state is ReadyState.OPEN:
            # The client started it: echo its code, then close TCP (the
            # server closes first, RFC 6455 §7.1.1).
            self._state = ReadyState.CLOSING
            self._close_code, self._close_reason = code, reason
            if self._transport is not None:
                self._transport.write(encode_close(code) if code != 1005
                                      else encode_frame(OP_CLOSE, b""))
        if self._transport is not None:
            self._transport.close()
        self._fire_close()

    def _on_protocol_error(self, exc: ProtocolError) -> None:
        log.info("protocol error from %s: %s", self.remote_address, exc)
        if self._handlers.has("error"):
            self._deliver("error", (exc,))
        self._fail(exc.code, exc.reason)
        self._fire_close()

    def _lost(self, exc: Exception | None) -> None:
        """The TCP connection is gone (called by the protocol)."""
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._state is ReadyState.OPEN:
            self._close_code, self._close_reason = 1006, ""
        self._state = ReadyState.CLOSED
        self._transport = None
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        self._fire_close()

    def _resume_writing(self) -> None:
        """The send buffer fell back under its limit (called by the protocol)."""
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()
        if self._handlers.has("drain"):
            self._deliver("drain", ())

    def _fire_close(self) -> None:
        if self._close_fired:
            return
        self._close_fired = True
        # Every caller has closed or lost the transport: as in the browser
        # API, close handlers see CLOSED.
        self._state = ReadyState.CLOSED
        self._deliver("close", (self._close_code, self._close_reason))

    # ------------------------------------------------------------------ dispatch

    def _start(self, handler: Callable[..., Any], ctx: Context) -> None:
        """Run the route handler; messages arriving meanwhile wait their turn."""
        self._busy = True
        try:
            n = arity(handler)
            result = handler(self, ctx) if n >= 2 else handler(self) if n == 1 else handler()
        except Exception as exc:
            self._busy = False
            self._route_failed(exc)
            return
        if result is not None and inspect.isawaitable(result):
            self._loop.create_task(self._drive(self._route_async(result)))
        else:
            self._busy = False
            self._drain_queue_sync()

    async def _route_async(self, aw: Awaitable[Any]) -> None:
        try:
            await aw
        except Exception as exc:
            self._route_failed(exc)

    def _route_failed(self, exc: Exception) -> None:
        log.error("WebSocket route handler for %s raised", self.ctx.path if self.ctx else "?",
                  exc_info=exc)
        if self._handlers.has("error"):
            self._call_error_handlers(exc)
        self._fail(1011, "internal error")
        if self._transport is None:
            self._fire_close()

    def _deliver(self, event: str, args: tuple) -> None:
        if self._busy:
            self._enqueue((event, args))
            return
        pending = self._dispatch_now(event, args)
        if pending is not None:
            self._busy = True
            self._loop.create_task(self._drive(pending))

    def _enqueue(self, item: tuple[str, tuple]) -> None:
        self._queue.append(item)
        if not self._paused and len(self._queue) >= _QUEUE_PAUSE and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def _drain_queue_sync(self) -> None:
        while self._queue and not self._busy:
            event, args = self._queue.popleft()
            self._maybe_resume()
            self._deliver(event, args)

    def _maybe_resume(self) -> None:
        if self._paused and len(self._queue) <= _QUEUE_RESUME and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    def _dispatch_now(self, event: str, args: tuple) -> Awaitable[None] | None:
        """Run the handlers of one event. If one returns an awaitable, return
        a coroutine that finishes the event; the caller must await it before
        delivering anything else."""
        if event == "message" and self._json_events and type(args[0]) is str:
            named = json_event(args[0], self._handlers, self._loads)
            if named is not None:
                event, args = named[0], (named[1],)
        handlers = self._handlers.get(event)
        nargs = len(args)
        for i, (fn, n) in enumerate(handlers):
            try:
                result = fn(*args) if n >= nargs else fn(*args[:n])
            except Exception as exc:
                self._handler_failed(event, exc)
                continue
            if result is not None and inspect.isawaitable(result):
                return self._finish(event, args, result, list(handlers[i + 1:]))
        if event == "close":
            self._after_close()
        return None

    async def _finish(self, event: str, args: tuple, pending: Awaitable[Any],
                      rest: list[tuple[Callable[..., Any], int]]) -> None:
        try:
            await pending
        except Exception as exc:
            self._handler_failed(event, exc)
        nargs = len(args)
        for fn, n in rest:
            try:
                result = fn(*args) if n >= nargs else fn(*args[:n])
                if result is not None and inspect.isawaitable(result):
                    await result
            except Exception as exc:
                self._handler_failed(event, exc)
        if event == "close":
            self._after_close()

    async def _drive(self, pending: Awaitable[None] | None) -> None:
        """The one task of an async episode: finish the pending event, then
        deliver what queued up behind it, awaiting each async step in turn."""
        try:
            while pending is not None:
                await pending
                pending = None
                while self._queue and pending is None:
                    event, args = self._queue.popleft()
                    self._maybe_resume()
                    pending = self._dispatch_now(event, args)
        finally:
            self._busy = False
            self._maybe_resume()

    def _handler_failed(self, event: str, exc: Exception) -> None:
        if event != "error" and self._handlers.has("error"):
            self._call_error_handlers(exc)
        else:
            log.error("%r handler raised on a WebSocket from %s", event,
                      self.remote_address, exc_info=exc)

    def _call_error_handlers(self, exc: Exception) -> None:
        for fn, n in self._handlers.get("error"):
            try:
                result = fn(exc) if n >= 1 else fn()
                if result is not None and inspect.isawaitable(result):
                    self._loop.create_task(self._await_error_handler(result))
            except Exception as inner:
                log.error("'error' handler raised", exc_info=inner)

    async def _await_error_handler(self, aw: Awaitable[Any]) -> None:
        try:
            await aw
        except Exception as inner:
            log.error("'error' handler raised", exc_info=inner)

    def _after_close(self) -> None:
        """Close handlers ran: leave rooms and drop references."""
        rooms = self.app._rooms
        for room in self._rooms:
            rooms.leave(room, self)
        self._rooms.clear()
        self.app._sockets.discard(self)
        self._handlers.clear()

    def __repr__(self) -> str:
        return f"<WebSocket {self.remote_address} {self._state.name}>"
