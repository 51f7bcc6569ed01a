"""ASGI apps alongside: ``app.mount(prefix, asgi_app)`` with a real FastAPI app and
a real Starlette app next to fastws's own HTTP and WebSocket routes, on one port,
driven by real clients (httpx for HTTP, the websockets library, raw sockets).

Covered: path and query parameters, JSON bodies and validation errors, streaming
responses (chunked, paced by the client), HTTP errors and unhandled exceptions,
headers and cookies both ways, HEAD, keep-alive across fastws and mounted routes,
lifespan startup/shutdown and its state, a failing startup that stops the server,
the mounted apps' own WebSocket routes (accept with a subprotocol and headers,
echo, close codes both ways, refusal before accept, an HTTP denial response),
and that fastws's routes win where both match.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time

import httpx
import pytest
from fastapi import FastAPI, HTTPException, Request, Response, WebSocket as FastAPIWebSocket
from fastapi.responses import StreamingResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Mount as StarletteMount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus

from fastws import create_app, websocket
from fastws.asgi.mount import ClientDisconnected, LifespanError
from fastws.serve.server import StartupError
from tests.conftest import serving
from tests.integration.clients import (TIMEOUT, client_frame, closed_with, raw_connection, raw_ws,
                                       read_response, recv, wait_for, ws_connect)


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


def fastapi_app(events: list[str]) -> FastAPI:
    """A FastAPI app as a team would have one: lifespan, params, bodies,
    streaming, errors, cookies, and a WebSocket route of its own."""

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI):
        events.append("startup")
        yield {"greeting": "hello from lifespan"}
        events.append("shutdown")

    api = FastAPI(lifespan=lifespan)

    @api.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None, limit: int = 10):
        return {"item_id": item_id, "q": q, "limit": limit}

    @api.post("/items")
    async def create_item(item: Item):
        return {"created": item.model_dump(), "total": item.price * 2}

    @api.get("/state")
    async def state(request: Request):
        return {"greeting": request.state.greeting, "root_path": request.scope["root_path"],
                "path": request.url.path}

    @api.get("/stream")
    async def stream(n: int = 5):
        async def chunks():
            for i in range(n):
                yield f"chunk {i}\n".encode()
                await asyncio.sleep(0)
        return StreamingResponse(chunks(), media_type="text/plain")

    @api.get("/big-stream")
    async def big_stream(mib: int = 8):
        block = b"x" * (1 << 20)

        async def chunks():
            for _ in range(mib):
                yield block
        return StreamingResponse(chunks(), media_type="application/octet-stream")

    @api.get("/missing")
    async def missing():
        raise HTTPException(status_code=404, detail="no such thing",
                            headers={"X-Why": "because"})

    @api.get("/boom")
    async def boom():
        raise RuntimeError("handler bug")

    @api.get("/cookies")
    async def cookies(request: Request, response: Response):
        response.set_cookie("session", "abc123", httponly=True)
        response.set_cookie("theme", "dark")
        response.headers["X-Custom"] = "yes"
        return {"sent": dict(request.cookies), "agent": request.headers.get("user-agent"),
                "client": request.client.host if request.client else None}

    @api.websocket("/ws/{name}")
    async def ws_echo(ws: FastAPIWebSocket, name: str):
        if name == "nobody":
            await ws.close(code=1008)
            return
        await ws.accept(subprotocol="chat.v1" if "chat.v1" in ws.scope["subprotocols"] else None,
                        headers=[(b"x-hello", name.encode())])
        await ws.send_text(f"hi {name}")
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    events.append(f"disconnect {message['code']}")
                    return
                if message.get("text") == "bye":
                    await ws.close(code=4001, reason="bye to you")
                    return
                if message.get("text") is not None:
                    await ws.send_text(message["text"].upper())
                else:
                    await ws.send_bytes(message["bytes"][::-1])
        except Exception as exc:        # pragma: no cover - shows in the test's failure
            events.append(f"error {exc!r}")
            raise

    return api


def starlette_app(events: list[str]) -> Starlette:
    """A plain Starlette app with a sub-mount, lifespan and a WebSocket route."""

    async def hello(request):
        return PlainTextResponse(f"hello {request.path_params['who']}")

    async def echo_json(request):
        body = await request.json()
        return JSONResponse({"echo": body, "method": request.method}, status_code=201)

    async def ws_route(ws):
        await ws.accept()
        async for text in ws.iter_text():
            await ws.send_text(f"starlette: {text}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        events.append("starlette startup")
        yield
        events.append("starlette shutdown")

    return Starlette(routes=[
        Route("/hello/{who}", hello),
        StarletteMount("/v1", routes=[Route("/echo", echo_json, methods=["POST"])]),
        WebSocketRoute("/ws", ws_route),
    ], lifespan=lifespan)


def combined(events: list[str]):
    """fastws with its own routes, FastAPI at /api and Starlette at /"""
    app = create_app()
    app.use(websocket())

    @app.ws("/chat/:room")
    def chat(ws, ctx):
        ws.join(ctx.params["room"])
        ws.on("message", lambda data: ws.broadcast_all(ctx.params["room"], data))

    @app.get("/api/fastws-owned")
    def owned(ctx):
        return {"served_by": "fastws"}

    @app.get("/rooms/:room")
    def room_info(ctx):
        return {"room": ctx.params["room"], "size": app.room_size(ctx.params["room"])}

    app.mount("/api", fastapi_app(events))
    app.mount("/", starlette_app(events))
    return app


@pytest.fixture
def served():
    events: list[str] = []
    app = combined(events)
    with serving(app) as srv:
        yield srv, events
    assert "shutdown" in events and "starlette shutdown" in events, events


def test_lifespan_runs_and_its_state_reaches_requests(served):
    srv, events = served
    assert events[:2] == ["startup", "starlette startup"]
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
        r = client.get("/api/state")
        assert r.status_code == 200
        assert r.json() == {"greeting": "hello from lifespan", "root_path": "/api",
                            "path": "/api/state"}


def test_path_and_query_parameters_and_validation(served):
    srv, _ = served
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
        r = client.get("/api/items/42", params={"q": "caf\u00e9 & co", "limit": 3})
        assert r.json() == {"item_id": 42, "q": "caf\u00e9 & co", "limit": 3}
        r = client.get("/api/items/not-a-number")
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"] == ["path", "item_id"]
        # percent-escapes in the path reach the app decoded
        r = client.get("/hello/J%C3%BCrgen%20B")
        assert r.text == "hello J\u00fcrgen B"


def test_json_bodies(served):
    srv, _ = served
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
        r = client.post("/api/items", json={"name": "lamp", "price": 12.5, "tags": ["a"]})
        assert r.status_code == 200
        assert r.json() == {"created": {"name": "lamp", "price": 12.5, "tags": ["a"]}, "total": 25.0}
        r = client.post("/api/items", json={"name": "lamp"})
        assert r.status_code == 422
        r = client.post("/v1/echo", json={"nested": [1, {"x": None}]})
        assert r.status_code == 201
        assert r.json() == {"echo": {"nested": [1, {"x": None}]}, "method": "POST"}


def test_streaming_response_is_chunked_and_complete(served):
    srv, _ = served
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET /api/stream?n=4 HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        head, body = read_chunked(sock)
        assert head.startswith(b"HTTP/1.1 200 ")
        assert b"transfer-encoding: chunked" in head.lower()
        assert body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"
        # keep-alive: the same connection serves the next request, a fastws route
        sock.sendall(f"GET /rooms/lobby HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        r = read_response(sock, bytearray())
        assert r.status == 200 and r.json() == {"room": "lobby", "size": 0}


def read_chunked(sock: socket.socket) -> tuple[bytes, bytes]:
    """One chunked response: (head, de-chunked body)."""
    buf = bytearray()

    def need(n: int) -> None:
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"closed mid-response: {bytes(buf[:200])!r}")
            buf.extend(chunk)

    while b"\r\n\r\n" not in buf:
        need(len(buf) + 1)
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end])
    del buf[:end + 4]
    body = bytearray()
    while True:
        while b"\r\n" not in buf:
            need(len(buf) + 1)
        line_end = buf.index(b"\r\n")
        size = int(bytes(buf[:line_end]), 16)
        need(line_end + 2 + size + 2)
        body += buf[line_end + 2:line_end + 2 + size]
        del buf[:line_end + 2 + size + 2]
        if size == 0:
            return head, bytes(body)


def test_large_stream_waits_for_a_slow_reader(served):
    """8 MiB streamed to a client that reads slowly: all of it arrives, in
    order, and the server does not buffer it all (send waits for the client)."""
    srv, _ = served
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
        with client.stream("GET", "/api/big-stream", params={"mib": 8}) as r:
            total = 0
            for i, part in enumerate(r.iter_raw(1 << 16)):
                assert set(part) == {ord("x")}
                total += len(part)
                if i < 20:
                    time.sleep(0.01)        # a slow start: the server must wait, not pile up
            assert total == 8 << 20


def test_errors(served, caplog):
    srv, _ = served
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
        r = client.get("/api/missing")
        assert r.status_code == 404
        assert r.json() == {"detail": "no such thing"}
        assert r.headers["x-why"] == "because"
        with caplog.at_level("ERROR"):
            r = client.get("/api/boom")
        assert r.status_code == 500
        assert "handler bug" not in r.text          # no traceback to the client
        # the connection survives an app's error: another request on it works
        assert client.get("/api/items/1").status_code == 200
        r = client.get("/api/no/such/route")
        assert r.status_code == 404
        r = client.get("/no/such/route/anywhere")
        assert r.status_code == 404                 # Starlette's 404 under "/"


def test_headers_and_cookies_both_ways(served):
    srv, _ = served
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT,
                      headers={"User-Agent": "fastws-test/1"}, cookies={"prefs": "compact"}) as client:
        r = client.get("/api/cookies")
        assert r.status_code == 200
        assert r.json() == {"sent": {"prefs": "compact"}, "agent": "fastws-test/1",
                            "client": "127.0.0.1"}
        assert r.headers["x-custom"] == "yes"
        set_cookies = r.headers.get_list("set-cookie")
        assert len(set_cookies) == 2
        assert any(c.startswith("session=abc123") and "HttpOnly" in c for c in set_cookies)
        assert any(c.startswith("theme=dark") for c in set_cookies)


def test_head_has_headers_and_no_body(served):
    srv, _ = served
    with raw_connection(srv.port) as sock:
        # Starlette answers HEAD on its GET routes, body and all: the server drops the body
        sock.sendall(f"HEAD /hello/ada HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        buf = bytearray()
        r = read_response(sock, buf, head=True)
        assert r.status == 200 and r.headers["content-length"] == str(len("hello ada"))
        sock.sendall(f"GET /api/items/7 HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
        r = read_response(sock, buf)        # nothing of a HEAD body was in the way
        assert r.json()["item_id"] == 7


def test_fastws_routes_win_and_its_websockets_work_alongside(served):
    srv, _ = served
    with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
        assert client.get("/api/fastws-owned").json() == {"served_by": "fastws"}
    with ws_connect(srv.url("/chat/lobby")) as a, ws_connect(srv.url("/chat/lobby")) as b:
        wait_for(lambda: srv.call(srv.app.room_size, "lobby") == 2, what="both in the room")
        a.send("hello room")
        assert recv(a) == "hello room"
        assert recv(b) == "hello room"


def test_mounted_websocket_route(served):
    srv, events = served
    with ws_connect(srv.url("/api/ws/ada"), subprotocols=["chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v1"
        assert ws.response.headers["x-hello"] == "ada"
        assert recv(ws) == "hi ada"
        ws.send("shout")
        assert recv(ws) == "SHOUT"
        ws.send(b"\x01\x02\x03")
        assert recv(ws) == b"\x03\x02\x01"
        # a JSON "type" is no event here: the app gets the text as it came
        ws.send('{"type": "message", "content": "x"}')
        assert recv(ws) == '{"TYPE": "MESSAGE", "CONTENT": "X"}'
        ws.send("bye")
        assert closed_with(ws) == (4001, "bye to you")
    # the client closes: the app's receive() says so, with the code
    with ws_connect(srv.url("/api/ws/bob")) as ws:
        assert recv(ws) == "hi bob"
        ws.close(4002, "leaving")
    wait_for(lambda: "disconnect 4002" in events, what="the app heard the close")
    with ws_connect(srv.url("/ws")) as ws:
        ws.send("plain")
        assert recv(ws) == "starlette: plain"


def test_mounted_websocket_refused_before_accept(served):
    srv, _ = served
    with pytest.raises(InvalidStatus) as info:
        with ws_connect(srv.url("/api/ws/nobody")):
            pass
    assert info.value.response.status_code == 403
    # no WebSocket route there at all: Starlette's answer, not a hang
    with pytest.raises(InvalidStatus) as info:
        with ws_connect(srv.url("/api/nowhere")):
            pass
    assert info.value.response.status_code == 403


def test_many_messages_in_order_to_a_slow_app():
    """More messages than the inbox holds, to an app that takes its time: all
    arrive, in order (the client is paused, nothing is dropped)."""
    got: list[str] = []

    async def slow_app(scope, receive, send):
        if scope["type"] != "websocket":
            return
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            got.append(message["text"])
            if len(got) % 50 == 0:
                await asyncio.sleep(0.01)
            if len(got) == 1000:
                await send({"type": "websocket.send", "text": "all here"})

    app = create_app()
    app.use(websocket())
    app.mount("/", slow_app)
    with serving(app) as srv, ws_connect(srv.url("/slow")) as ws:
        for i in range(1000):
            ws.send(str(i))
        assert recv(ws) == "all here"
    assert got == [str(i) for i in range(1000)]


def test_http_denial_response_extension():
    async def deny(scope, receive, send):
        if scope["type"] != "websocket":
            return
        assert "websocket.http.response" in scope["extensions"]
        await receive()
        await send({"type": "websocket.http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "websocket.http.response.body", "body": b'{"error":"who are you"}'})

    app = create_app()
    app.mount("/", deny)
    with serving(app) as srv:
        with pytest.raises(InvalidStatus) as info:
            with ws_connect(srv.url("/secret")):
                pass
        assert info.value.response.status_code == 401
        assert info.value.response.headers["www-authenticate"] == "Bearer"
        assert info.value.response.body == b'{"error":"who are you"}'


def test_app_errors_answer_500_and_keep_the_server_up(caplog):
    async def broken(scope, receive, send):
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")      # treated as unsupported
        if scope["path"] == "/before":
            raise ValueError("before the response")
        if scope["path"] == "/nothing":
            return
        if scope["path"] == "/after":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"part", "more_body": True})
            raise ValueError("after the response started")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"x-bad", b"one\r\nInjected: yes")]})
        await send({"type": "http.response.body", "body": b"never"})

    app = create_app()
    app.mount("/", broken)
    with serving(app) as srv, caplog.at_level("ERROR"):
        with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
            assert client.get("/before").status_code == 500
            assert client.get("/nothing").status_code == 500
            assert client.get("/header-injection").status_code == 500
            with pytest.raises(httpx.RemoteProtocolError):
                client.get("/after")            # cut short: the client must see it is incomplete
            assert client.get("/before").status_code == 500     # still serving
    assert "before the response" in caplog.text
    assert "returned without a response" in caplog.text


def test_disconnect_reaches_the_app():
    """A client that leaves mid-stream: the app's send raises (an OSError, per
    ASGI 2.4) and its receive says http.disconnect."""
    seen: list[str] = []

    async def forever(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        try:
            while True:
                await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
                await asyncio.sleep(0.001)
        except OSError as exc:
            seen.append(type(exc).__name__)
            seen.append((await receive())["type"])      # the body
            seen.append((await receive())["type"])

    app = create_app()
    app.mount("/", forever)
    with serving(app) as srv:
        with raw_connection(srv.port) as sock:
            sock.sendall(f"GET /feed HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
            assert sock.recv(1024).startswith(b"HTTP/1.1 200")
        wait_for(lambda: len(seen) == 3, what="the app to see the disconnect")
    assert seen == [ClientDisconnected.__name__, "http.request", "http.disconnect"]


def test_a_client_that_closes_while_the_app_waits_is_heard():
    """A long poll: the app has started its response and waits in receive();
    the client closes. The app hears http.disconnect at once, also on the owned
    I/O path, where the FIN is what tells (a half-close is not held open for a
    mounted app)."""
    seen: list[str] = []

    async def long_poll(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        while True:
            message = await receive()
            seen.append(message["type"])
            if message["type"] == "http.disconnect":
                return

    app = create_app()
    app.mount("/", long_poll)
    with serving(app) as srv:
        with raw_connection(srv.port) as sock:
            sock.sendall(f"GET /poll HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
            got = b""
            while b"waiting" not in got:
                got += sock.recv(1024)
        wait_for(lambda: "http.disconnect" in seen, what="the app to hear the client leave")
        wait_for(lambda: srv.call(lambda: len(srv.server._connections)) == 0,
                 what="the connection gone")


def test_failing_lifespan_startup_stops_the_server():
    @contextlib.asynccontextmanager
    async def lifespan(api):
        raise RuntimeError("database unreachable")
        yield  # pragma: no cover

    app = create_app()
    app.mount("/", FastAPI(lifespan=lifespan))
    with pytest.raises(StartupError) as info:
        with serving(app):
            pass
    assert str(info.value).endswith("failed to start: RuntimeError: database unreachable")
    assert isinstance(info.value.__cause__, LifespanError)


def test_mount_validation():
    app = create_app()
    with pytest.raises(ValueError, match="must start with '/'"):
        app.mount("api", FastAPI())
    with pytest.raises(TypeError, match="ASGI 3"):
        app.mount("/api", FastAPI)              # the class, not an app
    app.mount("/api/", FastAPI())
    with pytest.raises(ValueError, match="already mounted"):
        app.mount("/api", FastAPI())
    assert app.mount_for("/api") is not None
    assert app.mount_for("/api/x") is not None
    assert app.mount_for("/apix") is None
    assert app.mount_for("/") is None


def test_mounted_websocket_respects_max_connections():
    async def echo(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        while (await receive())["type"] != "websocket.disconnect":
            pass

    app = create_app()
    app.use(websocket(max_connections=1))
    app.mount("/", echo)
    with serving(app) as srv, ws_connect(srv.url("/one")):
        with pytest.raises(InvalidStatus) as info:
            with ws_connect(srv.url("/two")):
                pass
        assert info.value.response.status_code == 503


def test_raw_http_10_streaming_closes_the_connection():
    async def streamer(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    app = create_app()
    app.mount("/", streamer)
    with serving(app) as srv, raw_connection(srv.port) as sock:
        sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert b"chunked" not in head.lower() and b"connection: close" in head.lower()
        assert body == b"one two"


def test_a_mounted_socket_is_freed_when_its_client_leaves_while_the_app_never_reads():
    """An app that accepts and then never calls receive (a push-only endpoint
    waiting on something else): the client fills the inbox, so it is no longer
    read, and then resets the connection. When the server learns of it (the
    app's next send fails), the socket must be freed, not held behind the full
    inbox: that held the close event too, so the socket stayed counted open
    for good."""
    release = asyncio.Event()
    finished: list[str] = []

    async def push_only(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        with contextlib.suppress(OSError):
            await send({"type": "websocket.send", "text": "late"})
        finished.append("done")

    app = create_app()
    app.use(websocket())
    app.mount("/", push_only)
    with serving(app) as srv:
        sock, _ = raw_ws(srv.port, "/push")
        sock.sendall(b"".join(client_frame(0x1, f"unread {i}".encode()) for i in range(300)))
        wait_for(lambda: srv.call(lambda: app.connections) == 1, what="the socket")
        time.sleep(0.3)                 # the inbox fills and reading stops
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()                    # a reset, not a goodbye
        time.sleep(0.2)
        srv.call(release.set)           # its send meets the reset
        wait_for(lambda: finished == ["done"], what="the app to finish")
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the socket freed")


def test_an_app_that_fails_right_after_accepting_closes_its_socket(caplog):
    """The accept returns at once, so the app can raise before the protocol
    has switched: the socket must still close (1011), not stay open unserved."""

    async def fails(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.accept"})
        raise RuntimeError("auth check failed after accept")

    app = create_app()
    app.use(websocket())
    app.mount("/", fails)
    with serving(app) as srv, caplog.at_level("ERROR"):
        with ws_connect(srv.url("/x")) as ws:
            assert closed_with(ws)[0] == 1011
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the socket freed")
    assert "auth check failed after accept" in caplog.text


def test_head_of_a_streamed_response_keeps_the_connection_usable():
    """Starlette answers HEAD on every GET route, streaming ones too (it leaves
    the body out itself or not): no chunk, not even the last, may follow the
    head, or the next response on the keep-alive connection is garbage."""

    async def streams(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"one ", "more_body": True})
        await send({"type": "http.response.body", "body": b"two", "more_body": False})

    app = create_app()
    app.mount("/", streams)
    with serving(app) as srv, raw_connection(srv.port) as sock:
        sock.sendall(b"HEAD /s HTTP/1.1\r\nHost: x\r\n\r\nGET /s HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = bytearray()
        head = read_response(sock, buf, head=True)
        assert head.status == 200 and "transfer-encoding" not in head.headers
        deadline = time.monotonic() + TIMEOUT
        while b"0\r\n\r\n" not in buf:
            assert time.monotonic() < deadline, bytes(buf)
            chunk = sock.recv(65536)
            assert chunk, bytes(buf)
            buf += chunk
    assert bytes(buf).startswith(b"HTTP/1.1 200"), bytes(buf)
    assert b"transfer-encoding: chunked" in bytes(buf).lower()
    assert bytes(buf).endswith(b"4\r\none \r\n3\r\ntwo\r\n0\r\n\r\n")


def downloading(blocks: int):
    """An ASGI app that answers any GET with ``blocks`` times 64 KiB, each
    sent when the transport takes it."""
    block = b"y" * (1 << 16)

    async def download(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(blocks * len(block)).encode())]})
        for i in range(blocks):
            await send({"type": "http.response.body", "body": block,
                        "more_body": i < blocks - 1})
    return download


def test_a_slow_download_longer_than_the_handshake_timeout_completes():
    """A download that keeps the transport paused, but drains, for longer than
    handshake_timeout is progressing: it must not be cut as 'responses unread'.

    The kernel wakes a paused transport only when a third of its send buffer
    is free: at the pace read below that is every 2-3 s, more than twice the
    timeout, so the server must see progress in the kernel's queue instead.
    The reader itself may stall for most of a second (a loaded machine)."""
    BLOCKS = 128                        # 8 MiB, the first 3 MiB or so at the pace below
    app = create_app()
    app.use(websocket(handshake_timeout=1.0))
    app.mount("/", downloading(BLOCKS))
    with serving(app) as srv:
        with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
            with client.stream("GET", "/file") as r:
                total = 0
                started = time.monotonic()
                for part in r.iter_raw(1 << 15):
                    total += len(part)
                    if time.monotonic() - started < 5.0:
                        time.sleep(0.05)        # 0.65 MB/s, far slower than the server writes
                assert total == BLOCKS * (1 << 16)


def test_a_download_the_client_stops_reading_is_dropped(caplog):
    """The other side of the one above: a client that reads part of a response
    and then nothing is dropped after handshake_timeout, not held for good."""
    BLOCKS = 1024                       # 64 MiB: more than the kernel buffers hold
    app = create_app()
    app.use(websocket(handshake_timeout=0.5))
    app.mount("/", downloading(BLOCKS))
    with serving(app) as srv, caplog.at_level("INFO", logger="fastws"), \
            raw_connection(srv.port) as sock:
        sock.sendall(b"GET /file HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        with contextlib.suppress(ConnectionResetError):
            while got < 1 << 20:
                chunk = sock.recv(65536)
                if not chunk:
                    break       # a stall of this reader got it dropped already: fine too
                got += len(chunk)
        wait_for(lambda: srv.call(lambda: srv.server.connections) == 0,
                 what="the stalled download dropped")
    assert "responses unread" in caplog.text


def test_bodiless_statuses_may_carry_a_content_length_and_a_mismatch_answers_500(caplog):
    async def app_(scope, receive, send):
        if scope["type"] != "http":
            return
        if scope["path"] == "/not-modified":
            # A 304 keeps the representation's length (RFC 9110 8.6): not a mismatch.
            await send({"type": "http.response.start", "status": 304,
                        "headers": [(b"content-length", b"1234"), (b"etag", b'"v1"')]})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"short"})

    app = create_app()
    app.mount("/", app_)
    with serving(app) as srv, caplog.at_level("ERROR"):
        with httpx.Client(base_url=srv.url("", "http"), timeout=TIMEOUT) as client:
            r = client.get("/not-modified")
            assert r.status_code == 304 and r.headers["etag"] == '"v1"'
            # Nothing of the bad response went out, so the client gets a 500, not a cut.
            assert client.get("/mismatch").status_code == 500
            assert client.get("/not-modified").status_code == 304
    assert "shorter than its Content-Length" in caplog.text


def test_a_denial_response_keeps_repeated_headers():
    async def deny(scope, receive, send):
        if scope["type"] != "websocket":
            return
        await receive()
        await send({"type": "websocket.http.response.start", "status": 403,
                    "headers": [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"),
                                (b"content-length", b"999")]})
        await send({"type": "websocket.http.response.body", "body": b"no"})

    app = create_app()
    app.mount("/", deny)
    with serving(app) as srv, raw_connection(srv.port) as sock:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):        # connection: close ends it
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
    assert lines[0].startswith("HTTP/1.1 403") and body == b"no"
    assert [v for k, v in headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]
    assert [v for k, v in headers if k.lower() == "content-length"] == ["2"]
