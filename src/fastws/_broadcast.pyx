# cython: language_level=3, boundscheck=False, wraparound=False
"""Room registry and encode-once fan-out.

A broadcast is framed once by the caller; ``publish`` hands that same bytes
object to each member's send queue at C level, and each member leaves in one
write per loop iteration however many broadcasts reached it.
"""

from fastws._frame cimport encode_frame
from fastws._websocket cimport WebSocket, compressed_frame

__all__ = ["RoomRegistry"]


cdef class RoomRegistry:
    """Rooms by name, each an insertion-ordered set of WebSockets.

    Empty rooms are removed, so ``names()`` lists only rooms with members.
    """

    cdef dict _rooms

    def __init__(self):
        self._rooms = {}

    cpdef bint join(self, object room, object member):
        """Add ``member`` to ``room``; False if it was already there."""
        cdef dict members = self._rooms.get(room)
        if members is None:
            self._rooms[room] = {member: None}
            return True
        if member in members:
            return False
        members[member] = None
        return True

    cpdef bint leave(self, object room, object member):
        """Remove ``member`` from ``room``; False if it was not there."""
        cdef dict members = self._rooms.get(room)
        if members is None or member not in members:
            return False
        del members[member]
        if not members:
            del self._rooms[room]
        return True

    cpdef Py_ssize_t size(self, object room):
        """How many members ``room`` has (0 for an unknown room)."""
        cdef dict members = self._rooms.get(room)
        return 0 if members is None else len(members)

    cpdef list names(self):
        """The rooms that have members."""
        return list(self._rooms)

    cpdef list members(self, object room):
        """A snapshot of ``room``'s members."""
        cdef dict members = self._rooms.get(room)
        return [] if members is None else list(members)

    cpdef Py_ssize_t publish(self, object room, int opcode, object payload,
                             object skip=None) except -1:
        """Queue one message for every member of ``room`` except ``skip``.

        The message is framed once; members that negotiated permessage-deflate
        without server context takeover share one compressed frame per set of
        settings (so a room costs at most a handful of deflates, never one per
        member); members with context takeover get the uncompressed frame.
        Returns how many members accepted it (sockets that are closing, or
        over their backpressure limit, do not). Iterates a snapshot, so a
        member that leaves mid-loop (say, closed as a slow consumer) is harmless.
        """
        cdef dict members = self._rooms.get(room)
        cdef Py_ssize_t sent = 0
        cdef WebSocket ws
        cdef bytes plain = None
        cdef bytes frame
        cdef dict by_key = None
        cdef object last_key = None
        cdef bytes last_frame = None
        if members is None:
            return 0
        for member in list(members):
            if member is skip:
                continue
            ws = <WebSocket>member
            if ws._deflate_key is None:
                if plain is None:
                    plain = encode_frame(opcode, payload)
                frame = plain
            elif ws._deflate_key is last_key:
                frame = last_frame          # the usual case: one shared setting
            else:
                if by_key is None:
                    by_key = {}
                frame = by_key.get(ws._deflate_key)
                if frame is None:
                    frame = by_key[ws._deflate_key] = compressed_frame(ws._deflater, opcode, payload)
                last_key = ws._deflate_key
                last_frame = frame
            if ws._send_frame(frame):
                sent += 1
        return sent
