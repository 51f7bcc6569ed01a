"""Type stubs for the compiled WebSocket (src/fastws/runtime/_websocket.pyx)."""

import asyncio
from typing import Any, Awaitable, Hashable

from fastws._constants import ReadyState
from fastws.runtime._adapter import Adapter
from fastws.runtime._shared import RuntimeShared
from fastws.deflate.permessage import Negotiated
from fastws.http.context import Context

class WebSocket(Adapter):
    """One client connection: send, rooms, broadcast, events, close.

    Created by the server when an upgrade succeeds; route handlers receive it
    as their first argument.
    """
    subprotocol: str | None
    """The subprotocol agreed in the handshake, or None."""
    data: dict[str, Any]
    """A dict for the user's per-connection state."""
    def __init__(self, shared: RuntimeShared, transport: asyncio.Transport, ctx: Context | None = ...,
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
