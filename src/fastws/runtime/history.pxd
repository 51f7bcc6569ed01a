# The memory history's classes as C types (history.py is compiled in pure Python
# mode): the registry calls MemoryHistory.append once per publish, at C level.

cdef Py_ssize_t _footprint(object payload) except -1


cdef class _Room:
    cdef public object room
    cdef public str epoch
    cdef public Py_ssize_t offset
    cdef public object entries          # deque of (offset, time, kind, payload)
    cdef public Py_ssize_t stale
    cdef public double touched


cdef class MemoryHistory:
    cdef public Py_ssize_t size
    cdef public double ttl
    cdef public Py_ssize_t max_bytes
    cdef object _choice                 # RoomChoice: history_rooms, asked once per room
    cdef object _clock
    cdef dict _rooms
    cdef readonly object _order         # deque of _Room, one place per stored message
    cdef Py_ssize_t _kept
    cdef set _emptied
    cdef double _swept
    cdef public Py_ssize_t nbytes
    cdef Py_ssize_t _stored
    cdef list _evicted
    cdef Py_ssize_t _rooms_dropped
    cdef object _last                   # (epoch, offset) of the last message stored

    cpdef bint keeps(self, object room) except -1
    cpdef object append(self, object room, int opcode, object payload)
    cdef _Room _record(self, object room, double now)
    cdef int _drop_oldest(self, _Room rec, int reason) except -1
    cdef int _expire(self, _Room rec, double now) except -1
    cdef int _evict_oldest(self) except -1
    cdef int _forget(self, _Room rec) except -1
    cdef int _compact(self) except -1
