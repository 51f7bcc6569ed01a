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
    # Fields ordered and sized for a small object: 10,000 idle connections
    # hold one each.
    cdef object _sock               # made only if get_extra_info("socket") asks
    cdef object _protocol
    cdef Poller _poller
    cdef list _buffer               # bytes the kernel did not take yet, in order (None: none yet)
    cdef Py_ssize_t _buffered
    cdef Py_ssize_t _head           # bytes of the first buffered piece already sent
    cdef readonly int _fd           # -1 once the socket is gone
    cdef unsigned int _mask         # the events epoll watches for now (0: not registered)
    cdef int _high
    cdef int _low
    cdef readonly bint _closing
    cdef unsigned char _reading
    cdef unsigned char _eof         # write_eof asked: shut the write side once drained
    cdef unsigned char _eof_sent
    cdef unsigned char _paused      # the protocol was told pause_writing
    cdef unsigned char _lost        # connection_lost is scheduled or done
    cdef int _update_mask(self) except -1
    cdef int _read_ready(self, char *buf) except -1
    cdef int _write_ready(self) except -1
    cdef int _append(self, object data) except -1
    cdef int _after_drain(self) except -1
    cdef int _fatal(self, int err) except -1
    cdef int _force_close(self, object exc) except -1
    cdef int _release_fd(self) except -1
    cdef int _tell_writing(self, bint pause) except -1
    cdef object _socket(self)
