"""Exceptions of fastws's own that user code may catch.

(``HTTPError`` lives with the responses in ``fastws.context``, ``ProtocolError``
with the codec in ``fastws._frame``.)
"""

from __future__ import annotations

__all__ = ["RoomLimitError"]


class RoomLimitError(ValueError):
    """``ws.join`` refused a room: its name is longer than ``max_room_name`` or the
    socket is already in ``max_rooms_per_socket`` rooms.

    Raised by an event handler (a client asked for the room), it fires the
    socket's ``error`` event and closes it with 1008; server code can catch it.
    """
