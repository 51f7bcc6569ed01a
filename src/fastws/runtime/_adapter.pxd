# The asyncio adapter: a connection as the transport's protocol (corking,
# writes, reading paused and resumed), over _dispatch.Dispatcher.
cimport cython

from fastws.runtime._dispatch cimport Dispatcher
from fastws.runtime._flusher cimport Flusher

cdef enum:
    # A binary message this large leaves as its header and its own bytes
    # (one writev), not copied into one frame first.
    LARGE_PAYLOAD = 64 * 1024


cdef class SocketFlusher(Flusher):
    pass


cdef class Adapter(Dispatcher):
    cdef public object ctx
    cdef object _remote_address
    cdef object _transport
    cdef object _http               # the HttpProtocol, told when TCP goes away
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

    @cython.final
    cdef int _attach(self, object transport, object ctx, object http) except -1
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
