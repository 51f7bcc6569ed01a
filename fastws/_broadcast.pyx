# cython: language_level=3, boundscheck=False, wraparound=False
"""Room registry and encode-once fan-out.

A broadcast is framed once by the caller; ``publish`` hands that same bytes
object to each member's send queue at C level, and each member leaves in one
write per loop iteration however many broadcasts reached it.
"""

from fastws._websocket cimport WebSocket

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

    cpdef Py_ssize_t publish(self, object room, bytes frame, object skip=None) except -1:
        """Queue ``frame`` for every member of ``room`` except ``skip``.

        Returns how many members accepted it (sockets that are closing, or
        over their backpressure limit, do not). Iterates a snapshot, so a
        member that leaves mid-loop (say, closed as a slow consumer) is harmless.
        """
        cdef dict members = self._rooms.get(room)
        cdef Py_ssize_t sent = 0
        cdef WebSocket ws
        if members is None:
            return 0
        for member in list(members):
            if member is skip:
                continue
            ws = <WebSocket>member
            if ws._send_frame(frame):
                sent += 1
        return sent
