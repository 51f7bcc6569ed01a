# C-level interface of the connection core, cimported by the room registry
# so a broadcast reaches each member without a Python method call.
from fastws._frame cimport FrameParser


cdef class Flusher:
    cdef list _dirty
    cdef bint _scheduled
    cdef object _call_soon
    cdef readonly object loop
    cdef int add(self, WebSocket ws) except -1


cdef class WebSocket:
    cdef public object app
    cdef object _data
    cdef public object subprotocol
    cdef object _remote_address
    cdef public object ctx
    cdef object __weakref__

    cdef object _transport
    cdef object _write
    cdef object _http
    cdef object _options
    cdef FrameParser _parser
    cdef dict _by_name
    cdef int _n_custom            # registered event names a JSON "type" can reach
    cdef int _state
    cdef list _rooms
    cdef object _queue            # deque, None until a handler goes async
    cdef bint _busy
    cdef bint _paused             # the async queue is backed up
    cdef bint _reading_off        # transport reading is paused (either reason)
    cdef bint _close_fired
    cdef int _close_code
    cdef object _close_reason
    cdef object _close_timer
    cdef object _loop
    cdef object _dumps
    cdef object _loads
    cdef bint _json_events
    cdef list _drain_waiters      # None until someone awaits drain()
    cdef Py_ssize_t _skipped
    # write side: frames wait here until the end of the callback (corking)
    # or of the loop iteration (broadcasts), then leave in one write
    # None, one frame (bytes), or a list once a batch had several (kept, so
    # a busy socket allocates no list per loop iteration)
    cdef object _pending
    cdef Py_ssize_t _pending_bytes
    cdef bint _corked
    cdef bint _dirty
    cdef bint _write_paused
    cdef Py_ssize_t _max_backpressure
    cdef bint _close_slow
    cdef Flusher _flusher
    # liveness: monotonic seconds of the last byte received / of our ping
    cdef double _last_rx
    cdef double _ping_at
    # rate limit: token bucket over data messages (rate 0: off)
    cdef double _rate
    cdef double _burst
    cdef double _tokens
    cdef double _rate_t
    cdef bint _rate_drop
    cdef Py_ssize_t _dropped

    # permessage-deflate: None unless negotiated; the key is shared by all
    # sockets whose compressed frames are interchangeable (None: not shareable)
    cdef object _deflater
    cdef readonly object _deflate_key

    cpdef int _heartbeat(self, double now, double ping_interval, double idle_timeout) except -1
    cdef bint _take_token(self) except -1

    cpdef bint send(self, object data) except -1
    cpdef bint _send_frame(self, bytes frame) except -1
    cdef int _queue_frame(self, bytes frame) except -1
    cdef int _flush(self) except -1
    cdef int _close_transport(self) except -1
    cdef int _feed(self, object data) except -1
    cdef int _deliver(self, str event, tuple args) except -1
    cdef int _update_reading(self) except -1
    cdef object _dispatch_now(self, str event, tuple args)


cpdef bytes encode_message(object data, object dumps)
cpdef tuple encode_payload(object data, object dumps)
cdef bytes compressed_frame(object deflater, int opcode, object payload)
cdef double monotonic() noexcept nogil
