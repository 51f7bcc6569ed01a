# The room registry, cimported by the WebSocket so join/leave/broadcast stay in C.

from fastws.ws._connection cimport Connection

cdef class RoomRegistry:
    cdef dict _rooms
    cdef dict _held                         # room -> {member: [(position, kind, payload)]}: recoveries under way
    cdef dict _sent                         # member -> {room: position}: fastws.sent not yet written
    cdef object _dumps
    cdef public object relay
    cdef public object history              # MemoryHistory, or None: no room keeps history
    cdef public long long broadcasts      # publishes (each counted once, however many members)
    cdef public long long deliveries      # frames queued to members by deliver

    cpdef bint join(self, object room, Connection member) except -1
    cpdef bint leave(self, object room, Connection member) except -1
    cdef int _tell_relay(self, str hook, object room, Py_ssize_t n) except -1
    cdef bint _keeps(self, object room) except -1
    cpdef Py_ssize_t size(self, object room)
    cpdef list names(self)
    cpdef list members(self, object room)
    cdef int _note_sent(self, Connection member, object room, object position) except -1
    cpdef int flush_sent(self, Connection member, bint forced=*) except -1
    cpdef Py_ssize_t flush_all_sent(self) except -1
    cpdef Py_ssize_t deliver(self, object room, int opcode, object payload, object skip=*,
                             object position=*) except -1
    cpdef Py_ssize_t publish(self, object room, int opcode, object payload, object skip=*) except -1
    cpdef Py_ssize_t broadcast(self, object room, object data, object skip=*) except -1
