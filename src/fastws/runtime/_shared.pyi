"""Type stubs for what a runtime's connections share (src/fastws/runtime/_shared.pyx)."""

import asyncio
from typing import Any, Callable

from fastws.ws._connection import Shared
from fastws.ws._counters import Counters
from fastws.options import WebSocketOptions
from fastws.runtime._flusher import Flusher
from fastws.runtime._rooms import RoomRegistry

class RuntimeShared(Shared):
    loop: asyncio.AbstractEventLoop
    loads: Callable[[Any], Any]
    dumps: Callable[[Any], Any]
    registry: RoomRegistry
    flusher: Flusher
    sockets: set[Any]
    max_room_name: int
    max_rooms_per_socket: int
    json_events: bool
    def __init__(self, options: WebSocketOptions, *, loop: asyncio.AbstractEventLoop,
                 registry: RoomRegistry, flusher: Flusher, sockets: set[Any],
                 clock: Callable[[], float] | None = ..., counters: Counters | None = ...) -> None: ...
