"""Type stubs for the compiled asyncio adapter (src/fastws/runtime/_adapter.pyx)."""

import asyncio
from typing import Any

from fastws.http.context import Context
from fastws.runtime._dispatch import Dispatcher
from fastws.runtime._flusher import Flusher

class SocketFlusher(Flusher):
    """The runtime's ``Flusher`` over adapters: a pass writes each dirty
    socket once and reads each yielded one again."""

class Adapter(Dispatcher):
    """A connection as the asyncio transport's protocol: corking, writes,
    reading paused and resumed, the transport's end. (Made as a ``WebSocket``.)"""
    ctx: Context | None
    """The upgrade request: path, ``params``, query, headers, ``remote``."""
    @property
    def remote_address(self) -> Any:
        """The client's (host, port), or None if unknown: the upgrade request's
        ``ctx.remote``, which with trusted proxy headers is the real client."""
    # asyncio.Protocol, once the upgrade hands the transport over
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
