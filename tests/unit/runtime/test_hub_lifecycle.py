"""Hubs (``fastws.runtime.hub``): one per app per event loop, shared by that
loop's listeners, gone with the last of them; how ``find_hub`` picks one; what a
hub folds in from the sockets that close (the metrics' totals)."""

from __future__ import annotations

import asyncio
import gc

import pytest

from fastws.options import WebSocketOptions
from fastws.runtime.hub import acquire_hub, find_hub, release_hub

OPTIONS = WebSocketOptions()


class Owner:
    """Stands for an App: the hub keeps only a weak reference to it."""


@pytest.fixture
def loops():
    made = [asyncio.new_event_loop() for _ in range(2)]
    yield made
    for loop in made:
        loop.close()


def run_in(loop: asyncio.AbstractEventLoop, fn):
    async def call():
        return fn()
    return loop.run_until_complete(call())


def test_an_app_that_is_not_served_has_no_hub():
    assert find_hub(Owner()) is None


def test_listeners_of_one_app_on_one_loop_share_a_hub_until_the_last_stops(loops):
    app = Owner()
    first = acquire_hub(app, OPTIONS, loops[0])
    second = acquire_hub(app, OPTIONS, loops[0])
    assert first is second and first.listeners == 2
    assert find_hub(app) is first
    release_hub(first)
    assert first.listeners == 1 and find_hub(app) is first
    release_hub(first)
    assert find_hub(app) is None
    # Served again: a new hub, nothing kept from the last one.
    third = acquire_hub(app, OPTIONS, loops[0])
    assert third is not first and third.listeners == 1
    release_hub(third)


def test_two_apps_on_one_loop_have_a_hub_each(loops):
    a, b = Owner(), Owner()
    hub_a = acquire_hub(a, OPTIONS, loops[0])
    hub_b = acquire_hub(b, OPTIONS, loops[0])
    try:
        assert hub_a is not hub_b and hub_a.rooms is not hub_b.rooms
        assert find_hub(a) is hub_a and find_hub(b) is hub_b
    finally:
        release_hub(hub_a)
        release_hub(hub_b)


def test_find_hub_picks_the_running_loop_s(loops):
    app = Owner()
    hubs = [acquire_hub(app, OPTIONS, loop) for loop in loops]
    try:
        assert hubs[0] is not hubs[1]
        for loop, hub in zip(loops, hubs):
            assert run_in(loop, lambda: find_hub(app)) is hub
        # Outside any loop there is no telling which one is meant.
        with pytest.raises(RuntimeError, match="another event loop"):
            find_hub(app)
    finally:
        for hub in hubs:
            release_hub(hub)


def test_outside_a_loop_the_only_hub_is_found(loops):
    app = Owner()
    hub = acquire_hub(app, OPTIONS, loops[0])
    try:
        assert find_hub(app) is hub
    finally:
        release_hub(hub)


def test_a_loop_that_does_not_serve_the_app_is_told_so(loops):
    app = Owner()
    hub = acquire_hub(app, OPTIONS, loops[0])
    try:
        with pytest.raises(RuntimeError, match="call_soon_threadsafe"):
            run_in(loops[1], lambda: find_hub(app))
    finally:
        release_hub(hub)


def test_a_hub_does_not_keep_its_app_alive(loops):
    app = Owner()
    hub = acquire_hub(app, OPTIONS, loops[0])
    assert hub.owner() is app
    del app
    gc.collect()
    assert hub.owner() is None
    # A new app (possibly at the same address) is not served by the old hub.
    assert find_hub(Owner()) is None
    release_hub(hub)                    # the last listener of a hub whose app is gone


class Closed:
    """What the hub reads of a WebSocket that closed."""

    def __init__(self, counts, close_code):
        self._counts = counts
        self.close_code = close_code

    def counts(self):
        return self._counts


def test_closed_sockets_are_folded_into_the_totals(loops):
    app = Owner()
    hub = acquire_hub(app, OPTIONS, loops[0])
    try:
        hub.connection_closed(Closed((1, 2, 30, 40), 1000))
        hub.connection_closed(Closed((5, 0, 500, 0), 1000))
        hub.connection_closed(Closed((0, 0, 0, 0), None))         # never closed cleanly
        assert hub.totals == [6, 2, 530, 40]
        assert hub.closes == {1000: 2, 1006: 1}
        # traffic() adds the sockets still open to what closed ones carried.
        hub.sockets.add(Closed((1, 1, 10, 10), None))
        assert hub.traffic() == [7, 3, 540, 50]
        assert hub.totals == [6, 2, 530, 40]
    finally:
        hub.sockets.clear()
        release_hub(hub)


def test_the_relay_starts_unset_and_the_limits_follow_the_options(loops):
    app = Owner()
    hub = acquire_hub(app, WebSocketOptions(max_connections_per_ip=3), loops[0])
    try:
        assert hub.relay is None
        assert hub.limits.active and hub.limits.max_open == 3
    finally:
        release_hub(hub)
