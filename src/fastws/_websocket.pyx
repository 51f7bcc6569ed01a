# cython: language_level=3
"""The connection core: WebSocket, the per-connection object users touch.

Compiled because every message passes through it. Input: the transport calls
``data_received`` on the WebSocket itself (it becomes the transport's protocol
after the upgrade), frames are parsed in C and handlers run in arrival order.
Output: frames are queued on the socket and leave in one ``write`` at the end
of the callback that produced them (corking) or, for sockets written to by a
broadcast, once per loop iteration; W broadcasts to a socket cost one write.

Synchronous handlers run inline. When a handler (or the route handler)
returns an awaitable, one task finishes it and then works through whatever
arrived meanwhile, so async handlers keep order without a task per message.
"""

import asyncio
import inspect
import logging
from collections import deque
from enum import IntEnum

from cpython.bytes cimport PyBytes_GET_SIZE
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from fastws._frame cimport FrameParser, encode_frame
from fastws._frame import ERROR, encode_close
from fastws.events import RESERVED_EVENTS, add_handler, arity, json_event, remove_handler

__all__ = ["ReadyState", "WebSocket", "Flusher", "encode_message", "encode_payload"]

log = logging.getLogger("fastws")

cdef enum:
    OP_TEXT = 0x1
    OP_BINARY = 0x2
    OP_CLOSE = 0x8
    OP_PING = 0x9
    OP_PONG = 0xA
    S_CONNECTING = 0
    S_OPEN = 1
    S_CLOSING = 2
    S_CLOSED = 3
    # Pause reading from a client whose messages wait behind a slow async
    # handler, so a fast sender cannot grow the queue without bound.
    QUEUE_PAUSE = 64
    QUEUE_RESUME = 16


class ReadyState(IntEnum):
    """Connection state, numbered as in the browser API."""
    CONNECTING = 0
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


cdef tuple _STATES = (ReadyState.CONNECTING, ReadyState.OPEN, ReadyState.CLOSING,
                      ReadyState.CLOSED)
cdef bytes _EMPTY_CLOSE = encode_frame(OP_CLOSE, b"")


cdef double monotonic() noexcept nogil:
    """The clock of asyncio's loop.time() (CLOCK_MONOTONIC), without Python."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


def monotonic_time():
    """Seconds on the monotonic clock the heartbeat uses (as loop.time())."""
    return monotonic()


cdef inline bint _awaitable(object result):
    # The common results of sync handlers (None, bool, int, str) are settled
    # by type without calling into inspect.
    if result is None or result is True or result is False:
        return False
    if type(result) is int or type(result) is str:
        return False
    return inspect.isawaitable(result)


cdef inline object _payload(object data, object dumps, int *opcode):
    # The one place the rule lives: str is text, bytes-like is binary,
    # anything else goes through dumps (str or UTF-8 bytes) and is text.
    if type(data) is str:
        opcode[0] = OP_TEXT
        return data
    if type(data) is bytes or isinstance(data, (bytearray, memoryview)):
        opcode[0] = OP_BINARY
        return data
    opcode[0] = OP_TEXT
    if isinstance(data, str):
        return str(data)
    return dumps(data)


cpdef bytes encode_message(object data, object dumps):
    """The frame for ``data``: str as text, bytes-like as binary, anything else
    serialized with ``dumps`` (str or UTF-8 bytes) as text."""
    cdef int opcode
    payload = _payload(data, dumps, &opcode)
    return encode_frame(opcode, payload)


cpdef tuple encode_payload(object data, object dumps):
    """(opcode, payload) for ``data``, by the rules of ``encode_message``."""
    cdef int opcode
    payload = _payload(data, dumps, &opcode)
    return (opcode, payload)


cdef bytes compressed_frame(object deflater, int opcode, object payload):
    """The frame for ``payload`` through a connection's deflater (which sends
    messages under its ``compress_min_size`` as they are, RSV1 clear)."""
    if type(payload) is str:
        payload = (<str>payload).encode("utf-8")
    elif type(payload) is not bytes:
        payload = bytes(payload)
    data, rsv1 = deflater.encode(payload)
    return encode_frame(opcode, data, True, rsv1)


cdef class Flusher:
    """Writes every socket that broadcasts made dirty, once per loop iteration."""

    def __init__(self, loop):
        self.loop = loop
        self._dirty = []
        self._scheduled = False
        self._call_soon = loop.call_soon

    cdef int add(self, WebSocket ws) except -1:
        self._dirty.append(ws)
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.run)
        return 0

    def run(self):
        """Flush the dirty sockets (scheduled with call_soon)."""
        cdef list dirty = self._dirty
        self._dirty = []
        self._scheduled = False
        for ws in dirty:
            (<WebSocket>ws)._dirty = False
            (<WebSocket>ws)._flush()


cdef class WebSocket:
    """One client connection: send, rooms, broadcast, events, close.

    Created by the server when an upgrade succeeds; route handlers receive it
    as their first argument. The seed's camelCase names are aliases.
    """

    def __init__(self, app, transport, options, ctx=None, subprotocol=None, http=None,
                 Flusher flusher=None, negotiated=None):
        self.app = app
        self.ctx = ctx
        self._data = None
        self.subprotocol = subprotocol
        self._remote_address = None
        self._transport = transport
        self._write = transport.write
        self._http = http
        self._options = options
        if negotiated is not None:
            from fastws.compression import Deflater, Inflater
            self._parser = FrameParser(max_message_size=options.max_message_size,
                                       inflater=Inflater(negotiated))
            self._deflater = Deflater(negotiated)
            # The shared compressor's key: one object per distinct setting,
            # so a broadcast can match members by identity.
            shared = self._deflater._shared
            self._deflate_key = shared.key if shared is not None else None
        else:
            self._parser = FrameParser(max_message_size=options.max_message_size)
        self._by_name = {}
        self._state = S_OPEN
        self._rooms = []
        self._queue = None
        self._busy = False
        self._paused = False
        self._close_fired = False
        self._close_code = 1006
        self._close_reason = ""
        self._close_timer = None
        self._loop = asyncio.get_running_loop() if flusher is None else flusher.loop
        self._dumps = options.dumps
        self._loads = options.loads
        self._json_events = options.json_events
        self._drain_waiters = None
        self._skipped = 0
        self._pending = None
        self._pending_bytes = 0
        self._max_backpressure = options.max_backpressure
        self._close_slow = options.backpressure == "close"
        self._flusher = flusher if flusher is not None else Flusher(self._loop)
        self._last_rx = monotonic()
        self._ping_at = 0.0
        if options.rate_limit is not None:
            self._rate, self._burst = options.rate_limit
            self._tokens = self._burst
            self._rate_t = self._last_rx
        self._rate_drop = options.rate_limit_policy == "drop"

    # ------------------------------------------------------------------ state

    @property
    def remote_address(self):
        """The client's (host, port), or None if unknown."""
        # Looked up on first use: most connections never ask, and 10,000
        # idle ones would each hold a tuple, a str and an int.
        if self._remote_address is None and self._transport is not None:
            self._remote_address = self._transport.get_extra_info("peername")
        return self._remote_address

    @property
    def data(self):
        """A dict for the user's per-connection state."""
        if self._data is None:
            self._data = {}
        return self._data

    @data.setter
    def data(self, value):
        self._data = value

    @property
    def ready_state(self):
        """0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED."""
        return _STATES[self._state]

    @property
    def readyState(self):
        """Alias of ``ready_state``."""
        return _STATES[self._state]

    @property
    def room(self):
        """The last joined room still held, or None."""
        return self._rooms[-1] if self._rooms else None

    @property
    def rooms(self):
        """Every room this socket is in, in joining order."""
        return tuple(self._rooms)

    @property
    def buffered_amount(self):
        """Bytes queued for this socket and not yet written to the kernel."""
        t = self._transport
        return self._pending_bytes + (t.get_write_buffer_size() if t is not None else 0)

    @property
    def bufferedAmount(self):
        """Alias of ``buffered_amount``."""
        return self.buffered_amount

    @property
    def skipped(self):
        """Broadcasts and sends not delivered to this socket because it was over
        its backpressure limit (``backpressure="skip"`` policy)."""
        return self._skipped

    @property
    def compression(self):
        """What permessage-deflate settings were agreed with this client
        (a ``fastws.compression.Negotiated``), or None."""
        return self._deflater._negotiated if self._deflater is not None else None

    @property
    def dropped(self):
        """Messages from this client discarded by the rate limit
        (``rate_limit_policy="drop"``)."""
        return self._dropped

    @property
    def close_code(self):
        """The close code once the connection is closed (see the ``close`` event)."""
        return self._close_code if self._close_fired else None

    # ------------------------------------------------------------------ sending

    cpdef bint send(self, object data) except -1:
        """Send ``data``: str as text, bytes-like as binary, anything else as
        JSON text. Returns False, sending nothing, when the socket is not OPEN
        or (``backpressure="skip"``) is over its backpressure limit."""
        if self._state != S_OPEN:
            return False
        if self._deflater is None:
            return self._send_frame(encode_message(data, self._dumps))
        opcode, payload = encode_payload(data, self._dumps)
        return self._send_frame(compressed_frame(self._deflater, opcode, payload))

    cpdef bint _send_frame(self, bytes frame) except -1:
        """Queue one ready frame, honouring the backpressure policy."""
        if self._state != S_OPEN or self._transport is None:
            return False
        if self._write_paused or self._pending_bytes > self._max_backpressure:
            if self._close_slow:
                log.info("closing %s: over max_backpressure (%d bytes buffered)",
                         self.remote_address, self.buffered_amount)
                self._fail(1008, "slow consumer")
            else:
                self._skipped += 1
                self.app._skipped += 1
            return False
        self._queue_frame(frame)
        return True

    cdef int _queue_frame(self, bytes frame) except -1:
        cdef object pending = self._pending
        if pending is None:
            self._pending = frame
        elif type(pending) is bytes:
            self._pending = [pending, frame]
        else:
            (<list>pending).append(frame)
        self._pending_bytes += PyBytes_GET_SIZE(frame)
        if not self._corked and not self._dirty:
            self._dirty = True
            self._flusher.add(self)
        return 0

    cdef int _flush(self) except -1:
        cdef object pending = self._pending
        cdef object data
        cdef Py_ssize_t n
        if pending is None:
            return 0
        if type(pending) is bytes:
            self._pending = None
            data = pending
        else:
            n = len(<list>pending)
            if n == 0:
                return 0
            data = (<list>pending)[0] if n == 1 else b"".join(<list>pending)
            # The list stays for the next batch: a new one per socket per
            # loop iteration made the cyclic GC visible in a large fan-out.
            del (<list>pending)[:]
        self._pending_bytes = 0
        if self._transport is not None:
            self._write(data)
        return 0

    cdef int _close_transport(self) except -1:
        # Queued frames first: the close frame must follow the data before it.
        self._flush()
        if self._transport is not None:
            self._transport.close()
        return 0

    def ping(self, payload=b""):
        """Send a ping; the client's pong fires the ``pong`` event."""
        if self._state != S_OPEN or self._transport is None:
            return False
        self._queue_frame(encode_frame(OP_PING, payload))
        return True

    async def drain(self):
        """Wait until the send buffer is back under the backpressure limit."""
        if self._transport is None or not (self._write_paused or
                                           self._pending_bytes > self._max_backpressure):
            return
        fut = self._loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(fut)
        await fut

    # ------------------------------------------------------------------ rooms

    def join(self, room):
        """Join ``room`` (idempotent); it becomes ``ws.room``."""
        if room is None:
            raise TypeError("room must not be None")
        if self._state == S_CLOSED:
            return
        if room in self._rooms:
            self._rooms.remove(room)
        self._rooms.append(room)
        self.app._rooms.join(room, self)

    def leave(self, room):
        """Leave ``room`` (idempotent)."""
        if room in self._rooms:
            self._rooms.remove(room)
            self.app._rooms.leave(room, self)

    def broadcast(self, room, data):
        """Send ``data`` to every member of ``room`` but this socket, framed
        once for all. Returns the number of recipients."""
        if room is None:
            return 0
        return self.app._publish(room, data, self)

    def broadcast_all(self, room, data):
        """Send ``data`` to every member of ``room``, this socket included."""
        if room is None:
            return 0
        return self.app._publish(room, data, None)

    def broadcastAll(self, room, data):
        """Alias of ``broadcast_all``."""
        return self.broadcast_all(room, data)

    # ------------------------------------------------------------------ events

    def on(self, event, handler=None):
        """Register ``handler`` for ``event``; without a handler, a decorator."""
        if handler is None:
            def decorate(fn):
                self._add_handler(event, fn)
                return fn
            return decorate
        self._add_handler(event, handler)
        return handler

    def _add_handler(self, event, fn):
        new = event not in self._by_name
        add_handler(self._by_name, event, fn)
        if new and event != "message" and event not in RESERVED_EVENTS:
            self._n_custom += 1

    def off(self, event, handler):
        """Unregister ``handler``; True if it was registered."""
        removed = remove_handler(self._by_name, event, handler)
        if removed and event not in self._by_name and event != "message" \
                and event not in RESERVED_EVENTS:
            self._n_custom -= 1
        return removed

    # ------------------------------------------------------------------ closing

    def close(self, int code=1000, str reason=""):
        """Start the closing handshake. The client has ``close_timeout``
        seconds to answer before the connection is cut; ``close`` fires once."""
        if self._state != S_OPEN:
            return
        frame = encode_close(code, reason)      # validates code and reason first
        self._start_close(code, reason, frame)
        self._flush()

    def _start_close(self, int code, str reason, bytes frame):
        self._state = S_CLOSING
        self._close_code = code
        self._close_reason = reason
        if self._transport is not None:
            self._queue_frame(frame)
            self._close_timer = self._loop.call_later(
                self._options.close_timeout, self._close_timed_out)

    def _close_timed_out(self):
        self._close_timer = None
        if self._transport is not None:
            log.info("closing handshake with %s timed out; dropping the connection",
                     self.remote_address)
            self._transport.abort()

    def _fail(self, int code, str reason):
        """Fail the connection (RFC 6455 §7.1.7): close frame, then TCP close."""
        if self._state == S_OPEN:
            self._start_close(code, reason, encode_close(code, reason))
        self._close_transport()

    # ------------------------------------------------------------------ transport protocol

    def data_received(self, data):
        """Bytes from the client, in order (we are the transport's protocol)."""
        self._last_rx = monotonic()
        self._corked = True
        try:
            self._feed(data)
        finally:
            self._corked = False
            if self._pending:
                self._flush()

    def eof_received(self):
        """The client half-closed: let the transport close; ``close`` follows."""
        return False

    def connection_made(self, transport):
        """Unused: the WebSocket is attached to a transport already open."""

    def connection_lost(self, exc):
        """The TCP connection is gone: the HTTP side does the server's
        bookkeeping and then calls ``_lost``."""
        http = self._http
        self._http = None
        if http is not None:
            http.connection_lost(exc)
        else:
            self._lost(exc)

    def pause_writing(self):
        """The transport's buffer is over the backpressure limit: stop
        reading too, so a client that does not read cannot make us queue
        ever more replies (pongs, echoes) to what it sends."""
        self._write_paused = True
        self._update_reading()

    def resume_writing(self):
        """The transport's buffer fell back under the limit: fire ``drain``."""
        self._write_paused = False
        self._update_reading()
        self._release_drain_waiters()
        if self._state != S_OPEN:
            return
        if "drain" in self._by_name:
            self._deliver("drain", ())

    # ------------------------------------------------------------------ input

    cdef int _feed(self, object data) except -1:
        cdef list events = self._parser.feed(data)
        cdef tuple ev
        cdef int kind
        for ev in events:
            kind = ev[0]
            value = ev[1]
            if kind == OP_TEXT or kind == OP_BINARY:
                if self._rate > 0.0 and not self._take_token():
                    if self._state != S_OPEN:
                        return 0
                    continue
                self._deliver("message", (value,))
            elif kind == OP_PING:
                if self._state == S_OPEN and self._transport is not None:
                    self._queue_frame(encode_frame(OP_PONG, value))
                self._deliver("ping", (value,))
            elif kind == OP_PONG:
                self._deliver("pong", (value,))
            elif kind == OP_CLOSE:
                self._on_close_frame(value[0], value[1])
            elif kind == ERROR:
                self._on_protocol_error(value)
        return 0

    cdef bint _take_token(self) except -1:
        """Spend one token of the rate limit; False when the message must go."""
        cdef double now = monotonic()
        self._tokens += (now - self._rate_t) * self._rate
        self._rate_t = now
        if self._tokens > self._burst:
            self._tokens = self._burst
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._rate_drop:
            self._dropped += 1
            self.app._dropped += 1
        else:
            log.info("closing %s: over its rate limit", self.remote_address)
            self._fail(1008, "rate limit exceeded")
        return False

    cpdef int _heartbeat(self, double now, double ping_interval, double idle_timeout) except -1:
        """Called by the server's sweep: ping a quiet client, drop a silent one."""
        if self._state != S_OPEN or self._transport is None:
            return 0
        if self._ping_at != 0.0:
            if self._last_rx >= self._ping_at:
                self._ping_at = 0.0          # it answered (or said anything)
            elif now - self._ping_at >= idle_timeout:
                log.info("dropping %s: no answer to a ping within %.1fs",
                         self.remote_address, idle_timeout)
                self._start_close(1011, "keepalive timeout", encode_close(1011, "keepalive timeout"))
                self._flush()
                self._transport.abort()
                return 0
        if self._ping_at == 0.0 and now - self._last_rx >= ping_interval:
            self._ping_at = now
            self._queue_frame(encode_frame(OP_PING, b""))
        return 0

    def _on_close_frame(self, int code, str reason):
        if self._state == S_OPEN:
            # The client started it: echo its code, then close TCP (the
            # server closes first, RFC 6455 §7.1.1).
            self._state = S_CLOSING
            self._close_code = code
            self._close_reason = reason
            if self._transport is not None:
                self._queue_frame(encode_close(code) if code != 1005 else _EMPTY_CLOSE)
        self._close_transport()
        self._fire_close()

    def _on_protocol_error(self, exc):
        log.info("protocol error from %s: %s", self.remote_address, exc)
        if "error" in self._by_name:
            self._deliver("error", (exc,))
        self._fail(exc.code, exc.reason)
        self._fire_close()

    def _lost(self, exc):
        """The TCP connection is gone (called by the HTTP protocol)."""
        self.remote_address     # keep it for close handlers and logs
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        if self._state == S_OPEN:
            self._close_code = 1006
            self._close_reason = ""
        self._state = S_CLOSED
        self._transport = None
        self._write = None
        self._pending = None
        self._pending_bytes = 0
        self._release_drain_waiters()
        self._fire_close()

    def _release_drain_waiters(self):
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def _fire_close(self):
        if self._close_fired:
            return
        self._close_fired = True
        # Every caller has closed or lost the transport: as in the browser
        # API, close handlers see CLOSED.
        self._state = S_CLOSED
        self._deliver("close", (self._close_code, self._close_reason))

    # ------------------------------------------------------------------ dispatch

    def _start(self, handler, ctx):
        """Run the route handler; messages arriving meanwhile wait their turn."""
        self._busy = True
        self._corked = True
        try:
            n = arity(handler)
            result = handler(self, ctx) if n >= 2 else handler(self) if n == 1 else handler()
        except Exception as exc:
            self._busy = False
            self._route_failed(exc)
            return
        finally:
            self._corked = False
            if self._pending:
                self._flush()
        if _awaitable(result):
            self._loop.create_task(self._drive(self._route_async(result)))
        else:
            self._busy = False
            self._drain_queue_sync()

    async def _route_async(self, aw):
        try:
            await aw
        except Exception as exc:
            self._route_failed(exc)

    def _route_failed(self, exc):
        log.error("WebSocket route handler for %s raised",
                  self.ctx.path if self.ctx is not None else "?", exc_info=exc)
        if "error" in self._by_name:
            self._call_error_handlers(exc)
        self._fail(1011, "internal error")
        if self._transport is None:
            self._fire_close()

    cdef int _deliver(self, str event, tuple args) except -1:
        if self._busy:
            if self._queue is None:
                self._queue = deque()
            self._queue.append((event, args))
            if not self._paused and len(self._queue) >= QUEUE_PAUSE:
                self._paused = True
                self._update_reading()
            return 0
        pending = self._dispatch_now(event, args)
        if pending is not None:
            self._busy = True
            self._loop.create_task(self._drive(pending))
        return 0

    def _drain_queue_sync(self):
        while self._queue and not self._busy:
            event, args = self._queue.popleft()
            self._maybe_resume()
            self._deliver(event, args)

    def _maybe_resume(self):
        if self._paused and len(self._queue) <= QUEUE_RESUME:
            self._paused = False
            self._update_reading()

    cdef int _update_reading(self) except -1:
        """Read from the client unless its handlers are backed up or our
        writes to it are: the two reasons to pause, tracked apart."""
        cdef bint off = self._paused or self._write_paused
        t = self._transport
        if off == self._reading_off or t is None or t.is_closing():
            return 0
        self._reading_off = off
        if off:
            t.pause_reading()
        else:
            t.resume_reading()
        return 0

    cdef object _dispatch_now(self, str event, tuple args):
        """Run the handlers of one event. If one returns an awaitable, return
        a coroutine that finishes the event; the caller must await it before
        delivering anything else."""
        cdef list handlers
        cdef Py_ssize_t i, n, nargs
        cdef object text
        if event == "message" and self._json_events:
            text = args[0]
            # Only a JSON object naming a "type" that has handlers can be an
            # event: a custom one, or "message" itself. Skip the parse for
            # everything else (it costs six times the rest of the dispatch).
            if type(text) is str and (<str>text).startswith("{") and '"type"' in <str>text \
                    and (self._n_custom or '"message"' in <str>text):
                named = json_event(text, self._by_name, self._loads)
                if named is not None:
                    event = named[0]
                    args = (named[1],)
        handlers = self._by_name.get(event)
        if handlers is None:
            if event == "close":
                self._after_close()
            return None
        nargs = len(args)
        for i in range(len(handlers)):
            fn, n = handlers[i]
            try:
                if n >= nargs:
                    result = fn(*args)
                else:
                    result = fn(*args[:n])
            except Exception as exc:
                self._handler_failed(event, exc)
                continue
            if _awaitable(result):
                return self._finish(event, args, result, list(handlers[i + 1:]))
        if event == "close":
            self._after_close()
        return None

    async def _finish(self, event, args, pending, rest):
        try:
            await pending
        except Exception as exc:
            self._handler_failed(event, exc)
        nargs = len(args)
        for fn, n in rest:
            try:
                result = fn(*args) if n >= nargs else fn(*args[:n])
                if _awaitable(result):
                    await result
            except Exception as exc:
                self._handler_failed(event, exc)
        if event == "close":
            self._after_close()

    async def _drive(self, pending):
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
            if self._pending:
                self._flush()

    def _handler_failed(self, event, exc):
        if event != "error" and "error" in self._by_name:
            self._call_error_handlers(exc)
        else:
            log.error("%r handler raised on a WebSocket from %s", event,
                      self.remote_address, exc_info=exc)

    def _call_error_handlers(self, exc):
        for fn, n in list(self._by_name.get("error", ())):
            try:
                result = fn(exc) if n >= 1 else fn()
                if _awaitable(result):
                    self._loop.create_task(self._await_error_handler(result))
            except Exception as inner:
                log.error("'error' handler raised", exc_info=inner)

    async def _await_error_handler(self, aw):
        try:
            await aw
        except Exception as inner:
            log.error("'error' handler raised", exc_info=inner)

    def _after_close(self):
        """Close handlers ran: leave rooms and drop references."""
        rooms = self.app._rooms
        for room in self._rooms:
            rooms.leave(room, self)
        self._rooms.clear()
        self.app._sockets.discard(self)
        self._by_name.clear()
        self._n_custom = 0

    def __repr__(self):
        return f"<WebSocket {self.remote_address} {_STATES[self._state].name}>"
