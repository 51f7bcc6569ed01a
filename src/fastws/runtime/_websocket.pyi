"""Type stubs for the compiled asyncio adapter and WebSocket (src/fastws/runtime/_websocket.pyx)."""

import asyncio
from typing import Any, Awaitable, Callable, Hashable

from fastws.ws._connection import Shared
from fastws._constants import ReadyState
from fastws.runtime._dispatch import Dispatcher
from fastws.deflate.permessage import Negotiated
from fastws.http.context import Context

kernel_unsent: Callable[[int], int] | None
"""Bytes the kernel's send queue of a socket (by descriptor) still holds, not
sent or not acknowledged by the peer (Linux's SIOCOUTQ); None where the
system has no such query. Raises OSError for a descriptor that is no socket."""

class Flusher:
    loop: asyncio.AbstractEventLoop
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None: ...
    def run(self) -> None: ...

class WebSocket(Dispatcher):
    """One client connection: send, rooms, broadcast, events, close.

    Created by the server when an upgrade succeeds; route handlers receive it
    as their first argument.
    """
    ctx: Context | None
    """The upgrade request: path, ``params``, query, headers, ``remote``."""
    subprotocol: str | None
    """The subprotocol agreed in the handshake, or None."""
    data: dict[str, Any]
    """A dict for the user's per-connection state."""
    def __init__(self, shared: Shared, transport: asyncio.Transport, ctx: Context | None = ...,
                 subprotocol: str | None = ..., http: Any = ...,
                 negotiated: Negotiated | None = ...) -> None: ...
    @property
    def app(self) -> Any:
        """The app serving this socket (as ``ctx.app``)."""
    @property
    def ready_state(self) -> ReadyState:
        """0 CONNECTING, 1 OPEN, 2 CLOSING, 3 CLOSED."""
    @property
    def readyState(self) -> ReadyState:
        """Alias of ``ready_state``."""
    @property
    def remote_address(self) -> Any:
        """The client's (host, port), or None if unknown: the upgrade request's
        ``ctx.remote``, which with trusted proxy headers is the real client."""
    @property
    def room(self) -> Hashable | None:
        """The last joined room still held, or None."""
    @property
    def rooms(self) -> tuple[Hashable, ...]:
        """Every room this socket is in, in joining order."""
    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this socket and not yet written to the kernel."""
    @property
    def bufferedAmount(self) -> int:
        """Alias of ``buffered_amount``."""
    @property
    def skipped(self) -> int:
        """Broadcasts and sends not delivered to this socket because it was over
        its backpressure limit (``backpressure="skip"`` policy)."""
    @property
    def dropped(self) -> int:
        """Messages from this client discarded by the rate limit
        (``rate_limit_policy="drop"``)."""
    def send(self, data: Any) -> bool:
        """Send ``data``: str as text, bytes-like as binary, anything else as
        JSON text. Returns False, sending nothing, when the socket is not OPEN
        or (``backpressure="skip"``) is over its backpressure limit."""
    def hold_reading(self, held: bool) -> None:
        """Stop reading from the client (True) until released (False), without
        holding back any event: what was read already is still delivered, and
        a close still reaches the close handlers at once. For code that queues
        the messages itself and must bound the queue (the ASGI mount does)."""
    def drain(self) -> Awaitable[None]:
        """Wait until this socket can take more: everything queued written out
        once its buffer is past the high-water mark (half of
        ``max_backpressure``), or the socket given up on as a slow consumer."""
    def join(self, room: Hashable) -> None:
        """Join ``room`` (idempotent); it becomes ``ws.room``. Raises
        RoomLimitError past ``max_room_name`` or ``max_rooms_per_socket``."""
    def leave(self, room: Hashable) -> None:
        """Leave ``room`` (idempotent)."""
    def broadcast(self, room: Hashable | None, data: Any) -> int:
        """Send ``data`` to every member of ``room`` but this socket, framed
        once for all. Returns the number of recipients."""
    def broadcast_all(self, room: Hashable | None, data: Any) -> int:
        """Send ``data`` to every member of ``room``, this socket included."""
    def broadcastAll(self, room: Hashable | None, data: Any) -> int:
        """Alias of ``broadcast_all``."""
    def close(self, code: int = ..., reason: str = ...) -> None:
        """Start the closing handshake. The client has ``close_timeout``
        seconds to answer before the connection is cut; ``close`` fires once."""
    # asyncio.Protocol, once the upgrade hands the transport over
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
