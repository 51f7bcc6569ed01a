# The user-facing WebSocket, over _adapter.Adapter (the asyncio adapter).
cimport cython

from fastws.runtime._adapter cimport Adapter


cdef class WebSocket(Adapter):
    cdef public object subprotocol
    cdef object _data
    cdef object __weakref__
    cdef list _rooms                # None until the first join
    cdef object _recovery           # fastws.runtime.recovery.Session: a fastws.v1 client

    cpdef bint send(self, object data) except -1
    @cython.final
    cdef bint _send_large(self, int opcode, bytes payload) except -1
