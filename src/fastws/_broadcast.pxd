# The room registry, cimported by the WebSocket so join/leave/broadcast stay in C.

cdef class RoomRegistry:
    cdef dict _rooms
    cdef object _dumps
    cdef public object relay
    cdef public long long broadcasts      # publishes (each counted once, however many members)
    cdef public long long deliveries      # frames queued to members by deliver

    cpdef bint join(self, object room, object member) except -1
    cpdef bint leave(self, object room, object member) except -1
    cpdef Py_ssize_t size(self, object room)
    cpdef list names(self)
    cpdef list members(self, object room)
    cpdef Py_ssize_t deliver(self, object room, int opcode, object payload, object skip=*) except -1
    cpdef Py_ssize_t publish(self, object room, int opcode, object payload, object skip=*) except -1
    cpdef Py_ssize_t broadcast(self, object room, object data, object skip=*) except -1
