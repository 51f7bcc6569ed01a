"""Exceptions of fastws's own that user code may catch.

(``HTTPError`` lives with the responses in ``fastws.context``, ``ProtocolError``
with the codec in ``fastws.ws._frame``.)
"""

from __future__ import annotations

__all__ = ["RoomLimitError", "BackplaneError", "BroadcastTooLargeError", "BindError"]


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


class BindError(OSError):
    """The server cannot listen where it was asked: the port is taken, a port
    below 1024 needs privileges, the host is no address of this machine or
    does not resolve, or the Unix socket's directory is missing. ``errno`` is
    the system's; the message names the address. ``app.run`` and the ``fastws``
    command turn it into one line that says how to choose another; ``await
    app.serve(...)`` raises it."""

    def __str__(self) -> str:
        # The message alone: "[Errno 98]" in front of it tells a user nothing.
        return self.strerror or super().__str__()
