# cython: language_level=3
"""The asyncio adapter: a connection as the transport's protocol.

``Adapter`` is what uvloop talks to after the upgrade: it calls
``data_received`` directly, which hands the bytes to the connection rules
(``ws/_connection``) and the handlers (``_dispatch``) it inherits, and
``pause_writing``/``resume_writing``/``connection_lost``. What those queue
leaves in one write at the end of the callback that produced it (corking) or,
for sockets reached by broadcasts, once per loop iteration (the runtime's
``Flusher``, whose passes ``SocketFlusher`` here carries out): W broadcasts to
a socket cost one system call, not W. While uvloop's transport holds nothing,
that write goes straight to the socket's descriptor (``send``, or ``sendmsg``
of the queued frames: ``_direct.pxd``), else through the transport.

``fastws.WebSocket`` (``_websocket``) subclasses this with the API users touch.
"""

import logging

cimport cython

from cpython.list cimport PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.errno cimport errno, EAGAIN, EINTR

from fastws._constants cimport OPEN
from fastws.runtime._dispatch cimport Dispatcher
from fastws.runtime._flusher cimport Flusher
from fastws.runtime._shared cimport RuntimeShared
from fastws.runtime._direct cimport DIRECT_IOV, send_buffer, send_frames
from fastws.runtime._owned cimport OwnedTransport
from fastws.runtime.kernel import kernel_unsent

__all__ = ["Adapter", "SocketFlusher"]


cdef extern from "Python.h":
    ctypedef PyObject *(*vectorcallfunc)(PyObject *callable, PyObject **args, size_t nargsf,
                                         PyObject *kwnames)
    vectorcallfunc PyVectorcall_Function(object callable)
    int PyObject_IsTrue(PyObject *o)
    void _decref "Py_DECREF"(PyObject *o)
    PyObject *_true "Py_True"

try:
    # Writes go straight to the socket only under uvloop's own TCP transport:
    # its buffer is empty exactly when it told us nothing is held (high-water
    # mark 0), so nothing we write can overtake what it still holds.
    from uvloop.loop import TCPTransport as _TCPTransport
    # Called unbound: a method lookup per write would cost more than the call.
    _is_closing = _TCPTransport.is_closing
except ImportError:     # pragma: no cover - uvloop is a dependency off Windows
    _TCPTransport = _is_closing = None

# The closing check runs once per socket per flush, so it is called through
# the method's own vectorcall entry (public C API since 3.8): a generic call
# from Cython spends more instructions finding that entry than the check
# itself costs. NULL (no vectorcall) falls back to the generic call.
cdef vectorcallfunc _is_closing_vc = (PyVectorcall_Function(_is_closing)
                                      if _is_closing is not None else NULL)
# The object that entry belongs to, kept here: the module global could be
# rebound, and the entry must be called with the callable it came from.
cdef object _is_closing_fn = _is_closing


cdef inline bint _closing(object t) except -1:
    """uvloop's ``TCPTransport.is_closing(t)``."""
    cdef PyObject *arg[1]
    cdef PyObject *r
    cdef int truth
    if _is_closing_vc is NULL:
        return bool(_is_closing_fn(t))
    arg[0] = <PyObject *>t
    r = _is_closing_vc(<PyObject *>_is_closing_fn, arg, 1, NULL)
    if r is NULL:
        raise RuntimeError("TCPTransport.is_closing failed")   # pragma: no cover
    truth = 1 if r == _true else PyObject_IsTrue(r)
    _decref(r)      # before raising, so a failed truth test leaks nothing
    if truth < 0:
        raise RuntimeError("TCPTransport.is_closing gave no truth value")   # pragma: no cover
    return truth

cdef inline bint _transport_closing(object t) except -1:
    """Whether a transport we write to directly (ours or uvloop's TCP one) is closing."""
    if type(t) is OwnedTransport:
        return (<OwnedTransport>t)._closing
    return _closing(t)

log = logging.getLogger("fastws")


cdef class SocketFlusher(Flusher):
    """The runtime's ``Flusher`` over adapters: a pass writes each dirty
    socket once and reads each yielded one again."""

    cdef int _flush_each(self, list dirty) except -1:
        cdef Py_ssize_t i = 0, n = len(dirty)
        # One socket that fails must not strand the rest of the pass: they are
        # on no list any more, and nothing would flush them until their own
        # next event. One try per pass, not per socket (it costs instructions
        # on every delivery): after a failure the pass goes on from the next.
        while i < n:
            try:
                while i < n:
                    ws = dirty[i]
                    i += 1
                    (<Adapter>ws)._dirty = False
                    (<Adapter>ws)._flush()
            except Exception as exc:
                log.error("flushing %r failed", ws, exc_info=exc)
        return 0

    cdef int _resume_each(self, list yielded) except -1:
        for ws in yielded:
            (<Adapter>ws)._yielding = False
            try:
                (<Adapter>ws)._update_reading()
            except Exception as exc:
                log.error("resuming reads of %r failed", ws, exc_info=exc)
        return 0


cdef class Adapter(Dispatcher):
    """A connection as the asyncio transport's protocol: corking, writes,
    reading paused and resumed, the transport's end. (Made as a ``WebSocket``.)"""

    @cython.final
    cdef int _attach(self, object transport, object ctx, object http) except -1:
        self._transport = transport
        self.ctx = ctx
        self._http = http
        self._fd = -2
        return 0

    @property
    def remote_address(self):
        """The client's (host, port), or None if unknown: the upgrade request's
        ``ctx.remote``, which with trusted proxy headers is the real client."""
        # Looked up on first use: most connections never ask, and 10,000
        # idle ones would each hold a tuple, a str and an int.
        if self._remote_address is None:
            if self.ctx is not None and self.ctx.remote is not None:
                self._remote_address = self.ctx.remote
            elif self._transport is not None:
                self._remote_address = self._transport.get_extra_info("peername")
        return self._remote_address

    cdef str _peer(self):
        return str(self.remote_address)

    # ------------------------------------------------------------------ transport protocol

    def data_received(self, data):
        """Bytes from the client, in order (we are the transport's protocol)."""
        cdef RuntimeShared shared = <RuntimeShared>self._shared
        cdef Flusher flusher
        self._corked = True
        shared.publisher = self         # what its handlers queue, it caused
        try:
            self._receive(data)
        finally:
            shared.publisher = None
            self._corked = False
            if self._pending_bytes:
                self._flush()
        flusher = shared.flusher
        if flusher.tasks and not flusher.pressing:
            flusher.press()     # a task's next step waits behind sockets like this one
        if flusher.pressing and not self._yielding and flusher.overdue():
            self._yielding = True
            flusher.yielded.append(self)
            self._update_reading()

    def eof_received(self):
        """The client half-closed: let the transport close; ``close`` follows."""
        self._fd = -1           # the transport closes the socket now
        return False

    def connection_made(self, transport):
        """A new connection's real transport, after the early one served its
        handshake (``fastws.net.listener``): take it over."""
        early = self._transport
        self._transport = transport
        self._fd = -2
        if early is not None and early is not transport:
            early.adopt(transport)
            if self._http is not None:
                # Nothing may keep the early transport (its socket, its
                # buffers) alive for the life of an idle connection.
                self._http.transport = transport

    def connection_lost(self, exc):
        """The TCP connection is gone: close handlers run, then the server is told."""
        http, self._http = self._http, None
        self.remote_address     # keep it for close handlers and logs
        self._transport = None
        self._fd = -1
        try:
            self._lost()
        finally:
            # The server's bookkeeping (per-address limits, the connection
            # count) is released whatever the close handlers did.
            if http is not None:
                http.connection_lost(exc)

    def pause_writing(self):
        """The transport could not write everything (its high-water mark is
        0): from now on ask it what it holds before queueing more."""
        self._tx_held = True
        self._check_tx_over()

    def resume_writing(self):
        """The transport wrote everything it held."""
        self._tx_held = False
        self._tx_over = False
        self._tx_buffered = 0
        self._update_reading()
        if not self._pending_bytes:
            self._check_drained()

    cdef int _check_tx_over(self) except -1:
        # A client that does not read cannot make us queue ever more replies
        # (pongs, echoes) to what it sends: past the limit, stop reading it.
        if not self._tx_over and self._over_limit():
            self._tx_over = True
            self._was_over = True
            self._update_reading()
        return 0

    cdef int _check_drained(self) except -1:
        """Everything queued is written out: release whoever waits on us."""
        if self._wait is not None or self._slow or self._was_over:
            self._drained()
        return 0

    cdef int _drained(self) except -1:
        """Drained: publishers that waited on us read on, ``drain()`` returns,
        and after being over the limit the ``drain`` event fires."""
        self._slow = False
        self._release_waiters()
        if self._was_over:
            self._was_over = False
            if self._state == OPEN and "drain" in self._by_name:
                self._deliver("drain", ())
        return 0


    # ------------------------------------------------------------------ what the rules ask of us

    cdef int _on_output(self) except -1:
        if not self._corked and not self._dirty:
            self._dirty = True
            (<RuntimeShared>self._shared).flusher.add(self)
        return 0

    cdef int _flush(self) except -1:
        cdef object pending = self._pending
        if pending is None:
            return 0
        if self._transport is None:
            self._take_pending()
            return 0
        if not self._tx_held and self._direct_fd(self._corked) >= 0:
            self._write_direct()
        elif type(pending) is list and self._pending_bytes >= LARGE_PAYLOAD:
            # Large payloads wait as their own objects: hand the pieces to one
            # writev instead of joining them into a copy.
            self._transport.writelines(<list>pending)
            del (<list>pending)[:]
            self._pending_bytes = 0
        else:
            data = self._take_pending()
            if data is None:
                return 0
            self._transport.write(data)
        if self._tx_held:
            self._tx_buffered = self._transport.get_write_buffer_size()
            self._check_tx_over()
        else:
            self._check_drained()   # everything queued went straight to the kernel
        return 0

    cdef int _direct_fd(self, bint alive) except -2:
        """The descriptor to write to directly now, or -1 (use the transport).
        ``alive``: called inside this connection's own callback, where only our
        own calls can have closed the transport (and they stop direct writes)."""
        cdef int fd = self._fd
        t = self._transport
        if fd == -2:
            fd = -1
            if type(t) is OwnedTransport:
                fd = (<OwnedTransport>t)._fd
            elif _TCPTransport is not None and type(t) is _TCPTransport:
                sock = t.get_extra_info("socket")
                if sock is not None:
                    fd = sock.fileno()
            self._fd = fd
        # A transport that is closing may have closed its descriptor already,
        # and the number may belong to another connection by now.
        if fd >= 0 and not alive and _transport_closing(t):
            self._fd = fd = -1
        return fd

    cdef int _write_direct(self) except -1:
        """Write the queue to the socket ourselves (one send, or one sendmsg
        of the queued frames: no joined copy); what the kernel does not take
        goes to the transport, which then holds it and tells us (pause_writing)."""
        cdef object pending = self._pending
        cdef Py_ssize_t total = self._pending_bytes, n
        cdef ssize_t sent
        if type(pending) is list:
            n = PyList_GET_SIZE(<list>pending)
            if n == 0:
                return 0
            if n == 1 or n > DIRECT_IOV:
                data = (<list>pending)[0] if n == 1 else b"".join(<list>pending)
                sent = send_buffer(self._fd, data, total)
                rest_from = data
            else:
                sent = send_frames(self._fd, <list>pending, n)
                rest_from = None
        else:
            data = pending
            sent = send_buffer(self._fd, data, total)
            rest_from = data
        if sent == total:
            if type(pending) is list:
                del (<list>pending)[:]
            else:
                self._pending = None
            self._pending_bytes = 0
            return 0
        if sent < 0:
            if errno != EAGAIN and errno != EINTR:     # (EWOULDBLOCK is EAGAIN on Linux)
                # A broken connection: let the transport meet the error and
                # report it its own way (connection_lost).
                self._fd = -1
            sent = 0
        # The kernel took part of it: the transport holds the rest.
        if rest_from is None:
            rest_from = b"".join(<list>pending)
        rest = rest_from[sent:] if sent else rest_from
        if type(pending) is list:
            del (<list>pending)[:]
        else:
            self._pending = None
        self._pending_bytes = 0
        self._transport.write(rest)
        # Either the transport now holds bytes (it said so: pause_writing, and we
        # write through it until it drains) or its own write failed and it closed
        # the descriptor already, before connection_lost reaches us: from here the
        # number is not ours, even inside our own callback.
        if self._fd >= 0 and _transport_closing(self._transport):
            self._fd = -1
        return 0

    cdef int _close_transport(self) except -1:
        # Queued frames first: the close frame must follow the data before it.
        self._flush()
        self._fd = -1
        if self._transport is not None:
            self._transport.close()
        return 0

    cdef int _abort_transport(self) except -1:
        self._flush()
        self._fd = -1
        if self._transport is not None:
            self._transport.abort()
        return 0

    cdef int _linger_transport(self) except -1:
        # What is queued (our close frame last) goes first; then the write
        # side is shut where the transport can (not TLS), and reading goes on
        # whatever had paused it: the client's FIN ends it (eof_received).
        self._flush()
        t = self._transport
        if t is None:
            return 0
        self._fd = -1
        if t.can_write_eof():
            t.write_eof()
        self._update_reading()
        return 0

    cdef Py_ssize_t _transport_buffered(self) except -1:
        if not self._tx_held or self._transport is None:
            return 0
        return self._transport.get_write_buffer_size()

    cdef Py_ssize_t _delivered(self) except -1:
        # Only asked while a ping waits for its answer: what the kernel still
        # holds unacknowledged (SIOCOUTQ) is not read by the client yet.
        cdef Py_ssize_t held = 0
        cdef int fd = -1
        t = self._transport
        if kernel_unsent is not None and t is not None:
            if type(t) is OwnedTransport:
                fd = (<OwnedTransport>t)._fd     # no socket object made for it
            else:
                sock = t.get_extra_info("socket")
                if sock is not None:
                    fd = sock.fileno()
            if fd >= 0:
                try:
                    held = kernel_unsent(fd)
                except OSError:
                    held = 0
        return self._written() - held

    cdef int _update_reading(self) except -1:
        """Read from the client unless its handlers are backed up or our
        writes to it are: the two reasons to pause, tracked apart."""
        cdef bint off = (self._backlogged or self._tx_over or self._blocked > 0
                         or self._yielding or self._reading_held) and not self._lingering
        t = self._transport
        if off == self._reading_off or t is None or t.is_closing():
            return 0
        self._reading_off = off
        if off:
            t.pause_reading()
        else:
            t.resume_reading()
        return 0

    cdef int _task_started(self) except -1:
        (<RuntimeShared>self._shared).flusher.task_started()
        return 0

    cdef int _task_done(self) except -1:
        (<RuntimeShared>self._shared).flusher.task_done()
        return 0

    cdef int _after_close(self) except -1:
        """Close handlers ran: no longer an open socket of the runtime."""
        (<RuntimeShared>self._shared).sockets.discard(self)
        Dispatcher._after_close(self)
        return 0

    # ------------------------------------------------------------------ start

    def _start(self, handler, ctx):
        """Run the route handler, corked: what it sends leaves in one write."""
        cdef RuntimeShared shared = <RuntimeShared>self._shared
        shared.sockets.add(self)
        self._corked = True
        shared.publisher = self
        try:
            self._run_route(handler, ctx)
        finally:
            shared.publisher = None
            self._corked = False
            if self._pending_bytes:
                self._flush()
