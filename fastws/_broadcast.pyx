# cython: language_level=3, boundscheck=False, wraparound=False
"""Room registry and encode-once fan-out.

A broadcast is framed once by the caller; ``publish`` hands that same bytes
object to each member, so fan-out costs no per-recipient serialization,
framing or copying.
"""

__all__ = ["RoomRegistry"]


cdef class RoomRegistry:
    """Rooms by name, each an insertion-ordered set of members.

    A member is any object with ``_send_frame(frame) -> bool`` (a WebSocket).
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
        """Give ``frame`` to every member of ``room`` except ``skip``.

        Returns how many members accepted it. Iterates a snapshot, so a member
        that leaves (or is closed for backpressure) mid-loop is harmless.
        """
        cdef dict members = self._rooms.get(room)
        cdef Py_ssize_t sent = 0
        if members is None:
            return 0
        for member in list(members):
            if member is skip:
                continue
            if member._send_frame(frame):
                sent += 1
        return sent
