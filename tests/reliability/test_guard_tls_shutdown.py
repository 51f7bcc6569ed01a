"""Who gets in, how it is encrypted, and what survives a SIGTERM.

Guarded upgrades: ``guard=`` on ``app.ws``, middleware that refuses an
upgrade, ``allowed_origins`` and ``max_connections``, each answered with an
HTTP status before any handshake completes (and without running the route
handler). TLS: wss:// and https:// with certificates made here by trustme.
Shutdown: data a handler sent right before SIGTERM reaches the client
ahead of the 1001 close frame, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import socket
import ssl
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from fastws import HTTPError, create_app, websocket

from ..conftest import Running, serving
from ..integration.clients import TIMEOUT, closed_with, recv_json, wait_for, ws_connect
from ..integration.rawws import (OP_CLOSE, OP_TEXT, RawClient, accept_for, close_payload,
                                 hand_frame, handshake_request, masked_frame, new_key)
from .procs import ServerProcess
from .slow_client import SlowClient


# ---------------------------------------------------------------- guarded upgrades

class Calls:
    """Route handler and guard invocations, by path (server loop only)."""

    def __init__(self) -> None:
        self.routes: list[str] = []
        self.guards: list[str] = []
        self.middleware: list[tuple[str, bool]] = []


def guarded_app(calls: Calls) -> Any:
    """Echo routes behind each kind of guard, and middleware guarding /mw/*."""
    app = create_app()
    app.use(websocket(allowed_origins=None, close_timeout=2))

    def echo(ws, ctx):
        calls.routes.append(ctx.path)
        ws.on("message", ws.send)

    def token_guard(ctx):
        calls.guards.append(ctx.path)
        return ctx.get_query("token") == "good"

    def raising_guard(ctx):
        calls.guards.append(ctx.path)
        if ctx.headers.get("authorization") != "Bearer good":
            raise HTTPError(401, "Login first", {"WWW-Authenticate": "Bearer"})

    def response_guard(ctx):
        calls.guards.append(ctx.path)
        if ctx.params["room"] == "full":
            return ctx.json({"error": "room is full"}, status=429)
        return True

    async def async_guard(ctx):
        calls.guards.append(ctx.path)
        await asyncio.sleep(0.2)        # e.g. a token lookup
        return ctx.get_query("token") == "good"

    def broken_guard(ctx):
        calls.guards.append(ctx.path)
        raise RuntimeError("guard bug")

    app.ws("/open", echo, guard=lambda ctx: None)
    app.ws("/token", echo, guard=token_guard)
    app.ws("/bearer", echo, guard=raising_guard)
    app.ws("/rooms/:room", echo, guard=response_guard)
    app.ws("/async", echo, guard=async_guard)
    app.ws("/broken", echo, guard=broken_guard)

    @app.ws("/decorated", guard=lambda ctx: ctx.get_query("token") == "good")
    def decorated(ws, ctx):
        echo(ws, ctx)

    app.ws("/mw/echo", echo)

    async def members_only(ctx, next):
        calls.middleware.append((ctx.path, ctx.is_websocket))
        if ctx.path.startswith("/mw/") and ctx.headers.get("x-member") != "yes":
            return ctx.text("members only", status=401)
        return await next()

    app.use(members_only)

    @app.get("/mw/page")
    def page():
        return "page"

    return app


@pytest.fixture(scope="module")
def guarded() -> Iterator[tuple[Running, Calls]]:
    calls = Calls()
    with serving(guarded_app(calls)) as running:
        yield running, calls


def upgrade(port: int, path: str, headers: list[tuple[str, str]] = (), early: bytes = b""):
    """Send an opening handshake; (client, response). The caller closes the client."""
    client = RawClient(port)
    key = new_key()
    client.send(handshake_request(path, key=key, extra=headers) + early)
    response = client.read_response()
    if response.status == 101:
        assert response.header("sec-websocket-accept") == accept_for(key)
    return client, response


def refused(port: int, path: str, headers: list[tuple[str, str]] = ()):
    """The response to an upgrade that must be refused: no accept header,
    connection closed after it."""
    client, response = upgrade(port, path, headers)
    with client:
        assert response.status != 101, f"{path} was upgraded"
        assert response.header("sec-websocket-accept") is None
        assert "close" in response.tokens("connection")
        client.expect_eof()
    return response


def accepted(port: int, path: str, headers: list[tuple[str, str]] = ()) -> None:
    """The upgrade succeeds and the socket echoes."""
    client, response = upgrade(port, path, headers)
    with client:
        assert response.status == 101, response
        client.send(masked_frame(OP_TEXT, "hello"))
        assert client.read_frame().payload == b"hello"
        client.send(hand_frame(OP_CLOSE, close_payload(1000)))
        assert client.read_frame().close_code == 1000


GUARD_REFUSALS = {
    "false-is-403": ("/token?token=bad", [], 403),
    "false-without-token": ("/token", [], 403),
    "decorator-false-is-403": ("/decorated", [], 403),
    "httperror-401": ("/bearer", [("Authorization", "Bearer bad")], 401),
    "response-status": ("/rooms/full", [], 429),
    "async-false-is-403": ("/async?token=bad", [], 403),
    "guard-that-raises-is-500": ("/broken", [], 500),
    "middleware-refuses": ("/mw/echo", [], 401),
}


@pytest.mark.parametrize("path, headers, status", GUARD_REFUSALS.values(), ids=GUARD_REFUSALS.keys())
def test_guard_refuses_before_the_handshake(guarded, path, headers, status) -> None:
    server, calls = guarded
    before = server.call(lambda: list(calls.routes))
    response = refused(server.port, path, headers)
    assert response.status == status, response
    assert server.call(lambda: list(calls.routes)) == before, "route handler ran for a refused upgrade"


def test_guard_refusal_details(guarded) -> None:
    server, _ = guarded
    response = refused(server.port, "/bearer")
    assert (response.status, response.body) == (401, b"Login first")
    assert response.header("www-authenticate") == "Bearer"
    response = refused(server.port, "/rooms/full")
    assert json.loads(response.body) == {"error": "room is full"}
    assert response.header("content-type").startswith("application/json")
    # A crashing guard's message does not leak to the client.
    assert b"guard bug" not in refused(server.port, "/broken").body


GUARD_ACCEPTS = {
    "none-accepts": ("/open", []),
    "true-accepts": ("/token?token=good", []),
    "decorator-true": ("/decorated?token=good", []),
    "httperror-not-raised": ("/bearer", [("Authorization", "Bearer good")]),
    "response-guard-true": ("/rooms/lobby", []),
    "async-true": ("/async?token=good", []),
    "middleware-passes": ("/mw/echo", [("X-Member", "yes")]),
}


@pytest.mark.parametrize("path, headers", GUARD_ACCEPTS.values(), ids=GUARD_ACCEPTS.keys())
def test_guard_accepts(guarded, path, headers) -> None:
    server, calls = guarded
    accepted(server.port, path, headers)
    assert server.call(lambda: calls.routes[-1]) == path.partition("?")[0]


def test_middleware_sees_upgrades_and_http(guarded) -> None:
    server, calls = guarded
    accepted(server.port, "/mw/echo", [("X-Member", "yes")])
    with RawClient(server.port) as client:
        client.send(b"GET /mw/page HTTP/1.1\r\nHost: x\r\nX-Member: yes\r\nConnection: close\r\n\r\n")
        assert client.read_response().body == b"page"
    seen = server.call(lambda: list(calls.middleware))
    assert ("/mw/echo", True) in seen and ("/mw/page", False) in seen


def test_frames_sent_during_an_async_guard_are_kept(guarded) -> None:
    # The client does not wait for the 101: its first frame rides with the
    # request and must reach the handler once the guard accepts.
    server, _ = guarded
    client, response = upgrade(server.port, "/async?token=good",
                               early=masked_frame(OP_TEXT, "early bird"))
    with client:
        assert response.status == 101
        assert client.read_frame().payload == b"early bird"


def test_client_leaving_during_an_async_guard(guarded, caplog: pytest.LogCaptureFixture) -> None:
    server, calls = guarded
    before = server.call(lambda: len(calls.guards))
    with caplog.at_level(logging.WARNING, logger="fastws"):
        with RawClient(server.port) as client:
            client.send(handshake_request("/async?token=good"))
            wait_for(lambda: server.call(lambda: len(calls.guards)) > before,
                     what="the guard to start")
        time.sleep(0.5)                 # the guard finishes after the client left
        accepted(server.port, "/open")
    # The FIN of a client that left may go unseen until the upgrade is
    # written (reading pauses during an upgrade): the route may run, but
    # the socket is then reaped, with no error.
    wait_for(lambda: server.call(lambda: server.app.connections) == 0,
             what="the departed client's socket to be reaped")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_allowed_origins_and_max_connections() -> None:
    app = create_app()
    app.use(websocket(allowed_origins=["https://chat.example"], max_connections=3))
    app.ws("/echo", lambda ws: ws.on("message", ws.send))
    good = [("Origin", "https://chat.example")]
    with serving(app) as server:
        assert refused(server.port, "/echo", [("Origin", "https://evil.example")]).status == 403
        assert refused(server.port, "/echo").status == 403            # no Origin at all
        assert refused(server.port, "/echo", [("Origin", "https://chat.example.evil")]).status == 403
        held = [upgrade(server.port, "/echo", good) for _ in range(3)]
        try:
            assert all(r.status == 101 for _, r in held)
            assert refused(server.port, "/echo", good).status == 503
            # A place frees up when one leaves.
            client, _ = held.pop()
            client.send(hand_frame(OP_CLOSE, close_payload(1000)))
            assert client.read_frame().close_code == 1000
            client.close()
            wait_for(lambda: server.call(lambda: app.connections) == 2, what="the close")
            accepted(server.port, "/echo", good)
        finally:
            for client, _ in held:
                client.close()


def test_max_connections_holds_with_an_async_guard() -> None:
    app = create_app()
    app.use(websocket(max_connections=3))

    async def slow_guard(ctx):
        await asyncio.sleep(0.3)        # e.g. a token lookup

    app.ws("/echo", lambda ws: ws.on("message", ws.send), guard=slow_guard)
    with serving(app) as server:
        clients = [RawClient(server.port) for _ in range(10)]
        try:
            for client in clients:
                client.send(handshake_request("/echo", key=new_key()))
            statuses = sorted(client.read_response().status for client in clients)
            assert statuses == [101] * 3 + [503] * 7, statuses
            assert server.call(lambda: app.connections) == 3
        finally:
            for client in clients:
                client.close()


def test_authentication_example_still_works() -> None:
    # examples/authentication.py: an error message, then a normal close.
    mod = load_example("authentication")
    with serving(mod.app) as server:
        with ws_connect(server.url("/protected?token=wrong")) as ws:
            assert recv_json(ws) == {"error": "Authentication required"}
            assert closed_with(ws) == (1000, "")
        with ws_connect(server.url("/protected?token=let-me-in")) as ws:
            ws.send("hi")
            assert ws.recv(timeout=TIMEOUT) == "Authenticated message: hi"


def load_example(name: str) -> Any:
    """``examples/<name>.py`` as a fresh module."""
    path = Path(__file__).resolve().parents[2] / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"reliability_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) from a throwaway CA."""
    trustme = pytest.importorskip("trustme")      # in the "test" extra
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    return server_ctx, client_ctx


def tls_app() -> Any:
    app = create_app()
    app.use(websocket())
    app.ws("/echo", lambda ws: ws.on("message", ws.send))

    @app.get("/hello")
    def hello(ctx):
        return {"scheme": "https", "path": ctx.path}

    return app


def test_wss_echo_and_https_get(tls) -> None:
    server_ctx, client_ctx = tls
    with serving(tls_app(), ssl=server_ctx) as server:
        with ws_connect(server.url("/echo", "wss"), ssl=client_ctx) as ws:
            ws.send("over TLS")
            assert ws.recv(timeout=TIMEOUT) == "over TLS"
            big = bytes(range(256)) * 1024          # spans many TLS records
            ws.send(big)
            assert ws.recv(timeout=TIMEOUT) == big
        with urllib.request.urlopen(server.url("/hello", "https"), context=client_ctx,
                                    timeout=TIMEOUT) as resp:
            assert resp.status == 200
            assert json.loads(resp.read()) == {"scheme": "https", "path": "/hello"}


def test_tls_is_really_checked_and_plain_text_is_refused(tls) -> None:
    server_ctx, client_ctx = tls
    with serving(tls_app(), ssl=server_ctx) as server:
        # A client that does not trust the CA fails the handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            ws_connect(server.url("/echo", "wss"), ssl=ssl.create_default_context())
        # Plain HTTP to the TLS port gets no HTTP answer, and harms nothing.
        with socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = sock.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/1.1 200")
        with ws_connect(server.url("/echo", "wss"), ssl=client_ctx) as ws:
            ws.send("still fine")
            assert ws.recv(timeout=TIMEOUT) == "still fine"


# ---------------------------------------------------------------- shutdown without loss

BURST = 1000


def test_sigterm_delivers_everything_before_1001(tmp_path: Path) -> None:
    with ServerProcess("burst", tmp_path / "server.log", close_timeout=10) as server:
        with ws_connect(server.url("/burst")) as ws:
            ws.send(f"go {BURST}")
            got = []
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(BURST + 1):
                    got.append(ws.recv(timeout=TIMEOUT))
        assert [int(m.split(" ", 1)[0]) for m in got] == list(range(BURST))
        assert closed.value.rcvd is not None, "no close frame after the data"
        assert closed.value.rcvd.code == 1001
        assert server.proc.wait(30) == 0
        assert "Traceback" not in server.log(), server.log()


def test_sigterm_flushes_to_a_client_that_reads_late(tmp_path: Path) -> None:
    # The client reads nothing until the server is already shutting down, so
    # most of the burst still waits in the server's buffers at SIGTERM.
    with ServerProcess("burst", tmp_path / "server.log", close_timeout=10,
                       max_backpressure=4 << 20) as server:
        with SlowClient(server.port) as client:
            client.upgrade("/burst")
            client.send(masked_frame(OP_TEXT, f"go {BURST}"))
            time.sleep(0.5)
            seqs = []
            for _ in range(BURST + 1):
                frame = client.read_frame()
                if frame.opcode == OP_CLOSE:
                    break
                seqs.append(int(frame.payload.split(b" ", 1)[0]))
            assert seqs == list(range(BURST))
            assert frame.opcode == OP_CLOSE and frame.close_code == 1001
            client.send(hand_frame(OP_CLOSE, close_payload(1001)))
            client.expect_eof()
        assert server.proc.wait(30) == 0
