"""Exceptions of fastws's own that user code may catch.

(``HTTPError`` lives with the responses in ``fastws.context``, ``ProtocolError``
with the codec in ``fastws._frame``.)
"""

from __future__ import annotations

__all__ = ["RoomLimitError", "BackplaneError", "BroadcastTooLargeError"]


class RoomLimitError(ValueError):
    """``ws.join`` refused a room: its name is longer than ``max_room_name`` or the
    socket is already in ``max_rooms_per_socket`` rooms.

    Raised by an event handler (a client asked for the room), it fires the
    socket's ``error`` event and closes it with 1008; server code can catch it.
    """


class BackplaneError(ConnectionError):
    """The backplane cannot do what was asked: Redis could not be reached at
    start (the server does not start), or a cluster query was made while the
    link to Redis is down. The message names the URL with its password masked."""


class BroadcastTooLargeError(ValueError):
    """A broadcast is too large to cross the backplane (its payload is over
    ``max_message_size``). Raised before it is delivered anywhere, this node's
    members included, so a room never gets a message only some of it saw."""
