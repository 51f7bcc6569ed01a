# Sockets fastws reads and writes itself: one epoll set per server, served in
# one callback of the asyncio loop (see _owned.pyx).

cdef class Poller:
    cdef int _epfd
    cdef object _loop
    cdef set _owned                 # every transport registered: they live while we do
    cdef list _gone                 # closed during a pass: kept alive until it ends
    cdef bint _in_pass
    cdef bint _watching             # the epoll descriptor is watched by the loop
    cdef bint _released             # the server stopped: close once the last one goes
    cdef void *_events
    cdef char *_buf
    cdef object _data_type          # the protocol type whose data_received is cached
    cdef object _data_fn
    cdef void *_data_vc
    cdef int _register(self, OwnedTransport t, unsigned int mask) except -1
    cdef int _forget(self, OwnedTransport t) except -1
    cdef int _close_if_done(self) except -1
    cdef int _deliver(self, object protocol, object data) except -1


cdef class OwnedTransport:
    cdef readonly int _fd           # -1 once the socket is gone
    cdef object _sock
    cdef object _protocol
    cdef Poller _poller
    cdef object _loop
    cdef list _buffer               # bytes the kernel did not take yet, in order
    cdef Py_ssize_t _buffered
    cdef Py_ssize_t _high
    cdef Py_ssize_t _low
    cdef unsigned int _mask         # the events epoll watches for now (0: not registered)
    cdef readonly bint _closing
    cdef bint _reading
    cdef bint _eof                  # write_eof asked: shut the write side once drained
    cdef bint _eof_sent
    cdef bint _paused               # the protocol was told pause_writing
    cdef bint _lost                 # connection_lost is scheduled or done
    cdef dict _extra
    cdef int _update_mask(self) except -1
    cdef int _read_ready(self, char *buf) except -1
    cdef int _write_ready(self) except -1
    cdef int _append(self, object data) except -1
    cdef int _after_drain(self) except -1
    cdef int _fatal(self, int err) except -1
    cdef int _force_close(self, object exc) except -1
