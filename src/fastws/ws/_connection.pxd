# The sans-I/O connection rules. The asyncio adapter (runtime/_adapter.Adapter, through
# runtime/_dispatch.Dispatcher) subclasses Connection and overrides the hooks at C level.
cimport cython

from fastws.ws._counters cimport Counters
from fastws.ws._frame cimport FrameParser

# What the base class (the sans-I/O use) records for the transport.
cdef enum TransportAction:
    TX_KEEP = 0
    TX_CLOSE = 1        # write what is queued, then close TCP
    TX_ABORT = 2        # drop TCP now
    TX_LINGER = 3       # write what is queued, half-close, keep reading and discarding


# What a lingering close does next (linger_step; LINGER_* in Python).
cdef enum:
    C_LINGER_WAIT = 0
    C_LINGER_CLOSE = 1      # nothing arriving: close
    C_LINGER_ABORT = 2      # close_timeout passed: drop


cpdef int linger_step(double now, double deadline, double last_rx) noexcept


cdef class Shared:
    # What every connection of one runtime shares, read at C level by the
    # rules: the options as C values, the clock, the counters. The runtime
    # layer subclasses it (runtime/_shared.pxd: RuntimeShared) for what only
    # it reads: the loop, the serializers, rooms, the flusher, the sockets.
    cdef readonly object options
    cdef readonly object clock
    cdef readonly Counters counters
    cdef readonly Py_ssize_t max_backpressure
    cdef readonly Py_ssize_t high_water       # flow control starts here (half the limit)
    cdef readonly Py_ssize_t discard_budget
    cdef readonly double slow_consumer_timeout
    cdef readonly double min_drain_rate
    cdef public object publisher             # the connection whose callback is running
    cdef readonly double ping_interval       # 0: no heartbeat
    cdef readonly double idle_timeout
    cdef readonly double close_timeout
    cdef readonly double rate                # 0: no rate limit
    cdef readonly double burst
    cdef readonly bint close_slow
    cdef readonly bint rate_drop


cdef class Waiting:
    # Who waits for one connection to drain (publishers flow control holds,
    # drain() callers' futures), and the drain-rate window. Made on demand.
    cdef list publishers
    cdef list futures
    cdef double since                 # start of the drain-rate window
    cdef Py_ssize_t written           # what the client had taken by then


cdef class Connection:
    cdef Shared _shared
    cdef FrameParser _parser
    cdef object _close_reason
    # permessage-deflate: None unless agreed; the key is shared by every
    # connection whose compressed frames are interchangeable (None: not shareable)
    cdef object _deflater
    cdef object _deflate_key
    # bytes out: frames wait here until the adapter writes them (corking)
    cdef object _pending              # None, one bytes, or a list kept between batches
    cdef Py_ssize_t _pending_bytes
    cdef Py_ssize_t _tx_buffered      # what the transport held when last asked
    cdef Py_ssize_t _skipped
    cdef Py_ssize_t _dropped
    cdef Py_ssize_t _discarded        # bytes read and thrown away while lingering
    cdef Py_ssize_t _tx_total         # bytes ever queued (written = this - still held)
    # for the access log and ws.stats: what went each way, since when
    cdef Py_ssize_t _rx_bytes
    cdef Py_ssize_t _rx_msgs
    cdef Py_ssize_t _tx_msgs
    cdef double _opened_at
    cdef Waiting _wait                # None unless someone waits for us to drain
    # liveness and deadlines, in seconds on the clock (0: none)
    cdef double _last_rx
    cdef double _ping_at
    cdef Py_ssize_t _ping_written     # what we had written when we pinged
    cdef double _close_deadline
    # fastws.v1 heartbeat: the messages we had sent, and when that last changed
    cdef Py_ssize_t _hb_msgs
    cdef double _hb_at
    # rate limit: the token bucket
    cdef double _tokens
    cdef double _rate_t
    # the base class's record, for sans-I/O users and tests
    cdef list _events
    cdef int _close_code
    cdef int _blocked                 # members we wait on (reading paused while > 0)
    # flags and small states: one byte each, together at the end
    cdef unsigned char _state         # ReadyState
    cdef unsigned char _tx_action
    cdef unsigned char _input_done             # a close frame came or we failed: input is not acted on
    cdef unsigned char _close_fired
    cdef unsigned char _was_over               # refused for backpressure since the last drain
    cdef unsigned char _lingering              # failed: our close frame is out, we read and discard
    cdef unsigned char _slow                   # dropped from the wait as a slow consumer, until drained
    cdef unsigned char _reading_off            # the adapter paused reading (flow control, backlog)
    cdef unsigned char _closed_by              # who sent the first close frame: 0 none, 1 us, 2 the client
    cdef unsigned char _v1                     # the client speaks fastws.v1 (docs/protocol.md)
    cdef unsigned char _sent_due               # fastws.sent notices wait for it (runtime/_rooms.pyx)

    cpdef tuple counts(self)
    @cython.final
    cdef double _now(self) except? -1.0
    @cython.final
    cdef int _receive(self, object data) except -1
    @cython.final
    cdef bint _take_token(self) except -1
    @cython.final
    cdef int _on_close_frame(self, int code, str reason) except -1
    @cython.final
    cdef int _on_protocol_error(self, object exc) except -1
    @cython.final
    cdef int _queue(self, bytes frame) except -1
    @cython.final
    cdef bint _over_limit(self) except -1
    cpdef bint send_frame(self, bytes frame) except -1
    @cython.final
    cdef int _start_close(self, int code, str reason, bytes frame) except -1
    @cython.final
    cdef int _fail(self, int code, str reason) except -1
    @cython.final
    cdef int _fail_behind(self, str reason) except -1
    @cython.final
    cdef int _heartbeat(self, double now) except -1
    @cython.final
    cdef int _discard(self, object data) except -1
    @cython.final
    cdef int _fire_close(self) except -1
    @cython.final
    cdef int _lost(self) except -1
    cpdef int tick(self, double now) except -1
    @cython.final
    cdef object _take_pending(self)
    @cython.final
    cdef int _high_water_reached(self) except -1
    @cython.final
    cdef int _add_waiter(self, Connection publisher) except -1
    @cython.final
    cdef Waiting _waiting(self)
    @cython.final
    cdef int _release_waiters(self) except -1
    @cython.final
    cdef int _check_drain_rate(self, double now) except -1
    @cython.final
    cdef Py_ssize_t _written(self) except -1

    # hooks: what the adapter does with what the rules decide
    cdef int _on_message(self, object data) except -1
    cdef int _on_ping(self, bytes payload) except -1
    cdef int _on_pong(self, bytes payload) except -1
    cdef int _on_error(self, object exc) except -1
    cdef int _on_close(self, int code, str reason) except -1
    cdef int _on_output(self) except -1
    cdef int _close_transport(self) except -1
    cdef int _linger_transport(self) except -1
    cdef int _abort_transport(self) except -1
    cdef Py_ssize_t _transport_buffered(self) except -1
    cdef Py_ssize_t _delivered(self) except -1
    cdef int _on_blocked(self) except -1
    cdef int _on_unblocked(self) except -1
    cdef str _peer(self)


cdef double monotonic() noexcept nogil
