# Events of one connection: handler tables, the JSON event rule, ordered dispatch.
cimport cython

from fastws.ws._connection cimport Connection


cdef class Dispatcher(Connection):
    cdef dict _by_name
    cdef object _held             # deque of (event, args), None until a handler goes async
    cdef int _n_custom            # registered event names a JSON "type" can reach
    cdef unsigned char _busy               # a handler (or the route handler) is still running
    cdef unsigned char _backlogged         # _held is long: reading is paused until it shrinks
    cdef unsigned char _plain              # JSON events off for this connection (ws.json_events)

    @cython.final
    cdef int _deliver(self, str event, tuple args) except -1
    @cython.final
    cdef int _hold(self, str event, tuple args) except -1
    @cython.final
    cdef int _started(self, object pending) except -1
    @cython.final
    cdef object _dispatch_now(self, str event, tuple args)
    @cython.final
    cdef object _message_now(self, object data)
    @cython.final
    cdef object _run(self, str event, list handlers, object arg, tuple args)
    @cython.final
    cdef int _maybe_resume(self) except -1

    # what the adapter provides
    cdef int _update_reading(self) except -1
    cdef int _flush(self) except -1
    cdef int _after_close(self) except -1
    cdef int _task_started(self) except -1
    cdef int _task_done(self) except -1


cpdef object json_event(str text, dict handlers, object loads, bint custom=*)
