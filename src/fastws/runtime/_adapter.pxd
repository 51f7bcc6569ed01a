# The asyncio adapter and the user-facing WebSocket, over _dispatch.Dispatcher.
cimport cython

from fastws.runtime._dispatch cimport Dispatcher


cdef class Flusher:
    cdef list _dirty
    cdef bint _scheduled
    cdef object _call_soon
    cdef readonly object loop
    cdef readonly bint pressing          # work waits for the loop's ready queue
    cdef readonly double pressing_since
    cdef list yielded                    # sockets not read until run() comes
    cdef readonly int tasks              # fastws tasks running (their steps need the queue)
    cdef int add(self, WebSocket ws) except -1
    cdef int press(self) except -1


cdef class WebSocket(Dispatcher):
    cdef public object ctx
    cdef public object subprotocol
    cdef object _data
    cdef object _remote_address
    cdef object __weakref__
    cdef object _transport
    cdef object _http               # the HttpProtocol, told when TCP goes away
    cdef list _rooms                # None until the first join
    # The socket's descriptor for writes straight to the kernel while the
    # transport holds nothing (-2: not looked up yet; -1: never, e.g. TLS).
    cdef int _fd
    # write side: frames wait in the core's queue until the end of the
    # callback (corked) or of the loop iteration (dirty, on the flusher)
    cdef unsigned char _corked
    cdef unsigned char _dirty
    cdef unsigned char _tx_held              # the transport holds bytes it could not write yet
    cdef unsigned char _tx_over              # ... and with our queue they pass max_backpressure
    cdef unsigned char _yielding             # not read, so the loop's ready queue gets its turn
    cdef unsigned char _reading_held         # not read: hold_reading(True), for an adapter's full queue

    cpdef bint send(self, object data) except -1
    @cython.final
    cdef bint _send_large(self, int opcode, bytes payload) except -1
    @cython.final
    cdef int _check_tx_over(self) except -1
    @cython.final
    cdef int _check_drained(self) except -1
    @cython.final
    cdef int _drained(self) except -1
    @cython.final
    cdef int _write_direct(self) except -1
    @cython.final
    cdef int _direct_fd(self, bint alive) except -2
