# cython: language_level=3
"""The user-facing WebSocket: what a route handler gets.

``WebSocket`` is the API users touch: ``send``, rooms and broadcasts (through
the runtime's ``RoomRegistry``), ``close``, ``ping``, ``drain``, events
(``on``/``off``, from ``_dispatch``), and the connection's state. It is the
asyncio adapter (``_adapter.Adapter``: the transport's protocol, corking and
writes) with this API on top. The seed's camelCase names are aliases.
"""

import logging

from cpython.bytes cimport PyBytes_GET_SIZE

from fastws._constants cimport OP_BINARY, OP_TEXT, OPEN, CLOSED
from fastws.ws._frame cimport encode_frame, frame_header
from fastws.ws._payload cimport deflated_frame, encode_message, payload_of
from fastws.runtime._dispatch cimport Dispatcher
from fastws.runtime._shared cimport RuntimeShared
from fastws.runtime._adapter cimport Adapter, LARGE_PAYLOAD
from fastws._constants import ReadyState
from fastws.errors import RoomLimitError

__all__ = ["WebSocket"]

log = logging.getLogger("fastws")

cdef tuple _STATES = tuple(ReadyState)


cdef class WebSocket(Adapter):
    """One client connection: send, rooms, broadcast, events, close.

    Created by the server when an upgrade succeeds; route handlers receive it
    as their first argument.
    """

    def __init__(self, RuntimeShared shared not None, transport, ctx=None, subprotocol=None,
                 http=None, negotiated=None, session=None):
        Dispatcher.__init__(self, shared, negotiated=negotiated)
        self._attach(transport, ctx, http)
        self.subprotocol = subprotocol
        if session is not None:
            self._v1 = True
            self._recovery = session

    # ------------------------------------------------------------------ state

    @property
    def app(self):
        """The app serving this socket (as ``ctx.app``)."""
        return self.ctx.app if self.ctx is not None else None


    @property
    def v1(self):
        """Whether the client speaks ``fastws.v1`` (docs/protocol.md): its room
        messages carry their room and position, and it recovers at ``join``."""
        return bool(self._v1)

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
            payload = payload_of(data, (<RuntimeShared>self._shared).dumps, &opcode)
            return self.send_frame(deflated_frame(self._deflater, opcode, payload))
        if type(data) is bytes and PyBytes_GET_SIZE(data) >= LARGE_PAYLOAD:
            return self._send_large(OP_BINARY, <bytes>data)
        return self.send_frame(encode_message(data, (<RuntimeShared>self._shared).dumps))

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
        fut = (<RuntimeShared>self._shared).loop.create_future()
        self._waiting().futures.append(fut)
        await fut

    def close(self, int code=1000, str reason=""):
        """Start the closing handshake. The client has ``close_timeout``
        seconds to answer before the connection is cut; ``close`` fires once."""
        if self._sent_due:
            # What it sent is told before the close frame (a deploy's 1012
            # included), so it does not get its own messages back on recovery.
            (<RuntimeShared>self._shared).registry.flush_sent(self, True)
        Dispatcher.close(self, code, reason)
        self._flush()

    # ------------------------------------------------------------------ rooms

    def join(self, room):
        """Join ``room`` (idempotent); it becomes ``ws.room``. Raises
        RoomLimitError past ``max_room_name`` or ``max_rooms_per_socket``."""
        cdef RuntimeShared shared = <RuntimeShared>self._shared
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
                    len(room) > shared.max_room_name:
                raise RoomLimitError(f"room name of {len(room)} characters; at most "
                                     f"{shared.max_room_name} (max_room_name)")
            if len(self._rooms) >= shared.max_rooms_per_socket:
                raise RoomLimitError(f"already in {len(self._rooms)} rooms; at most "
                                     f"{shared.max_rooms_per_socket} (max_rooms_per_socket)")
        # The registry first: it may refuse the room (a backplane wants str names).
        if self._recovery is None:
            shared.registry.join(room, self)
            self._rooms.append(room)
            return
        # fastws.v1: the replay of what the client missed, if it asked, and the
        # outcome; the registry join may come later (when the replay is over).
        # In _rooms first: a replay's task may run before join returns.
        self._rooms.append(room)
        try:
            self._recovery.join(self, room, shared.registry)
        except BaseException:
            self._rooms.remove(room)
            raise

    def leave(self, room):
        """Leave ``room`` (idempotent)."""
        if self._rooms is not None and room in self._rooms:
            self._rooms.remove(room)
            (<RuntimeShared>self._shared).registry.leave(room, self)
            if self._recovery is not None:
                self._recovery.left(self, room, (<RuntimeShared>self._shared).registry)

    def broadcast(self, room, data):
        """Send ``data`` to every member of ``room`` but this socket, framed
        once for all. Returns the number of recipients."""
        if room is None:
            return 0
        return (<RuntimeShared>self._shared).registry.broadcast(room, data, self)

    def broadcast_all(self, room, data):
        """Send ``data`` to every member of ``room``, this socket included."""
        if room is None:
            return 0
        return (<RuntimeShared>self._shared).registry.broadcast(room, data, None)

    def broadcastAll(self, room, data):
        """Alias of ``broadcast_all``."""
        return self.broadcast_all(room, data)


    # ------------------------------------------------------------------ fastws.v1 (runtime.recovery)

    def _send_control(self, bytes message):
        """Queue one of the protocol's own messages, whatever the backpressure
        (it is small, and a replay's pacing keeps the room for it)."""
        if self._state == OPEN:
            if self._sent_due:
                # Owed notices first: a joined or left must not overtake them.
                (<RuntimeShared>self._shared).registry.flush_sent(self, True)
            self._queue(encode_frame(OP_TEXT, message))
            self._tx_msgs += 1

    def _send_wire(self, bytes message):
        """Queue one replayed room message through this socket's own deflate."""
        if self._state != OPEN:
            return
        if self._sent_due:
            (<RuntimeShared>self._shared).registry.flush_sent(self, True)
        if self._deflater is not None:
            self._queue(deflated_frame(self._deflater, OP_TEXT, message))
        else:
            self._queue(encode_frame(OP_TEXT, message))
        self._tx_msgs += 1

    def _fire(self, str event, tuple args):
        """Raise one of the server's own events (``recovered``) in order: while
        the route handler runs it waits for it, so a handler registered after
        ``join`` still hears it."""
        self._deliver(event, args)

    def _pacing(self):
        """(the loop, the high-water mark) a paced replay works with."""
        cdef RuntimeShared shared = <RuntimeShared>self._shared
        return shared.loop, shared.high_water

    # ------------------------------------------------------------------ what the rules ask of us

    cdef int _after_close(self) except -1:
        """Close handlers ran: leave rooms, then as the adapter does."""
        if self._sent_due:
            (<RuntimeShared>self._shared).registry.flush_sent(self)     # forgotten: not OPEN
        if self._rooms is not None:
            rooms, self._rooms = self._rooms, None
            for room in rooms:
                # Every room, even if one leave fails (a relay that raises).
                try:
                    (<RuntimeShared>self._shared).registry.leave(room, self)
                except Exception as exc:
                    log.error("leaving room %r on close failed", room, exc_info=exc)
        Adapter._after_close(self)
        return 0

    def __repr__(self):
        return f"<WebSocket {self.remote_address} {_STATES[self._state].name}>"
