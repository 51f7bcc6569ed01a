# cython: language_level=3
"""The connection rules of RFC 6455 after the handshake, sans-I/O.

``Connection`` takes bytes and calls in (``receive_data``, ``send_frame``,
``close``, ``tick(now)``, ``transport_lost``) and gives events and bytes out
(``events_received()``, ``data_to_send()``, ``transport_action``). It decides:

- what to answer: a pong for each ping, the echo of a client's close frame;
- how a close handshake proceeds, started by either side, and when TCP closes
  (the server closes first, RFC 6455 §7.1.1); a close we start that the client
  never answers is cut after ``close_timeout``;
- how a failure goes (§7.1.7): the close frame with its code, then TCP closes,
  and input after it is not acted on;
- the heartbeat: ping a client silent for ``ping_interval``, drop one that
  stays silent ``idle_timeout`` after that (1011);
- the backpressure policy on what it queues (``max_backpressure``: one number
  for the bytes queued here and those the transport still holds) and the rate
  limit on data messages;
- flow control: past its high-water mark a connection makes whoever filled it
  wait (``_blocked``: the adapter stops reading that one) until it has drained,
  and drops from the wait, for the backpressure policy, one that drains slower
  than ``min_drain_rate`` over ``slow_consumer_timeout``;
- that ``close`` is reported exactly once, with 1006 when TCP just went away.

The asyncio adapter subclasses it and overrides the ``_on_*`` hooks and the
transport calls at C level, so a message costs no event object; the base class
records them instead, so the rules are tested with bytes alone and a clock
passed in (``clock=``), like the frame codec.
"""

import contextvars
import logging

from cpython.bytes cimport PyBytes_GET_SIZE
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from fastws._constants cimport (OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG,
                                OPEN, CLOSING, CLOSED, CLOSE_NO_STATUS, CLOSE_ABNORMAL,
                                CLOSE_POLICY_VIOLATION, CLOSE_INTERNAL_ERROR,
                                CLOSE_TRY_AGAIN_LATER)
from fastws.ws._counters cimport Counters
from fastws.ws._frame cimport FrameParser, encode_frame
from fastws.ws._frame import ERROR, encode_close
from fastws.deflate.permessage import Deflater, Inflater

__all__ = ["Connection", "Shared"]

log = logging.getLogger("fastws")

#: The connection whose async handler is running, for flow control: the task of
#: an async episode sets it (a synchronous callback sets Shared.publisher).
publisher_var = contextvars.ContextVar("fastws_publisher", default=None)

cdef bytes _EMPTY_CLOSE = encode_frame(OP_CLOSE, b"")
#: What a fastws.v1 client hears when we have sent it nothing for a heartbeat
#: interval (a browser cannot see pings, so it watches for frames).
cdef bytes _HEARTBEAT = encode_frame(OP_TEXT, b'{"type":"fastws.heartbeat"}')
#: Seconds of silence after which a lingering connection is closed: nothing is
#: arriving that a close could reset.
LINGER_QUIET = 1.0
cdef double _LINGER_QUIET = LINGER_QUIET


#: What linger_step returns.
LINGER_WAIT = C_LINGER_WAIT
LINGER_CLOSE = C_LINGER_CLOSE
LINGER_ABORT = C_LINGER_ABORT


cpdef int linger_step(double now, double deadline, double last_rx) noexcept:
    """What a lingering close does at ``now``: LINGER_ABORT once ``deadline``
    (close_timeout after our last word) has passed, LINGER_CLOSE once nothing
    has arrived for LINGER_QUIET, else LINGER_WAIT. The one rule for both
    lingering closes: a WebSocket's after its close frame (``tick``) and an HTTP
    connection's after an answer that ends it (``http/protocol.py``)."""
    if now >= deadline:
        return C_LINGER_ABORT
    if now - last_rx >= _LINGER_QUIET:
        return C_LINGER_CLOSE
    return C_LINGER_WAIT
cdef bytes _PING = encode_frame(OP_PING, b"")


cdef double monotonic() noexcept nogil:
    """The clock of asyncio's loop.time() and time.monotonic(), without Python."""
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef class Shared:
    """What every connection of one runtime shares, as the rules read it.

    ``options`` is a ``fastws.options.WebSocketOptions``; ``clock`` a function
    returning seconds (default: the monotonic clock); ``counters`` the
    runtime's totals. No loop and nothing of the layers above: the runtime
    subclasses this (``fastws.runtime._shared.RuntimeShared``) for those.
    """

    def __init__(self, options, *, clock=None, Counters counters=None):
        self.options = options
        self.clock = clock
        self.counters = counters if counters is not None else Counters()
        self.max_backpressure = options.max_backpressure
        self.high_water = options.max_backpressure // 2
        self.discard_budget = options.discard_budget
        self.slow_consumer_timeout = options.slow_consumer_timeout
        self.min_drain_rate = options.min_drain_rate
        self.close_slow = options.backpressure == "close"
        self.ping_interval = options.ping_interval or 0.0
        self.idle_timeout = options.idle_timeout
        self.close_timeout = options.close_timeout
        if options.rate_limit is not None:
            self.rate, self.burst = options.rate_limit
        self.rate_drop = options.rate_limit_policy == "drop"


cdef class Waiting:
    """Who waits for one connection to drain, and since when (see _waiting)."""


cdef class Connection:
    """One WebSocket connection's protocol rules, with no I/O.

    ``settings`` is a ``Shared`` (what a runtime's connections share) or just
    a ``fastws.options.WebSocketOptions``; ``negotiated`` the
    ``fastws.deflate.permessage.Negotiated`` permessage-deflate parameters, if any
    were agreed; ``clock`` (with options only) a function returning seconds.
    """

    def __init__(self, settings, *, negotiated=None, clock=None):
        cdef Shared shared
        if isinstance(settings, Shared):
            shared = <Shared>settings
        else:
            shared = Shared(settings, clock=clock)
        self._shared = shared
        inflater = None
        if negotiated is not None:
            inflater = Inflater(negotiated)
            self._deflater = Deflater(negotiated)
            # The shared compressor's key: one object per distinct setting,
            # so a broadcast can match members by identity.
            deflater_shared = self._deflater._shared
            self._deflate_key = deflater_shared.key if deflater_shared is not None else None
        self._parser = FrameParser(max_message_size=shared.options.max_message_size,
                                   inflater=inflater)
        self._state = OPEN
        self._close_code = CLOSE_ABNORMAL
        self._close_reason = ""
        self._last_rx = self._opened_at = self._now()
        if shared.rate > 0.0:
            self._tokens = shared.burst
            self._rate_t = self._last_rx

    # ------------------------------------------------------------------ sans-I/O API

    def receive_data(self, data):
        """Bytes from the client, in order."""
        self._receive(data)

    def events_received(self):
        """What happened since the last call (base class only): tuples
        ``("message", data)``, ``("ping", payload)``, ``("pong", payload)``,
        ``("error", exc)``, ``("close", code, reason)``."""
        events, self._events = self._events, None
        return events or []

    def data_to_send(self):
        """The bytes to write to the client now (b"" for none). Taking them
        means they were written: whoever waited for this connection to drain
        goes on."""
        data = self._take_pending()
        if self._wait is not None or self._slow:
            self._slow = False
            self._release_waiters()
        return b"" if data is None else data

    @property
    def waiting(self):
        """Whether flow control holds this connection: a member its messages
        filled past the high-water mark has not drained yet (not read meanwhile)."""
        return self._blocked > 0

    cpdef tuple counts(self):
        """(messages in, messages out, bytes in, bytes out) so far, for metrics."""
        return (self._rx_msgs, self._tx_msgs, self._rx_bytes, self._tx_total)

    @property
    def stats(self):
        """What this connection carried: ``messages_in``, ``messages_out``,
        ``bytes_in``, ``bytes_out`` (wire bytes, frames included), ``seconds``
        open, and ``closed_by`` ("client", "server", or None while open or when
        TCP went away without a close frame)."""
        return {"messages_in": self._rx_msgs, "messages_out": self._tx_msgs,
                "bytes_in": self._rx_bytes, "bytes_out": self._tx_total,
                "seconds": self._now() - self._opened_at,
                "closed_by": ("server", "client")[self._closed_by - 1] if self._closed_by else None}

    @property
    def slow(self):
        """Whether this connection was given up on as a slow consumer (it no
        longer holds anyone up), until it drains."""
        return self._slow != 0

    @property
    def transport_action(self):
        """What the transport must do after writing ``data_to_send()``: None,
        "close" (close TCP), "abort" (drop it at once) or "linger" (half-close,
        then read and discard until the client closes). Base class only."""
        return (None, "close", "abort", "linger")[self._tx_action]

    @property
    def compression(self):
        """The permessage-deflate parameters agreed (a
        ``fastws.deflate.permessage.Negotiated``), or None."""
        return self._deflater._negotiated if self._deflater is not None else None

    @property
    def state(self):
        """The ReadyState as an int: 1 OPEN, 2 CLOSING, 3 CLOSED."""
        return self._state

    @property
    def close_code(self):
        """The close code once the connection is closed, else None."""
        return self._close_code if self._close_fired else None

    @property
    def close_reason(self):
        """The close reason once the connection is closed, else None."""
        return self._close_reason if self._close_fired else None

    def transport_lost(self):
        """TCP is gone (closed by either side, or reset)."""
        self._lost()

    cdef double _now(self) except? -1.0:
        if self._shared.clock is None:
            return monotonic()
        return self._shared.clock()

    cdef str _peer(self):
        """How log lines name the client (the adapter knows its address)."""
        return "client"

    # ------------------------------------------------------------------ input

    cdef int _receive(self, object data) except -1:
        cdef list events
        cdef tuple ev
        cdef int kind
        self._last_rx = self._now()
        self._rx_bytes += len(data)
        if self._input_done:
            if self._lingering:
                self._discard(data)
            return 0
        events = self._parser.feed(data)
        for ev in events:
            kind = ev[0]
            value = ev[1]
            if kind == OP_TEXT or kind == OP_BINARY:
                if self._shared.rate > 0.0 and not self._take_token():
                    if self._input_done:
                        return 0
                    continue
                self._rx_msgs += 1
                self._on_message(value)
            elif kind == OP_PING:
                if self._state == OPEN:
                    self._queue(encode_frame(OP_PONG, value))
                self._on_ping(value)
            elif kind == OP_PONG:
                self._on_pong(value)
            elif kind == OP_CLOSE:
                self._on_close_frame(value[0], value[1])
            elif kind == ERROR:
                self._on_protocol_error(value)
            if self._input_done:
                return 0
        return 0

    cdef bint _take_token(self) except -1:
        """Spend one token of the rate limit; False when the message must go."""
        cdef double now = self._now()
        self._tokens += (now - self._rate_t) * self._shared.rate
        self._rate_t = now
        if self._tokens > self._shared.burst:
            self._tokens = self._shared.burst
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        if self._shared.rate_drop:
            self._dropped += 1
            self._shared.counters.dropped += 1
        elif self._v1:
            log.info("closing %s: over its rate limit", self._peer())
            self._fail_behind("rate limit exceeded")
        else:
            log.info("closing %s: over its rate limit", self._peer())
            self._fail(CLOSE_POLICY_VIOLATION, "rate limit exceeded")
        return False

    cdef int _on_close_frame(self, int code, str reason) except -1:
        self._input_done = True
        if self._state == OPEN:
            # The client started it: echo its code, then close TCP.
            self._state = CLOSING
            self._closed_by = 2
            self._close_code = code
            self._close_reason = reason
            # A client that stops reading cannot hold our close open forever.
            self._close_deadline = self._now() + self._shared.close_timeout
            self._queue(encode_close(code) if code != CLOSE_NO_STATUS else _EMPTY_CLOSE)
        # Otherwise it answered ours: the handshake is complete either way.
        self._close_transport()
        self._fire_close()
        return 0

    cdef int _on_protocol_error(self, object exc) except -1:
        log.info("protocol error from %s: %s", self._peer(), exc)
        self._on_error(exc)
        self._fail(exc.code, exc.reason)
        self._fire_close()
        return 0

    # ------------------------------------------------------------------ output

    cdef int _queue(self, bytes frame) except -1:
        """Queue bytes for the client, whatever the backpressure (control frames)."""
        cdef object pending = self._pending
        if pending is None:
            self._pending = frame
        elif type(pending) is list:
            (<list>pending).append(frame)
        else:
            self._pending = [pending, frame]
        self._pending_bytes += PyBytes_GET_SIZE(frame)
        self._tx_total += PyBytes_GET_SIZE(frame)
        self._on_output()
        return 0

    cdef bint _over_limit(self) except -1:
        """Whether this socket holds more than ``max_backpressure`` bytes, counting
        both what waits here and what the transport has not written yet."""
        if self._pending_bytes + self._tx_buffered <= self._shared.max_backpressure:
            return False
        # The transport may have drained since it was last asked: ask again
        # before acting on a stale figure.
        self._tx_buffered = self._transport_buffered()
        return self._pending_bytes + self._tx_buffered > self._shared.max_backpressure

    cpdef bint send_frame(self, bytes frame) except -1:
        """Queue one data frame under the backpressure policy. False when it
        was not queued: not OPEN, or over ``max_backpressure`` ("skip" counts
        it; "close" fails the connection with 1008)."""
        if frame is None:
            # Its size and bytes are read straight from the object in C.
            raise TypeError("send_frame needs a bytes frame, not None")
        if self._state != OPEN:
            return False
        if self._over_limit():
            self._was_over = True
            if self._shared.close_slow or self._v1:
                log.info("closing %s: over max_backpressure (%d bytes buffered)",
                         self._peer(), self._pending_bytes + self._tx_buffered)
                if self._v1:
                    self._fail_behind("slow consumer")
                else:
                    self._fail(CLOSE_POLICY_VIOLATION, "slow consumer")
            else:
                self._skipped += 1
                self._shared.counters.skipped += 1
            return False
        self._queue(frame)
        self._tx_msgs += 1
        if self._pending_bytes + self._tx_buffered > self._shared.high_water and not self._slow:
            self._high_water_reached()
        return True

    # ------------------------------------------------------------------ flow control

    cdef int _high_water_reached(self) except -1:
        """Make the client whose callback queued this wait until we drain."""
        publisher = self._shared.publisher
        if publisher is None:
            publisher = publisher_var.get()
        if publisher is not None:       # server code has app.drain(room) instead
            self._add_waiter(<Connection>publisher)
        return 0

    cdef int _add_waiter(self, Connection publisher) except -1:
        cdef Waiting w = self._waiting()
        if publisher in w.publishers:
            return 0
        w.publishers.append(publisher)
        publisher._blocked += 1
        if publisher._blocked == 1:
            publisher._on_blocked()
        return 0

    cdef Waiting _waiting(self):
        """Who waits for us, made when the first one does: the drain-rate
        window starts then."""
        cdef Waiting w = self._wait
        if w is None:
            w = self._wait = Waiting.__new__(Waiting)
            w.publishers = []
            w.futures = []
            w.since = self._now()
            w.written = self._delivered()
        return w

    cdef int _release_waiters(self) except -1:
        """We drained (or are given up on): whoever waited for us goes on."""
        cdef Connection publisher
        cdef Waiting w = self._wait
        if w is None:
            return 0
        self._wait = None
        # Every count and future first, then the hooks, each on its own: a hook
        # delivers held messages (handlers run), and one that raised used to
        # leave the publishers after it blocked for good, and the close of the
        # socket being lost (this runs from _lost) never fired.
        unblocked = []
        for p in w.publishers:
            publisher = <Connection>p
            publisher._blocked -= 1
            if publisher._blocked == 0:
                unblocked.append(publisher)
        for fut in w.futures:
            if not fut.done():
                fut.set_result(None)
        for p in unblocked:
            publisher = <Connection>p
            try:
                publisher._on_unblocked()
            except Exception as exc:
                log.error("resuming %s after %s drained failed", publisher._peer(),
                          self._peer(), exc_info=exc)
        return 0

    cdef Py_ssize_t _written(self) except -1:
        return self._tx_total - self._pending_bytes - self._transport_buffered()

    cdef int _check_drain_rate(self, double now) except -1:
        """Called by tick while publishers wait for us: a consumer that drained
        less than min_drain_rate over the last slow_consumer_timeout is dropped
        from the wait and handed to the backpressure policy."""
        cdef Waiting w = self._wait
        cdef double elapsed = now - w.since
        cdef Py_ssize_t written
        if elapsed < self._shared.slow_consumer_timeout:
            return 0
        # What the client took, not what the kernel accepted: a socket that
        # does not read can still absorb megabytes into its send buffer.
        written = self._delivered()
        if written - w.written >= self._shared.min_drain_rate * elapsed:
            w.since = now                       # alive: a new window
            w.written = written
            return 0
        log.info("%s drained %d bytes in %.1fs while others waited: slow consumer",
                 self._peer(), written - w.written, elapsed)
        self._slow = True
        self._shared.counters.slow_consumers += 1
        self._release_waiters()
        if self._v1:
            self._fail_behind("slow consumer")
        elif self._shared.close_slow:
            self._fail(CLOSE_POLICY_VIOLATION, "slow consumer")
        return 0

    cdef object _take_pending(self):
        """The queued bytes as one object (None if nothing waits), and the
        queue emptied; a list is kept for the next batch, so a busy socket
        allocates none per loop iteration."""
        cdef object pending = self._pending
        cdef object data
        cdef Py_ssize_t n
        if pending is None:
            return None
        if type(pending) is list:
            n = len(<list>pending)
            if n == 0:
                return None
            data = (<list>pending)[0] if n == 1 else b"".join(<list>pending)
            del (<list>pending)[:]
        else:
            self._pending = None
            data = pending
        self._pending_bytes = 0
        return data

    def ping(self, payload=b""):
        """Queue a ping; False when the connection is not OPEN."""
        if self._state != OPEN:
            return False
        self._queue(encode_frame(OP_PING, payload))
        return True

    # ------------------------------------------------------------------ closing

    def close(self, int code=1000, str reason=""):
        """Start the closing handshake (a no-op unless OPEN). The client has
        ``close_timeout`` seconds to answer before TCP is cut."""
        if self._state != OPEN:
            return
        frame = encode_close(code, reason)      # validates code and reason first
        self._start_close(code, reason, frame)

    def fail(self, int code, str reason=""):
        """Fail the connection (RFC 6455 §7.1.7): close frame, then TCP closes."""
        self._fail(code, reason)

    cdef int _start_close(self, int code, str reason, bytes frame) except -1:
        self._state = CLOSING
        self._closed_by = 1
        self._close_code = code
        self._close_reason = reason
        self._close_deadline = self._now() + self._shared.close_timeout
        self._queue(frame)
        return 0

    cdef int _fail_behind(self, str reason) except -1:
        """A fastws.v1 client is never skipped a message nor told 1008 for
        falling behind: 1013 tells it to come back and recover what it missed."""
        return self._fail(CLOSE_TRY_AGAIN_LATER, reason)

    cdef int _heartbeat(self, double now) except -1:
        """Send a fastws.v1 heartbeat when we have sent no message for an
        interval. Messages, not bytes: a browser never sees pings and pongs."""
        if self._tx_msgs != self._hb_msgs:
            self._hb_msgs = self._tx_msgs
            self._hb_at = now
        elif now - self._hb_at >= self._shared.ping_interval:
            self._queue(_HEARTBEAT)
            self._tx_msgs += 1
            self._hb_msgs = self._tx_msgs
            self._hb_at = now
        return 0

    cdef int _fail(self, int code, str reason) except -1:
        # The client may still be sending (the rest of a message too big, say):
        # closing TCP now would make its kernel answer our close frame with a
        # reset. So: close frame, half-close, read and discard until it closes,
        # within close_timeout and the discard budget.
        self._input_done = True
        if self._state == OPEN:
            self._start_close(code, reason, encode_close(code, reason))
        if not self._lingering and self._state != CLOSED:
            self._lingering = True
            self._last_rx = self._now()         # the quiet period starts now
            self._linger_transport()
        return 0

    cdef int _discard(self, object data) except -1:
        """Input after we failed the connection: thrown away, but watched for
        the client's answering close frame, which completes the handshake."""
        cdef tuple ev
        self._discarded += len(data)
        if self._discarded > self._shared.discard_budget:
            log.info("closing %s: still sending after our close frame, past the discard "
                     "budget of %d bytes", self._peer(), self._shared.discard_budget)
            self._lingering = False
            self._close_transport()
            return 0
        if self._parser.error is None:
            for ev in self._parser.feed(data):
                if ev[0] == OP_CLOSE or ev[0] == ERROR:
                    # Its close frame came (nothing follows one), or the stream
                    # is past reading: closing now resets nobody who is sending.
                    self._lingering = False
                    self._close_transport()
                    break
        return 0

    cdef int _fire_close(self) except -1:
        if self._close_fired:
            return 0
        self._close_fired = True
        # Every caller has closed or lost the transport: as in the browser
        # API, close handlers see CLOSED.
        self._state = CLOSED
        self._on_close(self._close_code, self._close_reason)
        return 0

    cdef int _lost(self) except -1:
        if self._state == OPEN:
            self._close_code = CLOSE_ABNORMAL
            self._close_reason = ""
        self._state = CLOSED
        self._close_deadline = 0.0
        self._input_done = True
        self._lingering = False
        self._pending = None
        self._pending_bytes = 0
        self._tx_buffered = 0
        self._release_waiters()
        self._fire_close()
        return 0

    # ------------------------------------------------------------------ time

    cpdef int tick(self, double now) except -1:
        """Act on the clock: cut a close handshake past ``close_timeout``,
        ping a quiet client, drop a silent one. The server calls it for every
        connection about four times per shortest period."""
        cdef int step
        if self._state == CLOSED:
            return 0
        if self._close_deadline != 0.0:
            step = linger_step(now, self._close_deadline, self._last_rx)
            if step == C_LINGER_ABORT:
                self._close_deadline = 0.0
                log.info("closing handshake with %s timed out; dropping the connection",
                         self._peer())
                self._abort_transport()
            elif step == C_LINGER_CLOSE and self._lingering:
                # Nothing is arriving: it has sent what it was sending (a client
                # that reads our close frame answers it or closes; one that
                # does neither is not worth waiting close_timeout for).
                self._lingering = False
                self._close_transport()
            return 0
        if self._state != OPEN:
            return 0
        if self._v1 and self._shared.ping_interval != 0.0:
            self._heartbeat(now)
        if self._wait is not None:
            self._check_drain_rate(now)
        if self._reading_off:
            # Not reading it is our doing: its pongs wait in the kernel, so
            # silence proves nothing (the liveness clock restarts on resume).
            self._last_rx = now
            self._ping_at = 0.0
            return 0
        if self._shared.ping_interval == 0.0:
            return 0
        if self._ping_at != 0.0:
            if self._last_rx >= self._ping_at:
                self._ping_at = 0.0          # it answered (or said anything)
            elif self._delivered() > self._ping_written:
                # It is reading what we send: alive, though its pong still
                # waits behind that data (a large backlog makes it late).
                self._ping_at = 0.0
                self._last_rx = now
            elif now - self._ping_at >= self._shared.idle_timeout:
                log.info("dropping %s: no answer to a ping within %.1fs",
                         self._peer(), self._shared.idle_timeout)
                self._input_done = True
                self._start_close(CLOSE_INTERNAL_ERROR, "keepalive timeout",
                                  encode_close(CLOSE_INTERNAL_ERROR, "keepalive timeout"))
                self._close_deadline = 0.0
                self._abort_transport()
                return 0
        if self._ping_at == 0.0 and now - self._last_rx >= self._shared.ping_interval:
            self._ping_at = now
            # The ping itself will be written too: only more than that shows
            # the client reading.
            self._ping_written = self._delivered() + PyBytes_GET_SIZE(_PING)
            self._queue(_PING)
        return 0

    # ------------------------------------------------------------------ hooks
    # The base class records what the rules decided; the adapter overrides these.

    cdef int _on_message(self, object data) except -1:
        self._record(("message", data))
        return 0

    cdef int _on_ping(self, bytes payload) except -1:
        self._record(("ping", payload))
        return 0

    cdef int _on_pong(self, bytes payload) except -1:
        self._record(("pong", payload))
        return 0

    cdef int _on_error(self, object exc) except -1:
        self._record(("error", exc))
        return 0

    cdef int _on_close(self, int code, str reason) except -1:
        self._record(("close", code, reason))
        return 0

    cdef int _on_output(self) except -1:
        return 0

    cdef int _close_transport(self) except -1:
        if self._tx_action == 0 or self._tx_action == TX_LINGER:
            self._tx_action = TX_CLOSE
        return 0

    cdef int _abort_transport(self) except -1:
        self._tx_action = TX_ABORT
        return 0

    cdef int _linger_transport(self) except -1:
        if self._tx_action == 0:
            self._tx_action = TX_LINGER
        return 0

    cdef Py_ssize_t _transport_buffered(self) except -1:
        return 0

    cdef Py_ssize_t _delivered(self) except -1:
        """Bytes the client has taken (the adapter also subtracts what the
        kernel still holds unacknowledged)."""
        return self._written()

    cdef int _on_blocked(self) except -1:
        self._reading_off = True
        return 0

    cdef int _on_unblocked(self) except -1:
        self._reading_off = False
        return 0

    def _record(self, event):
        if self._events is None:
            self._events = []
        self._events.append(event)
