"""HTTP routes over raw sockets: keep-alive, pipelining, bodies (sized and
chunked), params and query, 404/405/426, HEAD, middleware, error handling
and response helpers, as DESIGN.md's HTTP section describes them."""

from __future__ import annotations

import asyncio
import json

import pytest

from fastws import HTTPError, create_app, error_handler, websocket
from tests.conftest import serving
from tests.integration.clients import http_request, raw_connection, read_response


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
                  port: int = 0) -> bytes:
    """One HTTP/1.1 request (keep-alive unless the headers say otherwise)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and not any(k.lower() == "transfer-encoding" for k in headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def make_app():
    app = create_app()
    app.use(websocket())

    @app.get("/hello")
    def hello(ctx):
        return ctx.text("hello")

    @app.get("/slow")
    async def slow(ctx):
        await asyncio.sleep(0.05)
        return ctx.text("slow")

    @app.post("/echo")
    async def echo(ctx):
        body = await ctx.body()
        return ctx.json({"length": len(body), "body": body.decode("latin-1"),
                         "type": ctx.headers.get("content-type")})

    @app.post("/json")
    async def json_route(ctx):
        return ctx.json({"got": await ctx.json_body()})

    @app.get("/users/:id/posts/:post")
    def params(ctx):
        return ctx.json({"params": dict(ctx.params), "id": ctx.params.id,
                         "query": ctx.query, "page": ctx.get_query("page", "1"),
                         "method": ctx.method, "path": ctx.path})

    @app.put("/users/:id")
    def put_user(ctx):
        return {"updated": ctx.params["id"]}

    @app.get("/kinds/text")
    def kinds_text(ctx):
        return ctx.text("plain ✓")

    @app.get("/kinds/html")
    def kinds_html(ctx):
        return ctx.html("<p>hi</p>")

    @app.get("/kinds/json")
    def kinds_json(ctx):
        return ctx.json({"ok": True}, status=201)

    @app.get("/kinds/dict")
    def kinds_dict():
        return {"plain": "dict"}

    @app.get("/kinds/str")
    def kinds_str():
        return "just a str"

    @app.get("/kinds/none")
    def kinds_none():
        return None

    @app.ws("/socket")
    def socket_route(ws):
        pass

    return app


@pytest.fixture(scope="module")
def srv():
    with serving(make_app()) as running:
        yield running


def test_keep_alive_two_requests_on_one_socket(srv):
    with raw_connection(srv.port) as sock:
        buf = bytearray()
        sock.sendall(request_bytes("GET", "/hello", port=srv.port))
        first = read_response(sock, buf)
        sock.sendall(request_bytes("GET", "/kinds/str", port=srv.port))
        second = read_response(sock, buf)
    assert (first.status, first.body) == (200, b"hello")
    assert "connection" not in first.headers
    assert (second.status, second.body) == (200, b"just a str")


def test_pipelined_requests_answered_in_order(srv):
    with raw_connection(srv.port) as sock:
        buf = bytearray()
        # The slow async route first: its answer must still come first.
        sock.sendall(request_bytes("GET", "/slow", port=srv.port)
                     + request_bytes("GET", "/hello", port=srv.port)
                     + request_bytes("POST", "/echo", b"abc", port=srv.port)
                     + request_bytes("GET", "/kinds/str", headers={"Connection": "close"},
                                     port=srv.port))
        bodies = [read_response(sock, buf).body for _ in range(4)]
        assert sock.recv(1) == b""      # closed after the Connection: close request
    assert bodies[0] == b"slow"
    assert bodies[1] == b"hello"
    assert json.loads(bodies[2])["body"] == "abc"
    assert bodies[3] == b"just a str"


def test_content_length_body(srv):
    resp = http_request(srv.port, "POST", "/echo", b"x" * 5000,
                        headers={"Content-Type": "application/octet-stream"})
    assert resp.status == 200
    assert resp.json() == {"length": 5000, "body": "x" * 5000, "type": "application/octet-stream"}


def test_chunked_body(srv):
    chunked = b"4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n"
    with raw_connection(srv.port) as sock:
        sock.sendall(request_bytes("POST", "/echo", chunked,
                                   headers={"Transfer-Encoding": "chunked"}, port=srv.port))
        resp = read_response(sock, bytearray())
    assert resp.json()["body"] == "Wikipedia in\r\n\r\nchunks."


def test_json_body(srv):
    resp = http_request(srv.port, "POST", "/json", json.dumps({"a": [1, 2]}).encode(),
                        headers={"Content-Type": "application/json"})
    assert (resp.status, resp.json()) == (200, {"got": {"a": [1, 2]}})

    chunked = b"5\r\n[1, 2\r\n2\r\n ]\r\n0\r\n\r\n"
    with raw_connection(srv.port) as sock:
        sock.sendall(request_bytes("POST", "/json", chunked,
                                   headers={"Transfer-Encoding": "chunked"}, port=srv.port))
        assert read_response(sock, bytearray()).json() == {"got": [1, 2]}

    bad = http_request(srv.port, "POST", "/json", b"{nope")
    assert bad.status == 400


def test_params_and_query(srv):
    resp = http_request(srv.port, "GET", "/users/42/posts/hello%20world?page=3&tag=a&tag=b&empty=")
    assert resp.json() == {
        "params": {"id": "42", "post": "hello world"}, "id": "42",
        "query": {"page": "3", "tag": "a", "empty": ""}, "page": "3",
        "method": "GET", "path": "/users/42/posts/hello%20world",
    }
    assert http_request(srv.port, "GET", "/users/7/posts/x").json()["page"] == "1"


def test_not_found(srv):
    for path in ("/nope", "/users", "/users/42/posts", "/hello/extra", "/users/42/posts/x/y"):
        assert http_request(srv.port, "GET", path).status == 404, path


def test_method_not_allowed_lists_allowed_methods(srv):
    resp = http_request(srv.port, "DELETE", "/users/42")
    assert resp.status == 405
    assert resp.headers["allow"] == "PUT"
    resp = http_request(srv.port, "POST", "/hello")
    assert resp.status == 405
    assert [m.strip() for m in resp.headers["allow"].split(",")] == ["GET", "HEAD"]
    assert http_request(srv.port, "PUT", "/users/42").json() == {"updated": "42"}


def test_head(srv):
    get = http_request(srv.port, "GET", "/kinds/html")
    head = http_request(srv.port, "HEAD", "/kinds/html")
    assert head.status == 200
    assert head.headers["content-length"] == get.headers["content-length"] == str(len(get.body))
    assert head.headers["content-type"] == get.headers["content-type"]
    assert head.body == b""
    # Nothing extra followed the headers: keep-alive would be out of step.
    with raw_connection(srv.port) as sock:
        buf = bytearray()
        sock.sendall(request_bytes("HEAD", "/hello", port=srv.port)
                     + request_bytes("GET", "/hello", port=srv.port))
        assert read_response(sock, buf, head=True).body == b""
        assert read_response(sock, buf).body == b"hello"


def test_plain_get_on_websocket_route_is_426(srv):
    resp = http_request(srv.port, "GET", "/socket")
    assert resp.status == 426
    assert resp.headers["upgrade"].lower() == "websocket"
    assert resp.headers["sec-websocket-version"] == "13"


def test_response_helpers_content_types(srv):
    cases = {
        "/kinds/text": (200, "text/plain; charset=utf-8", "plain ✓".encode()),
        "/kinds/html": (200, "text/html; charset=utf-8", b"<p>hi</p>"),
        "/kinds/json": (201, "application/json", b'{"ok":true}'),
        "/kinds/dict": (200, "application/json", b'{"plain":"dict"}'),
        "/kinds/str": (200, "text/plain; charset=utf-8", b"just a str"),
    }
    for path, (status, ctype, body) in cases.items():
        resp = http_request(srv.port, "GET", path)
        assert (resp.status, resp.headers["content-type"], resp.body) == (status, ctype, body), path
    none = http_request(srv.port, "GET", "/kinds/none")
    assert none.status == 204 and none.body == b""


# ------------------------------------------------------------------ middleware


def test_middleware_order_and_short_circuit():
    app = create_app()
    trail = []

    async def outer(ctx, next):
        trail.append("outer in")
        response = await next()
        trail.append("outer out")
        response.headers["X-Outer"] = "1"
        return response

    def inner(ctx, next):      # a plain function returning next()'s awaitable
        trail.append("inner in")
        if ctx.path == "/blocked":
            return ctx.json({"blocked": True}, status=403)
        return next()

    app.use(outer)
    app.use(inner)

    @app.get("/open")
    def open_route(ctx):
        trail.append("handler")
        return ctx.text("open")

    @app.get("/blocked")
    def blocked(ctx):
        trail.append("never")
        return ctx.text("never")

    with serving(app) as srv:
        resp = http_request(srv.port, "GET", "/open")
        assert (resp.status, resp.body, resp.headers["x-outer"]) == (200, b"open", "1")
        assert trail == ["outer in", "inner in", "handler", "outer out"]
        trail.clear()
        resp = http_request(srv.port, "GET", "/blocked")
        assert (resp.status, resp.json(), resp.headers["x-outer"]) == (403, {"blocked": True}, "1")
        assert trail == ["outer in", "inner in", "outer out"]
        trail.clear()
        # A 404 runs the middleware too; it surfaces as the HTTPError that
        # next() raises, so "outer out" is not reached.
        resp = http_request(srv.port, "GET", "/missing")
        assert resp.status == 404 and "x-outer" not in resp.headers
        assert trail == ["outer in", "inner in"]


# ------------------------------------------------------------------ errors


def erroring_app(with_handler: bool):
    app = create_app()
    if with_handler:
        app.use(error_handler())

    @app.get("/crash")
    def crash(ctx):
        raise RuntimeError("secret internals")

    @app.get("/async-crash")
    async def async_crash(ctx):
        await asyncio.sleep(0)
        raise KeyError("secret key")

    @app.get("/teapot")
    def teapot(ctx):
        raise HTTPError(418, "short and stout")

    @app.get("/forbidden")
    def forbidden(ctx):
        raise HTTPError(403)

    return app


def test_error_handler_json_500_without_traceback(caplog):
    with serving(erroring_app(True)) as srv:
        for path in ("/crash", "/async-crash"):
            resp = http_request(srv.port, "GET", path)
            assert resp.status == 500
            assert resp.headers["content-type"] == "application/json"
            assert resp.json() == {"error": "Internal Server Error"}
            assert b"secret" not in resp.body and b"Traceback" not in resp.body
        resp = http_request(srv.port, "GET", "/teapot")
        assert (resp.status, resp.json()) == (418, {"error": "short and stout"})
        resp = http_request(srv.port, "GET", "/forbidden")
        assert (resp.status, resp.json()) == (403, {"error": "Forbidden"})
    logged = [r.exc_info[0] for r in caplog.records if r.name == "fastws" and r.exc_info]
    assert logged == [RuntimeError, KeyError]


def test_errors_without_error_handler_are_plain_text():
    with serving(erroring_app(False)) as srv:
        resp = http_request(srv.port, "GET", "/crash")
        assert (resp.status, resp.body) == (500, b"Internal Server Error")
        assert resp.headers["content-type"].startswith("text/plain")
        resp = http_request(srv.port, "GET", "/teapot")
        assert (resp.status, resp.body) == (418, b"short and stout")
