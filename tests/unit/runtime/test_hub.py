"""The hub of one app on one loop, as values: the backplane relay is held in one
place (the room registry), however it is set."""

from __future__ import annotations

import asyncio

from fastws.options import WebSocketOptions
from fastws.runtime.hub import Hub


class _Owner:
    pass


def test_the_relay_is_the_registry_s_alone():
    loop = asyncio.new_event_loop()
    try:
        hub = Hub(_Owner(), WebSocketOptions(), loop)
        assert hub.relay is None and hub.rooms.relay is None
        relay = object()
        hub.relay = relay
        assert hub.rooms.relay is relay and hub.relay is relay
        hub.rooms.relay = None
        assert hub.relay is None
    finally:
        loop.close()
