"""Per-address limits (``fastws.runtime.hub.AddressLimits``): how many WebSockets
one client address may hold open (``max_connections_per_ip``) and how fast it
may upgrade (``max_upgrades_per_ip``, a token bucket), with the Retry-After each
refusal carries.

The clock is a number handed in, so these tests never wait. The last tests
drive a real server over loopback: a slot is released when its socket closes,
and a refused or failed upgrade holds none.
"""

from __future__ import annotations

import asyncio
import math
import select

import pytest

from fastws import create_app, websocket
from fastws.options import WebSocketOptions
from fastws.runtime.hub import RETRY_WHEN_FULL, AddressLimits, find_hub

from tests.conftest import serving
from tests.integration.clients import wait_for, ws_connect
from tests.integration.rawws import RawClient, handshake_request, new_key

A, B = "192.0.2.1", "192.0.2.2"
FULL = "too many connections from this address"
FAST = "too many upgrades from this address"
T0 = 1000.0


def limits(**options) -> AddressLimits:
    return AddressLimits(WebSocketOptions(**options))


# ---------------------------------------------------------------- no limits


def test_without_limits_nothing_is_active_or_refused():
    lim = limits()
    assert not lim.active
    for i in range(1000):
        lim.opened(A)
        assert lim.refuse(A, T0) is None


@pytest.mark.parametrize("options", [{"max_connections_per_ip": 1},
                                     {"max_upgrades_per_ip": (1.0, 1)}])
def test_either_limit_makes_them_active(options):
    assert limits(**options).active


# ---------------------------------------------------------------- open connections


def test_an_address_at_its_cap_is_refused_with_a_fixed_retry_after():
    lim = limits(max_connections_per_ip=2)
    for _ in range(2):
        assert lim.refuse(A, T0) is None
        lim.opened(A)
    assert lim.refuse(A, T0) == (FULL, RETRY_WHEN_FULL)
    assert RETRY_WHEN_FULL >= 1
    assert lim.refuse(B, T0) is None            # another address is not affected


def test_asking_holds_no_slot_only_opening_does():
    lim = limits(max_connections_per_ip=1)
    for _ in range(5):
        assert lim.refuse(A, T0) is None
    lim.opened(A)
    assert lim.refuse(A, T0) == (FULL, RETRY_WHEN_FULL)


def test_a_close_releases_a_slot():
    lim = limits(max_connections_per_ip=2)
    lim.opened(A)
    lim.opened(A)
    lim.closed(A)
    assert lim.refuse(A, T0) is None
    lim.opened(A)
    assert lim.refuse(A, T0) is not None


def test_counts_never_go_below_zero():
    lim = limits(max_connections_per_ip=1)
    for _ in range(3):
        lim.closed(A)                   # closes never matched by an open
    lim.opened(A)
    # One open connection, not one minus three: the address is at its cap.
    assert lim.refuse(A, T0) == (FULL, RETRY_WHEN_FULL)
    lim.closed(A)
    assert lim.refuse(A, T0) is None


def test_an_address_with_nothing_open_is_forgotten():
    lim = limits(max_connections_per_ip=3)
    for address in (A, B):
        lim.opened(address)
        lim.opened(address)
    lim.closed(A)
    assert lim.open == {A: 1, B: 2}
    lim.closed(A)
    lim.closed(B)
    lim.closed(B)
    assert lim.open == {}


# ---------------------------------------------------------------- upgrade rate


def test_a_burst_then_one_per_interval():
    lim = limits(max_upgrades_per_ip=(0.5, 3))          # a burst of 3, then one per 2 s
    assert [lim.refuse(A, T0) for _ in range(3)] == [None, None, None]
    assert lim.refuse(A, T0) == (FAST, 2)
    assert lim.refuse(A, T0 + 1.0) == (FAST, 1)        # half a token back: 1 s to go
    assert lim.refuse(A, T0 + 2.0) is None
    assert lim.refuse(A, T0 + 2.0) == (FAST, 2)


def test_a_refused_attempt_spends_nothing():
    lim = limits(max_upgrades_per_ip=(1.0, 1))
    assert lim.refuse(A, T0) is None
    for i in range(10):
        assert lim.refuse(A, T0 + i * 0.05) is not None
    assert lim.refuse(A, T0 + 1.0) is None              # refilled as if nobody had asked


def test_the_bucket_refills_only_up_to_the_burst():
    lim = limits(max_upgrades_per_ip=(10.0, 2))
    assert lim.refuse(A, T0) is None
    later = T0 + 3600
    assert [lim.refuse(A, later) is None for _ in range(3)] == [True, True, False]


def test_each_address_has_its_own_bucket():
    lim = limits(max_upgrades_per_ip=(1.0, 1))
    assert lim.refuse(A, T0) is None
    assert lim.refuse(A, T0) is not None
    assert lim.refuse(B, T0) is None


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 1.0, 2.0, 7.0, 100.0])
def test_retry_after_is_a_whole_number_of_seconds_that_is_enough_and_not_more(rate):
    lim = limits(max_upgrades_per_ip=(rate, 1))
    assert lim.refuse(A, T0) is None
    reason, retry = lim.refuse(A, T0)
    assert reason == FAST and isinstance(retry, int) and retry >= 1
    assert retry == max(1, math.ceil(1 / rate))
    if retry > 1:
        assert lim.refuse(A, T0 + retry - 1) is not None    # a second sooner is too soon
    assert lim.refuse(A, T0 + retry) is None                 # then it is let through


def test_a_full_address_is_refused_before_any_token_is_spent():
    lim = limits(max_connections_per_ip=1, max_upgrades_per_ip=(1.0, 1))
    assert lim.refuse(A, T0) is None                    # spends the one token
    lim.opened(A)
    assert lim.refuse(A, T0 + 5) == (FULL, RETRY_WHEN_FULL)
    lim.closed(A)
    assert lim.refuse(A, T0 + 5) is None                # the token refilled meanwhile is there


def test_sweep_forgets_refilled_buckets_only():
    lim = limits(max_upgrades_per_ip=(1.0, 2))
    lim.refuse(A, T0)
    lim.refuse(B, T0 + 1.5)
    lim.sweep(T0 + 1.5)                 # A has refilled (1 s for its one token), B has not
    assert set(lim.buckets) == {B}
    lim.sweep(T0 + 2.5)
    assert lim.buckets == {}
    # A forgotten address starts again with a full burst.
    assert [lim.refuse(A, T0 + 2.5) is None for _ in range(3)] == [True, True, False]


# ---------------------------------------------------------------- over loopback


PATH = "/limited"


def limited_app(guard=None, **options):
    app = create_app()
    app.use(websocket(ping_interval=None, **options))
    app.ws(PATH, lambda ws: None, guard=guard)
    return app


def upgrade(port: int, *extra: tuple[str, str]):
    client = RawClient(port)
    client.send(handshake_request(PATH, key=new_key(), extra=extra))
    return client, client.read_response()


def test_over_loopback_a_closed_socket_gives_its_slot_back():
    app = limited_app(max_connections_per_ip=1)
    with serving(app) as srv:
        first, response = upgrade(srv.port)
        assert response.status == 101
        refused, response = upgrade(srv.port)
        assert response.status == 429 and response.header("retry-after") == str(RETRY_WHEN_FULL)
        refused.expect_eof()
        refused.close()
        first.close()                                   # TCP gone, no closing handshake
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the close")
        again, response = upgrade(srv.port)
        assert response.status == 101
        again.close()


def test_over_loopback_an_upgrade_refused_after_the_limit_check_holds_no_slot():
    # The guard refuses after the per-address check let the request through.
    app = limited_app(max_connections_per_ip=1,
                      guard=lambda ctx: ctx.get_query("ok") == "1")

    def nothing_held() -> bool:
        return srv.call(lambda: not find_hub(app).limits.open)

    with serving(app) as srv:
        for _ in range(3):
            client = RawClient(srv.port)
            client.send(handshake_request(PATH + "?ok=0", key=new_key()))
            assert client.read_response().status == 403
            client.expect_eof()
            client.close()
            # Released by the time the connection is gone, if it was held at all.
            wait_for(nothing_held, what="no slot held by the refused upgrade")
        with ws_connect(srv.url(PATH + "?ok=1")):
            pass


# Counted when the check lets an upgrade through, not at the switch: upgrades
# from one address waiting in an async guard at once all passed the check.
def test_over_loopback_upgrades_waiting_in_an_async_guard_share_the_cap():
    waiting: list[asyncio.Future] = []

    async def slow_guard(ctx):
        # An authentication lookup that takes a while: here, until the test says.
        future = asyncio.get_running_loop().create_future()
        waiting.append(future)
        await future
        return True

    def release():
        for future in waiting:
            if not future.done():
                future.set_result(None)

    app = limited_app(max_connections_per_ip=1, guard=slow_guard)
    with serving(app) as srv:
        a = RawClient(srv.port)
        b = RawClient(srv.port)
        try:
            a.send(handshake_request(PATH, key=new_key()))
            wait_for(lambda: srv.call(lambda: len(waiting)) == 1, what="the first in the guard")
            b.send(handshake_request(PATH, key=new_key()))
            # The second is either refused at once or waits in the guard too.
            wait_for(lambda: srv.call(lambda: len(waiting)) == 2
                     or select.select([b.sock], [], [], 0)[0], what="the second")
            srv.call(release)
            statuses = sorted([a.read_response().status, b.read_response().status])
        finally:
            srv.call(release)
            a.close()
            b.close()
    assert statuses == [101, 429]
