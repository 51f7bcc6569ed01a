# The Flusher: sockets reached by broadcasts written once per loop iteration,
# and the loop's ready queue kept from waiting too long.


cdef class Flusher:
    cdef list _dirty
    cdef bint _scheduled
    cdef object _call_soon
    cdef readonly object loop
    cdef readonly bint pressing          # work waits for the loop's ready queue
    cdef readonly double pressing_since
    cdef list yielded                    # sockets not read until run() comes
    cdef readonly int tasks              # fastws tasks running (their steps need the queue)
    cdef int add(self, object ws) except -1
    cdef int press(self) except -1
    cdef bint overdue(self) except -1
    # what a pass does to each socket: the adapter's (runtime/_adapter.SocketFlusher)
    cdef int _flush_each(self, list dirty) except -1
    cdef int _resume_each(self, list yielded) except -1
