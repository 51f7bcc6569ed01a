# cython: language_level=3, boundscheck=False, wraparound=False
"""The room registry: who is in which room, and encode-once fan-out.

- ``broadcast(room, data, skip)`` serializes ``data`` once (the send rule of
  ``_payload``) and ``publish``es it.
- ``publish(room, opcode, payload, skip)`` is ``deliver`` plus the relay.
- ``deliver(room, opcode, payload, skip)`` is local only: it frames the
  payload once (and compresses it once per shared deflate setting) and hands
  the same bytes object to each member's queue at C level; each member then
  leaves in one write per loop iteration however many broadcasts reached it.

The relay is how rooms reach past this process (the backplane); the registry
never learns what is behind it. It is any object with ``publish(room, opcode,
payload)``, called for every publish before anything is delivered here (so a
message it refuses, by raising, reaches nobody; what it returns, if not None,
is the payload as bytes, delivered here in place of ``payload``), ``room_opened(room)`` /
``room_closed(room)``, called at the only two places a room appears (its first
member joins) and disappears (its last member leaves), and
``room_sized(room, n)`` after every join and leave (for presence). The relay
hands what arrives from other nodes to ``deliver``. With a relay, room names
must be str (they become channel names). Without a relay (None) none of this
costs more than one pointer test.

The history (``fastws.runtime.history``, None unless ``history_size`` is set)
stores every published message of the rooms that keep one, after the relay
took it and before it is delivered here; the position it gives goes with the
message to ``fastws.v1`` members.

``opcode`` here is the message's kind: 1 text, 2 binary, or ``KIND_JSON``
(text that is a serialized JSON value, framed as text; ``fastws.v1`` members
are told which, so their client gets the type back). ``fastws.v1`` members
get the ``fastws.v1`` form (``_wire.room_message``), framed once per message
like the plain one.
"""

import logging

from cpython.dict cimport PyDict_Keys
from fastws.ws._connection cimport Connection
from fastws.ws._frame cimport encode_frame
from fastws.ws._payload cimport deflated_frame, payload_of
from fastws.runtime._wire cimport KIND_JSON, room_message, sent_notice
from fastws.runtime.history cimport MemoryHistory
from fastws._constants cimport OP_TEXT, OPEN
from fastws._json import dumps as default_dumps

__all__ = ["RoomRegistry", "MAX_HELD"]

log = logging.getLogger("fastws")


cdef inline int _check_relayable(object room) except -1:
    # With a relay, a room becomes a channel name: str only. The one copy of
    # this rule, for joins and publishes alike (the relay relies on it).
    if type(room) is not str:
        raise TypeError(f"with a backplane, room names must be str, "
                        f"not {type(room).__name__}")
    if not (<str>room).isascii():
        # A lone surrogate ("\ud800" from JSON) has no UTF-8: it could name no
        # channel or subject, and a relay would fail on it at every resubscribe.
        try:
            (<str>room).encode()
        except UnicodeEncodeError:
            raise ValueError(f"with a backplane, a room name must be valid Unicode "
                             f"(UTF-8 encodable), got {room!r}") from None
    return 0


#: Messages a recovering socket may have held aside before it is given up on
#: (closed with 1013: it comes back and recovers again).
MAX_HELD = 10000
cdef Py_ssize_t _MAX_HELD = MAX_HELD

cdef class RoomRegistry:
    """Rooms by name, each an insertion-ordered set of connections.

    Empty rooms are removed, so ``names()`` lists only rooms with members.
    ``dumps`` serializes broadcast data that is neither str nor bytes-like.
    """

    def __init__(self, dumps=default_dumps, relay=None, history=None):
        self._rooms = {}
        self._held = {}
        self._sent = {}
        self._dumps = dumps
        self.relay = relay
        self.history = history

    cpdef bint join(self, object room, Connection member) except -1:
        """Add ``member`` (a connection: ``deliver`` reads its fields in C) to
        ``room``; False if it was already there."""
        cdef dict members = self._rooms.get(room)
        if members is None:
            if self.relay is not None:
                _check_relayable(room)
                self._rooms[room] = {member: None}
                self._tell_relay("room_opened", room, 0)
                self._tell_relay("room_sized", room, 1)
            else:
                self._rooms[room] = {member: None}
            return True
        if member in members:
            return False
        members[member] = None
        if self.relay is not None:
            self._tell_relay("room_sized", room, len(members))
        return True

    cpdef bint leave(self, object room, Connection member) except -1:
        """Remove ``member`` from ``room``; False if it was not there."""
        cdef dict members = self._rooms.get(room)
        if members is None or member not in members:
            return False
        del members[member]
        if not members:
            del self._rooms[room]
            if self.relay is not None:
                self._tell_relay("room_sized", room, 0)
                self._tell_relay("room_closed", room, 0)
        elif self.relay is not None:
            self._tell_relay("room_sized", room, len(members))
        return True

    cdef int _tell_relay(self, str hook, object room, Py_ssize_t n) except -1:
        # The membership here is already changed, and the socket's own list of
        # rooms changes with it: a relay that fails is logged, never allowed to
        # leave the two disagreeing (local delivery does not depend on it).
        try:
            if hook == "room_sized":
                self.relay.room_sized(room, n)
            elif hook == "room_opened":
                self.relay.room_opened(room)
            else:
                self.relay.room_closed(room)
        except Exception as exc:
            log.error("the backplane's %s(%r) failed", hook, room, exc_info=exc)
        return 0

    def hold(self, room, member):
        """Keep what ``room`` delivers to ``member`` (a member of it) aside,
        as (position, kind, payload) in the list returned, until ``release``;
        kind -1: it was the sender (``fastws.sent``)."""
        held = self._held.setdefault(room, {})
        kept = held[member] = []
        return kept

    def release(self, room, member):
        """Deliver to ``member`` again; the list ``hold`` gave, or None."""
        held = self._held.get(room)
        if held is None:
            return None
        kept = held.pop(member, None)
        if not held:
            del self._held[room]
        return kept

    cpdef Py_ssize_t size(self, object room):
        """How many members ``room`` has here (0 for an unknown room)."""
        cdef dict members = self._rooms.get(room)
        return 0 if members is None else len(members)

    cpdef list names(self):
        """The rooms that have members here."""
        return list(self._rooms)

    cpdef list members(self, object room):
        """A snapshot of ``room``'s members here."""
        cdef dict members = self._rooms.get(room)
        return [] if members is None else list(members)

    cpdef Py_ssize_t broadcast(self, object room, object data, object skip=None) except -1:
        """Serialize ``data`` once and publish it to ``room`` (all but ``skip``).
        Returns how many local members accepted it."""
        cdef int opcode
        if self.relay is None and room not in self._rooms and \
                (self.history is None or not self._keeps(room)):
            return 0        # nobody to serialize for, nothing to keep
        payload = payload_of(data, self._dumps, &opcode)
        if opcode == OP_TEXT and type(data) is not str and not isinstance(data, str):
            opcode = KIND_JSON
        return self.publish(room, opcode, payload, skip)

    cdef bint _keeps(self, object room) except -1:
        if type(self.history) is MemoryHistory:
            return (<MemoryHistory>self.history).keeps(room)
        return self.history.keeps(room)

    cpdef Py_ssize_t publish(self, object room, int opcode, object payload,
                             object skip=None) except -1:
        """Hand the message to the relay (if any) for the room's members
        elsewhere, then ``deliver`` it here. Returns the local count. What the
        relay refuses (it raises: too large to cross, a room name that is not
        str) is delivered nowhere.

        A room whose history a store elsewhere keeps (Redis, with a backplane)
        is published through that store alone: it numbers the message, and
        every node, this one included, delivers it when it comes back."""
        cdef dict members
        if self.history is not None and type(self.history) is not MemoryHistory and \
                self._keeps(room):
            _check_relayable(room)
            members = self._rooms.get(room)
            self.broadcasts += 1
            return self.history.publish(room, opcode, payload, skip, 0 if members is None else
                                        len(members) - (skip is not None and skip in members))
        if self.relay is not None:
            _check_relayable(room)
            # The relay encodes a text payload to cross; delivering those same
            # bytes here keeps it to one UTF-8 encoding per broadcast.
            encoded = self.relay.publish(room, opcode, payload)
            if encoded is not None:
                payload = encoded
        position = None
        if self.history is not None and type(self.history) is MemoryHistory:
            # Kept whether or not the room has members here (a reader may
            # come later); what the relay refused is not. The memory store is
            # called at C level: once per publish, it is on the hot path. (A
            # store elsewhere, Redis's, took the rooms it keeps above: a room
            # that history_rooms leaves out has no position.)
            position = (<MemoryHistory>self.history).append(room, opcode, payload)
        self.broadcasts += 1
        return self.deliver(room, opcode, payload, skip, position)

    cdef int _note_sent(self, Connection member, object room, object position) except -1:
        # A sender is told its position later, with the next frame it gets or
        # by the server's sweep (flush_all_sent), one notice per room however
        # many messages it sent: written at once, a sender that receives
        # nothing else (a feed, a chat's lone talker) cost a write to its socket
        # per broadcast, 40 % more CPU per delivered message on chat rooms of 5.
        cdef dict rooms = self._sent.get(member)
        if rooms is None:
            rooms = self._sent[member] = {}
        rooms[room] = position
        member._sent_due = 1
        return 0

    cpdef int flush_sent(self, Connection member, bint forced=False) except -1:
        """Write the ``fastws.sent`` notices ``member`` is owed: one per room,
        the position of its last message there (docs/protocol.md). Called
        before any other room message or protocol message reaches it, and
        before its close frame. ``forced``: whatever its backpressure (before
        a protocol message or a replayed one, which are queued so too: a
        notice must not close the socket under them). Nothing is written to
        a socket that is not OPEN; what it was owed is forgotten."""
        cdef dict rooms = self._sent.pop(member, None)
        cdef bytes frame
        member._sent_due = 0
        if rooms is None or member._state != OPEN:
            return 0
        for room, position in rooms.items():
            frame = encode_frame(OP_TEXT, sent_notice(room, position))
            if forced:
                member._queue(frame)
                member._tx_msgs += 1
            else:
                member.send_frame(frame)
        return 0

    cpdef Py_ssize_t flush_all_sent(self) except -1:
        """Write every notice owed (the server's sweep calls this, so a
        sender learns its position within a second); how many senders."""
        cdef Py_ssize_t n = len(self._sent)
        if n:
            for member in list(self._sent):
                self.flush_sent(<Connection>member)
        return n

    cpdef Py_ssize_t deliver(self, object room, int opcode, object payload,
                             object skip=None, object position=None) except -1:
        """Queue one message for every local member of ``room`` except ``skip``.

        The message is framed once; members that negotiated permessage-deflate
        without server context takeover share one compressed frame per set of
        settings (so a room costs at most a handful of deflates, never one per
        member); members with context takeover get the uncompressed frame.
        Returns how many members accepted it (connections that are closing, or
        over their backpressure limit, do not). Iterates a snapshot, so a
        member that leaves mid-loop (say, closed as a slow consumer) is harmless.

        ``position`` (epoch, offset), from the history, goes to ``fastws.v1``
        members with the message; a ``fastws.v1`` ``skip`` is told it
        (``fastws.sent``), so its offsets have no hole where its own message is.
        """
        cdef dict members = self._rooms.get(room)
        cdef Py_ssize_t sent = 0
        cdef Connection conn
        cdef bytes plain = None
        cdef bytes frame
        cdef dict by_key = None
        cdef object last_key = None
        cdef bytes last_frame = None
        cdef bytes v1_message = None
        cdef bytes v1_plain = None
        cdef dict v1_by_key = None
        cdef int wire = OP_TEXT if opcode == KIND_JSON else opcode
        cdef dict held = None
        cdef list kept
        if members is None:
            return 0
        if self._held:
            held = self._held.get(room)
        # PyDict_Keys copies the keys in one C loop (list(members) would run
        # the dict iterator once per member: a third of a delivery's cost).
        for member in PyDict_Keys(members):
            if held is not None and member in held:
                # Its recovery is reading the history: it gets this after the
                # replay, in order (runtime.recovery); the sender, a notice.
                kept = held[member]
                if len(kept) >= _MAX_HELD:
                    # It falls further behind than it can catch up: it comes
                    # back and recovers again (docs/protocol.md: 1013).
                    (<Connection>member)._fail_behind("too far behind to recover")
                else:
                    kept.append((position, -1 if member is skip else opcode, payload))
                continue
            if member is skip:
                if position is not None and (<Connection>member)._v1:
                    self._note_sent(<Connection>member, room, position)
                continue
            conn = <Connection>member
            if conn._v1:
                if conn._sent_due:
                    # Its own messages' positions first: its offsets stay in order.
                    self.flush_sent(conn)
                if v1_message is None:
                    v1_message = room_message(room, position, opcode, payload)
                if conn._deflate_key is None:
                    if v1_plain is None:
                        v1_plain = encode_frame(OP_TEXT, v1_message)
                    frame = v1_plain
                else:
                    if v1_by_key is None:
                        v1_by_key = {}
                    frame = v1_by_key.get(conn._deflate_key)
                    if frame is None:
                        frame = v1_by_key[conn._deflate_key] = \
                            deflated_frame(conn._deflater, OP_TEXT, v1_message)
            elif conn._deflate_key is None:
                if plain is None:
                    plain = encode_frame(wire, payload)
                frame = plain
            elif conn._deflate_key is last_key:
                frame = last_frame          # the usual case: one shared setting
            else:
                if by_key is None:
                    by_key = {}
                frame = by_key.get(conn._deflate_key)
                if frame is None:
                    frame = by_key[conn._deflate_key] = deflated_frame(conn._deflater, wire, payload)
                last_key = conn._deflate_key
                last_frame = frame
            if conn.send_frame(frame):
                sent += 1
        self.deliveries += sent
        return sent
