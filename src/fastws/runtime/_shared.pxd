# What the connections of one runtime share, for the runtime layer: the core's
# Shared plus what only dispatch and the asyncio adapter read, typed.

from fastws.ws._connection cimport Shared
from fastws.runtime._rooms cimport RoomRegistry
from fastws.runtime._flusher cimport Flusher


cdef class RuntimeShared(Shared):
    cdef readonly object loop
    cdef readonly object loads
    cdef readonly object dumps
    cdef readonly RoomRegistry registry
    cdef readonly Flusher flusher
    cdef readonly set sockets                # the open WebSockets
    cdef readonly Py_ssize_t max_room_name
    cdef readonly Py_ssize_t max_rooms_per_socket
    cdef readonly bint json_events

