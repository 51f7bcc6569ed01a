"""The app is configuration; the runtime is per loop and shared by its listeners.

Serving an app changes nothing on it; two listeners of one app on one loop
share its rooms; two loops serving one app each have their own; the headers a
middleware adds to an upgrade's response reach the 101.
"""

from __future__ import annotations

import pytest

from fastws import create_app, websocket
from tests.conftest import serving
from tests.integration.clients import (raw_connection, read_response, recv, wait_for,
                                       ws_connect)

UPGRADE = ("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n")


def room_app():
    app = create_app()
    app.use(websocket())

    @app.ws("/room/:name")
    def room(ws, ctx):
        ws.join(ctx.params.name)
        ws.on("message", lambda data: ws.broadcast_all(ctx.params.name, data))

    return app


def snapshot(app) -> dict[str, int]:
    return {name: id(value) for name, value in vars(app).items()}


def test_serving_an_app_adds_nothing_to_it():
    app = room_app()
    before = snapshot(app)
    with serving(app) as srv:
        with ws_connect(srv.url("/room/lobby")) as a, ws_connect(srv.url("/room/lobby")) as b:
            wait_for(lambda: srv.call(app.room_size, "lobby") == 2, what="both joined")
            a.send("hi")
            assert recv(b) == "hi"
            assert srv.call(app.broadcast, "lobby", "from the app") == 2
            assert snapshot(app) == before
    assert snapshot(app) == before
    # Once no loop serves it, the app-level calls see no rooms at all.
    assert (app.room_size("lobby"), app.rooms(), app.connections) == (0, [], 0)


def test_listeners_of_one_app_on_one_loop_share_its_rooms():
    app = room_app()
    with serving(app) as srv:
        second = srv.call(app.serve, "127.0.0.1", 0)
        try:
            url2 = f"ws://127.0.0.1:{second.port}/room/lobby"
            with ws_connect(srv.url("/room/lobby")) as a, ws_connect(url2) as b:
                wait_for(lambda: srv.call(app.room_size, "lobby") == 2, what="both joined")
                a.send("across listeners")
                assert recv(b) == "across listeners"
                assert srv.call(lambda: app.connections) == 2
        finally:
            srv.call(second.shutdown)
        # The first listener still serves, with the room as it is.
        with ws_connect(srv.url("/room/lobby")):
            wait_for(lambda: srv.call(app.room_size, "lobby") == 1, what="rejoined")


def test_two_loops_serving_one_app_each_have_their_own_runtime():
    app = room_app()
    with serving(app) as one, serving(app) as two:
        with ws_connect(one.url("/room/r")), ws_connect(two.url("/room/r")), \
                ws_connect(two.url("/room/r")):
            wait_for(lambda: two.call(app.room_size, "r") == 2, what="joins on loop two")
            assert one.call(app.room_size, "r") == 1
            # Outside both loops there is no telling which one is meant.
            with pytest.raises(RuntimeError, match="served on another event loop"):
                app.room_size("r")


def upgrade_head(port: int, path: str):
    with raw_connection(port) as sock:
        sock.sendall(UPGRADE.format(path=path).encode())
        return read_response(sock, bytearray(), head=True)


def test_headers_a_middleware_adds_to_an_upgrade_reach_the_101():
    app = room_app()

    async def session_cookie(ctx, next):
        response = await next()
        if ctx.is_websocket:
            response.headers["Set-Cookie"] = "session=abc; HttpOnly"
            response.headers["Connection"] = "keep-alive"        # ours wins
        return response

    app.use(session_cookie)
    with serving(app) as srv:
        head = upgrade_head(srv.port, "/room/x")
        assert head.status == 101
        assert head.headers["set-cookie"] == "session=abc; HttpOnly"
        assert head.headers["connection"] == "Upgrade"


def test_a_header_with_a_line_break_refuses_the_upgrade():
    app = room_app()

    async def bad(ctx, next):
        response = await next()
        response.headers["X-Evil"] = "a\r\nInjected: yes"
        return response

    app.use(bad)
    with serving(app) as srv:
        head = upgrade_head(srv.port, "/room/x")
        assert head.status == 500
        assert "injected" not in head.headers
