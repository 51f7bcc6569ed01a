"""Cross-site WebSocket hijacking: by default a browser page on another site
cannot open a socket here (with the user's cookies).

Without ``allowed_origins``, an upgrade whose Origin names another host than the
request's Host (or ``null``) gets 403; one without Origin (not a browser) is
accepted; ``allowed_origins="*"`` turns the check off; a list allows exactly
those origins. On fastws's routes and on a mounted FastAPI app's alike.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI, WebSocket as ApiWebSocket
from websockets.exceptions import InvalidStatus

from fastws import create_app, websocket

from ..conftest import serving
from ..integration.clients import ws_connect


def app_with(**options):
    app = create_app()
    app.use(websocket(**options))
    app.ws("/echo", lambda ws: ws.on("message", ws.send))
    api = FastAPI()

    @api.websocket("/ws")
    async def api_echo(sock: ApiWebSocket):
        await sock.accept()
        await sock.send_text(await sock.receive_text())
        await sock.close()

    app.mount("/api", api)
    return app


def status_of(url: str, origin: str | None) -> int:
    try:
        with ws_connect(url, origin=origin, open_timeout=5) as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "hi"
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


@pytest.mark.parametrize("path", ["/echo", "/api/ws"])
def test_by_default_only_pages_of_the_requested_host_get_in(path: str):
    with serving(app_with()) as srv:
        url = srv.url(path)
        own = f"http://127.0.0.1:{srv.port}"
        assert status_of(url, None) == 101                      # not a browser
        assert status_of(url, own) == 101                       # a page of this site
        assert status_of(url, own.replace("127.0.0.1", "localhost")) == 403
        assert status_of(url, f"http://127.0.0.1:{srv.port + 1}") == 403
        assert status_of(url, "https://evil.example") == 403
        assert status_of(url, "null") == 403                     # sandboxed or file:// page


@pytest.mark.parametrize("allowed", ["*", ["*"]])
def test_any_origin_when_asked(allowed):
    with serving(app_with(allowed_origins=allowed)) as srv:
        assert status_of(srv.url("/echo"), "https://evil.example") == 101
        assert status_of(srv.url("/api/ws"), "null") == 101


def test_a_list_allows_exactly_those():
    with serving(app_with(allowed_origins=["https://chat.example"])) as srv:
        assert status_of(srv.url("/echo"), "https://chat.example") == 101
        assert status_of(srv.url("/echo"), f"http://127.0.0.1:{srv.port}") == 403
        assert status_of(srv.url("/echo"), None) == 403


def test_a_host_without_port_matches_its_pages_on_any_port():
    # nginx's `proxy_set_header Host $host` passes the host alone, while the
    # page may be on 8443; another host is still refused.
    import socket

    from ..integration.rawws import handshake_request, read_head

    def status(host: str, origin: str) -> int:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
            sock.sendall(handshake_request("/echo", host=host, extra=[("Origin", origin)]))
            return int(read_head(sock)[9:12])

    with serving(app_with()) as srv:
        assert status("chat.example", "https://chat.example:8443") == 101
        assert status("chat.example", "https://chat.example") == 101
        assert status("chat.example", "https://evil.example:8443") == 403
