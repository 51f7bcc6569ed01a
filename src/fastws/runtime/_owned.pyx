# cython: language_level=3
"""Sockets fastws owns: plain TCP connections read and written by fastws itself.

uvloop gives every socket its own libuv watcher, and each wake-up of each socket
is one callback into Python: the GIL taken and given back, uvloop's and libuv's
bookkeeping, per socket, per wake-up. With thousands of sockets that each get a
few messages (many small rooms) that is most of the cost of a message.

Here one epoll set holds every plain TCP connection of a server, and the asyncio
loop watches only that set's descriptor (``loop.add_reader``). One callback
(``Poller._on_ready``) serves every socket that is ready: it reads each into one
reused buffer and hands the bytes to its protocol, and writes what a socket could
not take when it becomes writable. Writes are tried at once (``write``); the
kernel is asked to report writability only while it refuses bytes. uvloop stays
the event loop for everything else: timers, tasks, the brokers, TLS connections.

``OwnedTransport`` keeps the asyncio ``Transport`` contract that ``HttpProtocol``
and the WebSocket adapter rely on: flow control with high- and low-water marks
(``pause_writing``/``resume_writing``), reading paused and resumed, ``close``
after the buffer drains, ``abort``, ``write_eof``, ``connection_lost`` called
soon, exactly once. ``FASTWS_IO=transport`` keeps every connection on uvloop's
transports instead (``net/listener.py``).
"""

import logging
import os
import socket
import sys

cimport cython

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.errno cimport errno, EAGAIN, EINTR
from libc.stdlib cimport malloc, free
from libc.string cimport memset, strerror
from posix.unistd cimport close as _close

from fastws.runtime._direct cimport DIRECT_IOV, msghdr, send, sendmsg, MSG_NOSIGNAL
from posix.uio cimport iovec

__all__ = ["Poller", "OwnedTransport", "io_mode"]

log = logging.getLogger("fastws")


cdef extern from "_epoll.h" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)
    unsigned int EPOLLIN, EPOLLOUT, EPOLLERR, EPOLLHUP
    int EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLL_CTL_DEL, EPOLL_CLOEXEC

cdef extern from "Python.h":
    ctypedef PyObject *(*vectorcallfunc)(PyObject *callable, PyObject **args, size_t nargsf,
                                         PyObject *kwnames)
    vectorcallfunc PyVectorcall_Function(object callable)
    void _decref "Py_DECREF"(PyObject *o)

cdef extern from "sys/socket.h" nogil:
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    int shutdown(int fd, int how)
    int SHUT_WR

cdef enum:
    # Sockets served per wake-up; the rest stay ready (level-triggered) and are
    # served at the next one, after the loop's timers and ready queue had a turn.
    MAX_EVENTS = 1024
    # One read takes at most this much, into the poller's one buffer.
    READ_SIZE = 256 * 1024
    # asyncio's default write-buffer limits.
    DEFAULT_HIGH = 64 * 1024


cdef int raise_current() except -1:
    # A NULL from a C call means an exception is set: returning -1 from an
    # ``except -1`` function hands it on as it is.
    return -1


def io_mode():
    """``"owned"`` when new plain TCP connections are served by a ``Poller``
    (Linux, unless ``FASTWS_IO=transport``), else ``"transport"`` (uvloop's)."""
    want = os.environ.get("FASTWS_IO", "owned").strip().lower() or "owned"
    if want not in ("owned", "transport"):
        raise ValueError(f"FASTWS_IO must be 'owned' or 'transport', not {want!r}")
    return want if sys.platform.startswith("linux") else "transport"


cdef class Poller:
    """One epoll set for the plain TCP connections of one server, watched by
    the asyncio loop as a single descriptor."""

    def __cinit__(self, loop):
        self._epfd = -1
        self._events = NULL
        self._buf = NULL

    def __init__(self, loop):
        self._loop = loop
        self._owned = set()
        self._gone = []
        self._epfd = epoll_create1(EPOLL_CLOEXEC)
        if self._epfd < 0:
            raise OSError(errno, strerror(errno).decode())
        self._events = malloc(MAX_EVENTS * sizeof(epoll_event))
        self._buf = <char *>malloc(READ_SIZE)
        if self._events is NULL or self._buf is NULL:
            raise MemoryError()
        loop.add_reader(self._epfd, self._on_ready)
        self._watching = True

    cdef int _deliver(self, object protocol, object data) except -1:
        """``protocol.data_received(data)``, through the vectorcall entry of the
        type's method, found once per protocol type: a bound-method lookup per
        read would cost more than the call."""
        cdef PyObject *args[2]
        cdef PyObject *r
        tp = type(protocol)
        if tp is not self._data_type:
            self._data_fn = tp.data_received
            self._data_vc = <void *>PyVectorcall_Function(self._data_fn)
            self._data_type = tp
        if self._data_vc is NULL:
            self._data_fn(protocol, data)
            return 0
        args[0] = <PyObject *>protocol
        args[1] = <PyObject *>data
        r = (<vectorcallfunc>self._data_vc)(<PyObject *>self._data_fn, args, 2, NULL)
        if r is NULL:
            raise_current()
        _decref(r)
        return 0

    def __dealloc__(self):
        if self._epfd >= 0:
            _close(self._epfd)
        free(self._events)
        free(self._buf)

    @property
    def connections(self):
        """Sockets this poller serves now."""
        return len(self._owned)

    def fileno(self):
        """The epoll set's descriptor, or -1 once it is closed."""
        return self._epfd

    def adopt(self, sock, protocol):
        """Serve ``sock`` (a connected, non-blocking TCP socket) for ``protocol``:
        ``connection_made``, then what has arrived already, then every wake-up."""
        try:
            if self._released:
                raise RuntimeError("this poller is closed")
            t = OwnedTransport(self, sock, protocol)
        except BaseException:
            sock.close()
            raise
        self._owned.add(t)
        try:
            protocol.connection_made(t)
            # The request has often arrived already: read it before registering,
            # which costs an epoll_ctl for nothing when it has.
            if t._reading and t._fd >= 0:
                t._read_ready(self._buf)
            t._update_mask()
        except BaseException:
            t.abort()
            raise
        return t

    def release(self):
        """The server stops: no new sockets; the epoll set closes once the
        last one has gone (shutdown drains or aborts them)."""
        self._released = True
        self._close_if_done()

    def _on_ready(self):
        cdef epoll_event *events = <epoll_event *>self._events
        cdef int n, i
        cdef unsigned int ev
        cdef OwnedTransport t
        n = epoll_wait(self._epfd, events, MAX_EVENTS, 0)
        if n <= 0:
            return
        self._in_pass = True
        try:
            for i in range(n):
                t = <OwnedTransport>events[i].data.ptr
                if t._lost:
                    continue        # closed earlier in this pass (kept alive in _gone)
                ev = events[i].events
                # A failing socket must not strand the rest of the pass.
                try:
                    if ev & (EPOLLOUT | EPOLLERR | EPOLLHUP):
                        if t._buffered:
                            t._write_ready()
                        elif ev & EPOLLOUT:
                            t._update_mask()    # drained earlier: now stop the reports
                    if ev & (EPOLLIN | EPOLLERR | EPOLLHUP) and not t._lost:
                        if t._reading:
                            t._read_ready(self._buf)
                        else:
                            t._update_mask()    # paused: now stop the reports
                except Exception as exc:
                    log.error("serving %r failed", t._protocol, exc_info=exc)
                    t._force_close(exc)
        finally:
            self._in_pass = False
            if self._gone:
                self._gone = []
            if self._released:
                self._close_if_done()

    cdef int _register(self, OwnedTransport t, unsigned int mask) except -1:
        cdef epoll_event event
        cdef int op
        memset(&event, 0, sizeof(event))
        event.events = mask
        event.data.ptr = <void *>t
        if t._mask == 0:
            op = EPOLL_CTL_ADD
        elif mask == 0:
            op = EPOLL_CTL_DEL
        else:
            op = EPOLL_CTL_MOD
        if epoll_ctl(self._epfd, op, t._fd, &event) < 0:
            raise OSError(errno, strerror(errno).decode())
        t._mask = mask
        return 0

    cdef int _forget(self, OwnedTransport t) except -1:
        if t._mask and t._fd >= 0:
            epoll_ctl(self._epfd, EPOLL_CTL_DEL, t._fd, NULL)
            t._mask = 0
        if t in self._owned:
            self._owned.discard(t)
            if self._in_pass:
                # Its pointer may still sit later in this pass's events.
                self._gone.append(t)
        if self._released:
            self._close_if_done()
        return 0

    cdef int _close_if_done(self) except -1:
        if self._released and not self._owned and not self._in_pass and self._epfd >= 0:
            if self._watching:
                self._watching = False
                try:
                    self._loop.remove_reader(self._epfd)
                except Exception:       # the loop is closed already
                    pass
            _close(self._epfd)
            self._epfd = -1
        return 0


@cython.no_gc_clear
cdef class OwnedTransport:
    """A connection's socket, read and written by its ``Poller``: the part of
    ``asyncio.Transport`` that fastws's protocols use."""

    def __cinit__(self):
        self._fd = -1

    def __init__(self, Poller poller, sock, protocol):
        self._poller = poller
        # The descriptor alone: a socket object per connection is 88 bytes
        # that an idle one never uses (get_extra_info makes one if asked).
        self._fd = sock.detach()
        self._protocol = protocol
        self._high = DEFAULT_HIGH
        self._low = DEFAULT_HIGH // 4
        self._reading = True

    def __repr__(self):
        return f"<OwnedTransport fd={self._fd}{' closing' if self._closing else ''}>"

    # ------------------------------------------------------------------ reading

    cdef int _read_ready(self, char *buf) except -1:
        cdef ssize_t n = recv(self._fd, buf, READ_SIZE, 0)
        if n > 0:
            self._poller._deliver(self._protocol, PyBytes_FromStringAndSize(buf, n))
        elif n == 0:
            self._reading = False
            self._update_mask()
            if not self._protocol.eof_received():
                self.close()
        elif errno != EAGAIN and errno != EINTR:
            self._fatal(errno)
        return 0

    def pause_reading(self):
        """Stop reading until ``resume_reading``."""
        # epoll is told only if the socket becomes readable meanwhile
        # (Poller._on_ready): most pauses (a socket yielding for one loop
        # iteration, a handler backed up for a moment) end before that, and
        # cost no system call at all.
        if not self._closing:
            self._reading = False

    def resume_reading(self):
        """Read again."""
        if not self._reading and not self._closing and self._fd >= 0:
            self._reading = True
            if not self._mask & EPOLLIN:
                self._update_mask()

    def is_reading(self):
        """Whether the socket is read."""
        return self._reading and not self._closing

    cdef int _update_mask(self) except -1:
        cdef unsigned int mask = 0
        if self._fd < 0 or self._lost:
            return 0
        if self._reading:
            mask |= EPOLLIN
        if self._buffered:
            mask |= EPOLLOUT
        if mask != self._mask:
            # Unregistered when nothing is wanted: epoll reports a hung-up
            # socket even with an empty mask, and that would spin.
            self._poller._register(self, mask)
        return 0

    # ------------------------------------------------------------------ writing

    def write(self, data):
        """Send ``data`` now if the kernel takes it; buffer what it does not."""
        cdef ssize_t sent
        cdef Py_ssize_t size
        if type(data) is not bytes:
            data = bytes(data)
        size = PyBytes_GET_SIZE(data)
        if size == 0 or self._closing or self._eof or self._fd < 0:
            return
        if not self._buffered:
            sent = send(self._fd, PyBytes_AS_STRING(data), size, MSG_NOSIGNAL)
            if sent == size:
                return
            if sent < 0:
                if errno != EAGAIN and errno != EINTR:
                    self._fatal(errno)
                    return
                sent = 0
            if sent:
                data = data[sent:]
        self._append(data)

    def writelines(self, chunks):
        """``write`` each chunk, in order."""
        for chunk in chunks:
            self.write(chunk)

    cdef int _append(self, object data) except -1:
        # Made when first needed: most sockets never hold a byte the kernel
        # refused, and 10,000 idle ones would each keep an empty list.
        if self._buffer is None:
            self._buffer = [data]
        else:
            self._buffer.append(data)
        self._buffered += PyBytes_GET_SIZE(data)
        self._update_mask()
        if not self._paused and self._buffered > self._high:
            self._paused = True
            self._tell_writing(True)
        return 0

    cdef int _tell_writing(self, bint pause) except -1:
        """``pause_writing``/``resume_writing``; an exception it raises goes to
        the loop's exception handler, as asyncio's transports do, and the
        connection stays up."""
        try:
            if pause:
                self._protocol.pause_writing()
            else:
                self._protocol.resume_writing()
        except Exception as exc:
            self._poller._loop.call_exception_handler({
                "message": f"protocol.{'pause' if pause else 'resume'}_writing() failed",
                "exception": exc, "transport": self, "protocol": self._protocol})
        return 0

    cdef int _write_ready(self) except -1:
        cdef list buffer = self._buffer
        cdef Py_ssize_t n = PyList_GET_SIZE(buffer), i, left
        cdef ssize_t sent
        cdef object piece
        cdef iovec iov[DIRECT_IOV]
        cdef msghdr msg
        if n > DIRECT_IOV:
            n = DIRECT_IOV
        for i in range(n):
            piece = <object>PyList_GET_ITEM(buffer, i)
            iov[i].iov_base = PyBytes_AS_STRING(piece)
            iov[i].iov_len = PyBytes_GET_SIZE(piece)
        # The first piece from where the last write stopped: an offset, not
        # a copy of the rest, or a large write drained by a slow reader
        # would copy its remainder at every wake-up.
        iov[0].iov_base = PyBytes_AS_STRING(<object>PyList_GET_ITEM(buffer, 0)) + self._head
        iov[0].iov_len -= self._head
        memset(&msg, 0, sizeof(msg))
        msg.msg_iov = iov
        msg.msg_iovlen = n
        sent = sendmsg(self._fd, &msg, MSG_NOSIGNAL)
        if sent < 0:
            if errno != EAGAIN and errno != EINTR:
                self._fatal(errno)
            return 0
        self._buffered -= sent
        left = sent + self._head
        i = 0
        while left > 0:
            piece = <object>PyList_GET_ITEM(buffer, i)
            if PyBytes_GET_SIZE(piece) <= left:
                left -= PyBytes_GET_SIZE(piece)
                i += 1
            else:
                break
        self._head = left
        if not self._buffered:
            self._buffer = None
            self._head = 0
        elif i:
            del buffer[:i]
        self._after_drain()
        return 0

    cdef int _after_drain(self) except -1:
        if self._paused and self._buffered <= self._low:
            self._paused = False
            self._tell_writing(False)
        if self._buffered or self._fd < 0:
            return 0
        # EPOLLOUT stays asked for until it is reported with nothing to
        # write: a socket that fills its buffer again soon (a busy one does)
        # costs no epoll_ctl pair per burst.
        if self._closing:
            self._force_close(None)
        elif self._eof and not self._eof_sent:
            self._eof_sent = True
            shutdown(self._fd, SHUT_WR)
        return 0

    def get_write_buffer_size(self):
        """Bytes written and not yet taken by the kernel."""
        return self._buffered

    def set_write_buffer_limits(self, high=None, low=None):
        """asyncio's rule: ``high`` defaults to 64 KiB (or 4 x ``low``), ``low`` to ``high // 4``."""
        if high is None:
            high = DEFAULT_HIGH if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        # Held as C ints: a mark past 2 GiB means "never", as 2 GiB does.
        self._high = min(high, 0x7FFFFFFF)
        self._low = min(low, 0x7FFFFFFF)
        if not self._paused and self._buffered > self._high:
            self._paused = True
            self._tell_writing(True)
        elif self._paused and self._buffered <= self._low:
            self._paused = False
            self._tell_writing(False)

    def get_write_buffer_limits(self):
        """``(low, high)``, as asyncio gives them."""
        return (self._low, self._high)

    def write_eof(self):
        """Shut the write side once what is buffered is written."""
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffered and self._fd >= 0:
            self._eof_sent = True
            shutdown(self._fd, SHUT_WR)

    def can_write_eof(self):
        """Always: a TCP socket can shut its write side."""
        return True

    # ------------------------------------------------------------------ the end

    def is_closing(self):
        """Whether ``close`` or ``abort`` was called, or the connection failed."""
        return self._closing

    def close(self):
        """Stop reading; close once what is buffered is written."""
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if self._buffered:
            self._update_mask()
        else:
            self._force_close(None)

    def abort(self):
        """Close now; what is buffered is dropped."""
        self._force_close(None)

    cdef int _fatal(self, int err) except -1:
        exc = OSError(err, strerror(err).decode())
        log.debug("%r: %s", self, exc)
        self._force_close(exc)
        return 0

    cdef int _force_close(self, object exc) except -1:
        if self._lost:
            return 0
        self._closing = True
        self._reading = False
        self._lost = True
        self._buffer = None
        self._buffered = 0
        self._head = 0
        self._poller._forget(self)
        self._poller._loop.call_soon(self._connection_lost, exc)
        return 0

    def _connection_lost(self, exc):
        try:
            self._protocol.connection_lost(exc)
        finally:
            # Only now: until the protocol heard, the number must not be
            # given to another connection it might still write to.
            self._release_fd()
            self._protocol = None

    cdef int _release_fd(self) except -1:
        fd, self._fd = self._fd, -1
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()        # it owns the descriptor (get_extra_info made it)
        elif fd >= 0:
            _close(fd)
        return 0

    def __dealloc__(self):
        # Dropped without connection_lost (its loop closed under it): the
        # descriptor is ours alone unless a socket object owns it.
        if self._fd >= 0 and self._sock is None:
            _close(self._fd)

    cdef object _socket(self):
        """A socket object for the descriptor, made on first use; it owns the
        descriptor from then on (and closes it at the end)."""
        if self._sock is None and self._fd >= 0:
            self._sock = socket.socket(fileno=self._fd)
        return self._sock

    # ------------------------------------------------------------------ the rest of Transport

    def get_extra_info(self, name, default=None):
        """``socket``, ``peername`` and ``sockname``, as asyncio names them.
        The addresses are asked of the socket each time (system calls):
        those who need them keep them (``HttpProtocol``, the WebSocket), and
        a cache here would cost every idle connection a dict."""
        if self._fd < 0:
            return default
        if name == "socket":
            return self._socket()
        if name != "peername" and name != "sockname":
            return default
        sock = self._sock
        # Asked of a short-lived socket object that never owns the
        # descriptor, unless one was made for "socket" already.
        temp = socket.socket(fileno=self._fd) if sock is None else None
        try:
            s = sock if temp is None else temp
            return s.getpeername() if name == "peername" else s.getsockname()
        except OSError:
            return default
        finally:
            if temp is not None:
                temp.detach()

    def set_protocol(self, protocol):
        """Hand the connection to another protocol (the upgrade does)."""
        self._protocol = protocol

    def get_protocol(self):
        """The protocol served now."""
        return self._protocol

    def fileno(self):
        """The socket's descriptor, or -1 once it is gone."""
        return self._fd
