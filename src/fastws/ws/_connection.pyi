"""Type stubs for the compiled connection rules (src/fastws/ws/_connection.pyx)."""

from typing import Any, Callable

from fastws.ws._counters import Counters
from fastws.deflate.permessage import Negotiated
from fastws.options import WebSocketOptions

LINGER_QUIET: float

LINGER_WAIT: int
LINGER_CLOSE: int
LINGER_ABORT: int

def linger_step(now: float, deadline: float, last_rx: float) -> int:
    """What a lingering close does at ``now`` (wait, close, or abort)."""

class Shared:
    options: WebSocketOptions
    clock: Callable[[], float] | None
    counters: Counters
    max_backpressure: int
    high_water: int
    discard_budget: int
    slow_consumer_timeout: float
    min_drain_rate: float
    publisher: Any
    ping_interval: float
    idle_timeout: float
    close_timeout: float
    rate: float
    burst: float
    close_slow: bool
    rate_drop: bool
    def __init__(self, options: WebSocketOptions, *, clock: Callable[[], float] | None = ...,
                 counters: Counters | None = ...) -> None: ...

class Connection:
    def __init__(self, settings: Shared | WebSocketOptions, *, negotiated: Negotiated | None = ...,
                 clock: Callable[[], float] | None = ...) -> None: ...
    def receive_data(self, data: bytes | bytearray | memoryview) -> None: ...
    def events_received(self) -> list[tuple[Any, ...]]: ...
    def data_to_send(self) -> bytes: ...
    @property
    def transport_action(self) -> str | None: ...
    @property
    def compression(self) -> Negotiated | None:
        """The permessage-deflate parameters agreed (a
        ``fastws.deflate.permessage.Negotiated``), or None."""
    @property
    def state(self) -> int: ...
    @property
    def waiting(self) -> bool: ...
    @property
    def slow(self) -> bool: ...
    @property
    def stats(self) -> dict[str, Any]:
        """What this connection carried: ``messages_in``, ``messages_out``,
        ``bytes_in``, ``bytes_out`` (wire bytes, frames included), ``seconds``
        open, and ``closed_by`` ("client", "server", or None while open or when
        TCP went away without a close frame)."""
    def counts(self) -> tuple[int, int, int, int]: ...
    @property
    def close_code(self) -> int | None:
        """The close code once the connection is closed, else None."""
    @property
    def close_reason(self) -> str | None:
        """The close reason once the connection is closed, else None."""
    def transport_lost(self) -> None: ...
    def send_frame(self, frame: bytes) -> bool: ...
    def ping(self, payload: bytes | str = ...) -> bool:
        """Queue a ping; False when the connection is not OPEN."""
    def close(self, code: int = ..., reason: str = ...) -> None:
        """Start the closing handshake (a no-op unless OPEN). The client has
        ``close_timeout`` seconds to answer before TCP is cut."""
    def fail(self, code: int, reason: str = ...) -> None: ...
    def tick(self, now: float) -> int: ...
