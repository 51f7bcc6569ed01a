"""What one client may make us hold: connections and upgrades per address, rooms
per socket and the length of a room name; and a shutdown that spreads its closes."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from fastws import RoomLimitError, create_app, websocket

from ..conftest import serving
from ..integration.clients import closed_with, http_request, recv, wait_for, ws_connect
from ..integration.rawws import RawClient, handshake_request, new_key

UPGRADE_PATH = "/room"


def limited_app(**options):
    app = create_app()
    app.use(websocket(ping_interval=None, **options))
    errors = []

    @app.ws(UPGRADE_PATH)
    def room(ws):
        ws.on("error", lambda exc: errors.append(type(exc).__name__))

        @ws.on("join")
        def join(name):
            ws.join(name)
            ws.send(f"joined {len(ws.rooms)}")

    return app, errors


def upgrade_status(port: int) -> tuple[int, dict[str, str]]:
    with RawClient(port) as client:
        client.send(handshake_request(UPGRADE_PATH, key=new_key()))
        response = client.read_response()
        return response.status, {k.lower(): v for k, v in response.headers}


def test_connections_per_address_are_capped_with_429_and_retry_after():
    app, _ = limited_app(max_connections_per_ip=2)
    with serving(app) as srv:
        a = ws_connect(srv.url(UPGRADE_PATH))
        b = ws_connect(srv.url(UPGRADE_PATH))
        status, headers = upgrade_status(srv.port)
        assert status == 429 and int(headers["retry-after"]) >= 1
        a.close()
        wait_for(lambda: srv.call(lambda: app.connections) == 1, what="the close")
        c = ws_connect(srv.url(UPGRADE_PATH))          # a slot is free again
        b.close()
        c.close()


def test_upgrades_per_address_are_rate_limited_with_429_and_retry_after():
    app, _ = limited_app(max_upgrades_per_ip=(0.5, 2))     # a burst of 2, then one per 2 s
    with serving(app) as srv:
        first, second = ws_connect(srv.url(UPGRADE_PATH)), ws_connect(srv.url(UPGRADE_PATH))
        status, headers = upgrade_status(srv.port)
        assert status == 429
        assert 1 <= int(headers["retry-after"]) <= 2
        first.close()
        second.close()
        # Plain HTTP is not counted: only upgrades are.
        assert http_request(srv.port, "GET", "/nowhere").status == 404


def test_a_client_asking_for_too_long_a_room_name_gets_1008():
    app, errors = limited_app(max_room_name=10)
    with serving(app) as srv, ws_connect(srv.url(UPGRADE_PATH)) as ws:
        ws.send(json.dumps({"type": "join", "name": "short"}))
        assert recv(ws) == "joined 1"
        ws.send(json.dumps({"type": "join", "name": "x" * 11}))
        assert closed_with(ws) == (1008, "room limit exceeded")
    assert errors == ["RoomLimitError"]


def test_a_client_asking_for_too_many_rooms_gets_1008():
    app, errors = limited_app(max_rooms_per_socket=3)
    with serving(app) as srv, ws_connect(srv.url(UPGRADE_PATH)) as ws:
        for i in range(3):
            ws.send(json.dumps({"type": "join", "name": f"r{i}"}))
            assert recv(ws) == f"joined {i + 1}"
        ws.send(json.dumps({"type": "join", "name": "r0"}))       # already in it: fine
        assert recv(ws) == "joined 3"
        ws.send(json.dumps({"type": "join", "name": "r3"}))
        assert closed_with(ws) == (1008, "room limit exceeded")
    assert errors == ["RoomLimitError"]


def test_server_code_gets_the_exception_at_join():
    app = create_app()
    app.use(websocket(ping_interval=None, max_rooms_per_socket=1, max_room_name=4))
    outcomes = []

    @app.ws("/s")
    def handler(ws):
        ws.join("a")
        for room in ("b", "toolong"):
            try:
                ws.join(room)
            except RoomLimitError as exc:
                outcomes.append(str(exc))
        ws.send("ok")

    with serving(app) as srv, ws_connect(srv.url("/s")) as ws:
        assert recv(ws) == "ok"
    assert "max_rooms_per_socket" in outcomes[0] and "max_room_name" in outcomes[1]


@pytest.mark.parametrize("restart, code", [(False, 1001), (True, 1012)])
def test_shutdown_spreads_its_closes_over_the_drain_window(restart, code):
    """The closes go out over the window, not at once, each with the code that
    says why. Checked by order, not by the clock: when the first client has
    its close frame, most of the others must still be open."""
    app = create_app()
    app.use(websocket(ping_interval=None, drain_window=4.0))
    sockets = []

    @app.ws("/c")
    def handler(ws):
        sockets.append(ws)

    n = 40
    with serving(app, shutdown_timeout=30) as srv:
        clients = [ws_connect(srv.url("/c")) for _ in range(n)]
        wait_for(lambda: srv.call(lambda: app.connections) == n, what="all connected")
        stopping = asyncio.run_coroutine_threadsafe(srv.server.shutdown(restart=restart), srv.loop)

        def closing() -> int:
            return srv.call(lambda: sum(ws.ready_state != 1 for ws in sockets))

        wait_for(lambda: closing() >= 1, what="the first close")
        assert closing() <= n // 2, f"{closing()} of {n} closed together"
        reason = "server restarting" if restart else "server shutting down"
        for c in clients:
            assert closed_with(c, timeout=10) == (code, reason)
        stopping.result(30)
