# cython: language_level=3
"""The asyncio adapter and the user-facing WebSocket.

``WebSocket`` is the transport's protocol after the upgrade: uvloop calls its
``data_received`` directly, which hands the bytes to the connection rules
(``_connection``) and the handlers (``_dispatch``) it inherits. What those
queue leaves in one ``write`` at the end of the callback that produced it
(corking) or, for sockets reached by broadcasts, once per loop iteration
(``Flusher``): W broadcasts to a socket cost one system call, not W.

Everything else here is the API users touch: ``send``, rooms and broadcasts
(through the runtime's ``RoomRegistry``), ``close``, ``ping``, ``drain``, and
the connection's state. The seed's camelCase names are aliases.
"""

import logging

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.object cimport PyObject
from libc.errno cimport errno, EAGAIN, EINTR
from libc.string cimport memset

from fastws.runtime._rooms cimport RoomRegistry
from fastws._constants cimport OP_BINARY, OPEN, CLOSED
from fastws.ws._connection cimport Shared, monotonic
from fastws.runtime._dispatch cimport Dispatcher
from fastws.ws._frame cimport frame_header
from fastws.ws._payload cimport deflated_frame, encode_message, payload_of
from fastws._constants import ReadyState
from fastws.errors import RoomLimitError

__all__ = ["WebSocket", "Flusher"]


cdef extern from "sys/uio.h":
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from "sys/types.h":
    ctypedef long ssize_t

cdef extern from "sys/socket.h":
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        iovec *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags
    ssize_t send(int fd, const void *buf, size_t n, int flags) nogil
    ssize_t sendmsg(int fd, const msghdr *msg, int flags) nogil
    int MSG_NOSIGNAL

cdef enum:
    # Frames per sendmsg; a longer queue is joined into one buffer instead.
    DIRECT_IOV = 64

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

log = logging.getLogger("fastws")

cdef tuple _STATES = tuple(ReadyState)


def _kernel_outq():
    """A function giving the bytes a socket's kernel send queue still holds
    (Linux's SIOCOUTQ: not sent, or not acknowledged), or None where there
    is none. None of those bytes has reached the peer's application yet."""
    try:
        import fcntl
        import termios
        request = termios.TIOCOUTQ
    except (ImportError, AttributeError):
        return None
    import array

    def outq(fd):
        buf = array.array("i", [0])
        fcntl.ioctl(fd, request, buf, True)
        return buf[0]
    return outq


# Also used by protocol.py, for HTTP responses a client reads slowly.
kernel_unsent = _kernel_outq()

cdef enum:
    # A binary message this large leaves as its header and its own bytes
    # (one writev), not copied into one frame first.
    LARGE_PAYLOAD = 64 * 1024

#: Seconds work may wait for the ready queue before busy sockets yield (Flusher).
cdef double PRESSING_WAIT = 0.02


cdef class Flusher:
    """Writes every socket that broadcasts made dirty, once per loop iteration;
    and keeps the loop's ready queue from waiting too long for that.

    uvloop runs ready callbacks (this flush, asyncio tasks, a TLS transport's
    connection_made) only once libuv's poll phase is over, and libuv keeps
    polling while 1,024 sockets at a time are ready: under heavy load a pass can
    last a quarter of a second. So while such work waits (``press()``), a
    WebSocket that is served more than ``PRESSING_WAIT`` after it began waiting
    stops being read (``yielded``) until this runs: the poll phase then ends as
    soon as fewer than 1,024 sockets are ready, and this resumes them.
    """

    def __init__(self, loop):
        self.loop = loop
        self._dirty = []
        self._scheduled = False
        self._call_soon = loop.call_soon
        self.yielded = []

    cdef int add(self, WebSocket ws) except -1:
        self._dirty.append(ws)
        self.press()
        return 0

    cdef int press(self) except -1:
        """Work waits for the ready queue: make sure this runs, and soon."""
        if not self.pressing:
            self.pressing = True
            self.pressing_since = monotonic()
        if not self._scheduled:
            self._scheduled = True
            self._call_soon(self.run)
        return 0

    def press_soon(self):
        """``press()`` for Python code (a task or a TLS transport was started)."""
        self.press()

    def task_started(self):
        """One of fastws's tasks (an async handler's episode, an upgrade
        behind an async guard) is running: each of its steps waits for the
        ready queue, so press now, and while busy sockets are served, until
        it is done."""
        self.tasks += 1
        self.press()

    def task_done(self):
        """One of fastws's tasks finished."""
        self.tasks -= 1

    def run(self):
        """Flush the dirty sockets and read the yielded ones again (scheduled
        with call_soon: it runs when the ready queue does)."""
        cdef list dirty = self._dirty
        cdef list yielded = self.yielded
        self._dirty = []
        self._scheduled = False
        self.pressing = False
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
                    (<WebSocket>ws)._dirty = False
                    (<WebSocket>ws)._flush()
            except Exception as exc:
                log.error("flushing %r failed", ws, exc_info=exc)
        if yielded:
            self.yielded = []
            for ws in yielded:
                (<WebSocket>ws)._yielding = False
                try:
                    (<WebSocket>ws)._update_reading()
                except Exception as exc:
                    log.error("resuming reads of %r failed", ws, exc_info=exc)
        # Tasks still running are not pressed for again here: on an idle loop
        # that would schedule this every iteration and spin a core for as long
        # as a task awaits (a slow request, an async handler's database call).
        # Busy sockets press again instead (WebSocket.data_received), which is
        # when a task's next step can be kept waiting.


cdef class WebSocket(Dispatcher):
    """One client connection: send, rooms, broadcast, events, close.

    Created by the server when an upgrade succeeds; route handlers receive it
    as their first argument.
    """

    def __init__(self, Shared shared, transport, ctx=None, subprotocol=None, http=None,
                 negotiated=None):
        Dispatcher.__init__(self, shared, negotiated=negotiated)
        self.ctx = ctx
        self.subprotocol = subprotocol
        self._transport = transport
        self._http = http
        self._fd = -2

    # ------------------------------------------------------------------ state

    @property
    def app(self):
        """The app serving this socket (as ``ctx.app``)."""
        return self.ctx.app if self.ctx is not None else None

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

    @property
    def data(self):
        """A dict for the user's per-connection state."""
        if self._data is None:
            self._data = {}
        return self._data

    @data.setter
    def data(self, value):
        self._data = value

    @property
    def ready_state(self):
        """0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED."""
        return _STATES[self._state]

    @property
    def readyState(self):
        """Alias of ``ready_state``."""
        return _STATES[self._state]

    @property
    def room(self):
        """The last joined room still held, or None."""
        return self._rooms[-1] if self._rooms else None

    @property
    def rooms(self):
        """Every room this socket is in, in joining order."""
        return tuple(self._rooms) if self._rooms else ()

    @property
    def buffered_amount(self):
        """Bytes queued for this socket and not yet written to the kernel."""
        t = self._transport
        return self._pending_bytes + (t.get_write_buffer_size() if t is not None else 0)

    @property
    def bufferedAmount(self):
        """Alias of ``buffered_amount``."""
        return self.buffered_amount

    @property
    def skipped(self):
        """Broadcasts and sends not delivered to this socket because it was over
        its backpressure limit (``backpressure="skip"`` policy)."""
        return self._skipped

    @property
    def dropped(self):
        """Messages from this client discarded by the rate limit
        (``rate_limit_policy="drop"``)."""
        return self._dropped

    # ------------------------------------------------------------------ sending

    cpdef bint send(self, object data) except -1:
        """Send ``data``: str as text, bytes-like as binary, anything else as
        JSON text. Returns False, sending nothing, when the socket is not OPEN
        or (``backpressure="skip"``) is over its backpressure limit."""
        cdef int opcode
        if self._state != OPEN:
            return False
        if self._deflater is not None:
            payload = payload_of(data, self._shared.dumps, &opcode)
            return self.send_frame(deflated_frame(self._deflater, opcode, payload))
        if type(data) is bytes and PyBytes_GET_SIZE(data) >= LARGE_PAYLOAD:
            return self._send_large(OP_BINARY, <bytes>data)
        return self.send_frame(encode_message(data, self._shared.dumps))

    cdef bint _send_large(self, int opcode, bytes payload) except -1:
        # bytes are immutable, so the payload can wait in the queue as it is.
        if not self.send_frame(frame_header(opcode, PyBytes_GET_SIZE(payload))):
            return False
        self._queue(payload)
        return True

    def hold_reading(self, bint held):
        """Stop reading from the client (True) until released (False), without
        holding back any event: what was read already is still delivered, and
        a close still reaches the close handlers at once. For code that queues
        the messages itself and must bound the queue (the ASGI mount does)."""
        if held != self._reading_held:
            self._reading_held = held
            self._update_reading()

    async def drain(self):
        """Wait until this socket can take more: everything queued written out
        once its buffer is past the high-water mark (half of
        ``max_backpressure``), or the socket given up on as a slow consumer."""
        if self._transport is None or self._slow or \
                self._pending_bytes + self._transport_buffered() <= self._shared.high_water:
            return
        fut = self._shared.loop.create_future()
        self._waiting().futures.append(fut)
        await fut

    def close(self, int code=1000, str reason=""):
        """Start the closing handshake. The client has ``close_timeout``
        seconds to answer before the connection is cut; ``close`` fires once."""
        Dispatcher.close(self, code, reason)
        self._flush()

    # ------------------------------------------------------------------ rooms

    def join(self, room):
        """Join ``room`` (idempotent); it becomes ``ws.room``. Raises
        RoomLimitError past ``max_room_name`` or ``max_rooms_per_socket``."""
        if room is None:
            raise TypeError("room must not be None")
        if self._state == CLOSED:
            return
        if self._rooms is None:
            self._rooms = []        # made at the first join: a socket in no room holds no list
        if room in self._rooms:
            self._rooms.remove(room)
        else:
            if (type(room) is str or type(room) is bytes) and \
                    len(room) > self._shared.max_room_name:
                raise RoomLimitError(f"room name of {len(room)} characters; at most "
                                     f"{self._shared.max_room_name} (max_room_name)")
            if len(self._rooms) >= self._shared.max_rooms_per_socket:
                raise RoomLimitError(f"already in {len(self._rooms)} rooms; at most "
                                     f"{self._shared.max_rooms_per_socket} (max_rooms_per_socket)")
        # The registry first: it may refuse the room (a backplane wants str names).
        (<RoomRegistry>self._shared.registry).join(room, self)
        self._rooms.append(room)

    def leave(self, room):
        """Leave ``room`` (idempotent)."""
        if self._rooms is not None and room in self._rooms:
            self._rooms.remove(room)
            (<RoomRegistry>self._shared.registry).leave(room, self)

    def broadcast(self, room, data):
        """Send ``data`` to every member of ``room`` but this socket, framed
        once for all. Returns the number of recipients."""
        if room is None:
            return 0
        return (<RoomRegistry>self._shared.registry).broadcast(room, data, self)

    def broadcast_all(self, room, data):
        """Send ``data`` to every member of ``room``, this socket included."""
        if room is None:
            return 0
        return (<RoomRegistry>self._shared.registry).broadcast(room, data, None)

    def broadcastAll(self, room, data):
        """Alias of ``broadcast_all``."""
        return self.broadcast_all(room, data)

    # ------------------------------------------------------------------ transport protocol

    def data_received(self, data):
        """Bytes from the client, in order (we are the transport's protocol)."""
        cdef Shared shared = self._shared
        self._corked = True
        shared.publisher = self         # what its handlers queue, it caused
        try:
            self._receive(data)
        finally:
            shared.publisher = None
            self._corked = False
            if self._pending_bytes:
                self._flush()
        flusher = <Flusher>shared.flusher
        if flusher.tasks and not flusher.pressing:
            flusher.press()     # a task's next step waits behind sockets like this one
        if flusher.pressing and not self._yielding and \
                monotonic() - flusher.pressing_since > PRESSING_WAIT:
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
            (<Flusher>self._shared.flusher).add(self)
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
            if _TCPTransport is not None and type(t) is _TCPTransport:
                sock = t.get_extra_info("socket")
                if sock is not None:
                    fd = sock.fileno()
            self._fd = fd
        # A transport that is closing may have closed its descriptor already,
        # and the number may belong to another connection by now.
        if fd >= 0 and not alive and _closing(t):
            self._fd = fd = -1
        return fd

    cdef int _write_direct(self) except -1:
        """Write the queue to the socket ourselves (one send, or one sendmsg
        of the queued frames: no joined copy); what the kernel does not take
        goes to the transport, which then holds it and tells us (pause_writing)."""
        cdef object pending = self._pending
        cdef Py_ssize_t total = self._pending_bytes, n, i, skip
        cdef ssize_t sent
        cdef iovec iov[DIRECT_IOV]
        cdef msghdr msg
        cdef object piece
        if type(pending) is list:
            n = PyList_GET_SIZE(<list>pending)
            if n == 0:
                return 0
            if n == 1 or n > DIRECT_IOV:
                data = (<list>pending)[0] if n == 1 else b"".join(<list>pending)
                sent = send(self._fd, PyBytes_AS_STRING(data), total, MSG_NOSIGNAL)
                rest_from = data
            else:
                for i in range(n):
                    piece = <object>PyList_GET_ITEM(<list>pending, i)
                    iov[i].iov_base = PyBytes_AS_STRING(piece)
                    iov[i].iov_len = PyBytes_GET_SIZE(piece)
                memset(&msg, 0, sizeof(msg))
                msg.msg_iov = iov
                msg.msg_iovlen = n
                sent = sendmsg(self._fd, &msg, MSG_NOSIGNAL)
                rest_from = None
        else:
            data = pending
            sent = send(self._fd, PyBytes_AS_STRING(data), total, MSG_NOSIGNAL)
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
        if self._fd >= 0 and _closing(self._transport):
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
        if kernel_unsent is not None and self._transport is not None:
            sock = self._transport.get_extra_info("socket")
            if sock is not None:
                try:
                    held = kernel_unsent(sock.fileno())
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
        (<Flusher>self._shared.flusher).task_started()
        return 0

    cdef int _task_done(self) except -1:
        (<Flusher>self._shared.flusher).task_done()
        return 0

    cdef int _after_close(self) except -1:
        """Close handlers ran: leave rooms and drop references."""
        if self._rooms is not None:
            rooms, self._rooms = self._rooms, None
            for room in rooms:
                # Every room, even if one leave fails (a relay that raises).
                try:
                    (<RoomRegistry>self._shared.registry).leave(room, self)
                except Exception as exc:
                    log.error("leaving room %r on close failed", room, exc_info=exc)
        self._shared.sockets.discard(self)
        Dispatcher._after_close(self)
        return 0

    # ------------------------------------------------------------------ start

    def _start(self, handler, ctx):
        """Run the route handler, corked: what it sends leaves in one write."""
        self._shared.sockets.add(self)
        self._corked = True
        self._shared.publisher = self
        try:
            self._run_route(handler, ctx)
        finally:
            self._shared.publisher = None
            self._corked = False
            if self._pending_bytes:
                self._flush()

    def __repr__(self):
        return f"<WebSocket {self.remote_address} {_STATES[self._state].name}>"
