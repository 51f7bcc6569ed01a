"""Every exception fastws raises for user code to catch or see, in one place.

The modules that raise them import them from here (and keep them importable
where they were documented: ``fastws.context.HTTPError``, ``fastws.ProtocolError``).
A leaf: it imports only the close codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus

from fastws._constants import CloseCode

__all__ = ["RoomLimitError", "BackplaneError", "BroadcastTooLargeError", "BindError",
           "HTTPError", "ProtocolError", "HandshakeError", "CompressionError", "InflateError",
           "MessageTooBig", "RedisError", "NatsError", "ClientDisconnected", "LifespanError", "StartupError",
           "ArgumentError", "NotConnectedError"]


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


class HTTPError(Exception):
    """Raise from a handler or middleware to answer with ``status`` and ``message``.

    With ``error_handler()`` installed the body is ``{"error": message}``.
    """

    def __init__(self, status: int, message: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        if not 400 <= status <= 599:
            raise ValueError(f"HTTPError status must be 400-599, got {status}")
        if message is None:
            try:
                message = HTTPStatus(status).phrase
            except ValueError:
                message = "Unknown"
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


class ProtocolError(Exception):
    """A client broke RFC 6455; ``code`` is the close code to answer with.

    ``reason`` is a short human-readable explanation, safe to send as the
    close reason (ASCII, under 123 bytes).
    """

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class HandshakeError(Exception):
    """The request cannot be upgraded; answer with ``status`` and ``reason``."""

    def __init__(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(status, reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class CompressionError(Exception):
    """The peer's compressed data cannot be accepted; close with ``code``.

    ``reason`` is short ASCII, safe as a close reason; each subclass sets
    its ``code``.
    """

    code: int

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.code}: {self.reason}"


class InflateError(CompressionError):
    """The compressed payload is not valid DEFLATE data (close code 1007)."""

    code = CloseCode.CLOSE_INVALID_DATA


class MessageTooBig(CompressionError):
    """The message inflates past the allowed size (close code 1009)."""

    code = CloseCode.CLOSE_MESSAGE_TOO_BIG


class RedisError(Exception):
    """Redis answered with an error, or the link to it failed."""


class NatsError(Exception):
    """NATS refused something (its -ERR), or the link to it failed."""


class ClientDisconnected(OSError):
    """The client is gone: what an ASGI app's ``send`` raises after a disconnect."""


class LifespanError(RuntimeError):
    """A mounted app's lifespan startup (or shutdown) failed; the message is the app's."""


class StartupError(RuntimeError):
    """A startup hook raised: the server does not start."""


class ArgumentError(TypeError, ValueError):
    """A keyword of ``run``/``serve`` that is unknown or has a value it cannot
    take; ``keyword`` names it (the ``fastws`` command maps it to its flag).
    Both a TypeError (what Python raises for an unknown keyword) and a
    ValueError (what a bad value raises)."""

    def __init__(self, keyword: str, message: str) -> None:
        super().__init__(message)
        self.keyword = keyword


class NotConnectedError(ConnectionError):
    """``fastws.client``: ``send`` or ``emit`` while the client is not connected
    (between reconnects, or after the session ended). Nothing is queued."""
