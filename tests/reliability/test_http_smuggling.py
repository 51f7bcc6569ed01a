"""Request smuggling and malformed HTTP on plain HTTP routes, table-driven.

Each case sends one request, often with a second one hidden where a lenient
parser would find it (``GET /secret``), and checks the first answer's
status. The /secret handler must never run: a smuggled request must not
reach the app. A WebSocket bystander, connected before each case, must
still be answered after it.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Iterator, NamedTuple

import pytest

from fastws import create_app, websocket

from ..conftest import Running, serving
from ..integration.clients import ws_connect
from .wire import read_to_close, send_then_half_close

SMUGGLED = b"GET /secret HTTP/1.1\r\nHost: x\r\n\r\n"


class Case(NamedTuple):
    request: bytes
    status: int


def post(*headers: str, body: bytes = b"") -> bytes:
    """A POST to /body with these header lines, then ``body``."""
    return ("POST /body HTTP/1.1\r\nHost: x\r\n" + "".join(h + "\r\n" for h in headers)
            + "\r\n").encode("latin-1") + body


CASES = {
    "duplicate-content-length-same": Case(post("Content-Length: 5", "Content-Length: 5",
                                               body=b"hello" + SMUGGLED), 400),
    "duplicate-content-length-differ": Case(post("Content-Length: 5", "Content-Length: 40",
                                                 body=b"hello" + SMUGGLED), 400),
    "content-length-list": Case(post("Content-Length: 5, 5", body=b"hello" + SMUGGLED), 400),
    "content-length-then-chunked": Case(post("Content-Length: 5", "Transfer-Encoding: chunked",
                                             body=b"0\r\n\r\n" + SMUGGLED), 400),
    "chunked-then-content-length": Case(post("Transfer-Encoding: chunked", "Content-Length: 40",
                                             body=b"0\r\n\r\n" + SMUGGLED), 400),
    "chunked-not-last": Case(post("Transfer-Encoding: chunked, identity",
                                  body=b"0\r\n\r\n" + SMUGGLED), 400),
    "transfer-encoding-twice": Case(post("Transfer-Encoding: chunked", "Transfer-Encoding: chunked",
                                         body=b"0\r\n\r\n" + SMUGGLED), 400),
    "unknown-transfer-coding": Case(post("Transfer-Encoding: xchunked",
                                         body=b"0\r\n\r\n" + SMUGGLED), 400),
    # llhttp takes these as chunked; a proxy in front may take them otherwise
    "identity-then-chunked": Case(post("Transfer-Encoding: identity, chunked",
                                       body=b"0\r\n\r\n" + SMUGGLED), 400),
    "gzip-then-chunked": Case(post("Transfer-Encoding: gzip, chunked",
                                   body=b"0\r\n\r\n" + SMUGGLED), 400),
    "space-before-colon-te": Case(post("Transfer-Encoding : chunked",
                                       body=b"0\r\n\r\n" + SMUGGLED), 400),
    "content-length-negative": Case(post("Content-Length: -1", body=SMUGGLED), 400),
    "content-length-plus-sign": Case(post("Content-Length: +5", body=b"hello" + SMUGGLED), 400),
    "content-length-hex": Case(post("Content-Length: 0x5", body=b"hello" + SMUGGLED), 400),
    "content-length-overflow": Case(post("Content-Length: 99999999999999999999", body=SMUGGLED), 400),
    "bad-chunk-size": Case(post("Transfer-Encoding: chunked",
                                body=b"zz\r\nhello\r\n0\r\n\r\n" + SMUGGLED), 400),
    "chunk-bare-lf": Case(post("Transfer-Encoding: chunked",
                               body=b"5\nhello\n0\n\n" + SMUGGLED), 400),
    "body-over-1-mib": Case(post("Content-Length: 2097152", body=b"x" * (2 << 20)), 413),
    # RFC 9112 §3.2.2: a server MUST accept absolute-form; it routes by path.
    "absolute-form-target": Case(b"GET http://evil.example/ HTTP/1.1\r\nHost: x\r\n\r\n", 200),
    "asterisk-target": Case(b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "connect-method": Case(b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "unknown-method": Case(b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "lowercase-method": Case(b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "http-1.2": Case(b"GET / HTTP/1.1.1\r\nHost: x\r\n\r\n", 400),
    "http2-preface": Case(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    "nul-in-path": Case(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "space-in-path": Case(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "empty-header-name": Case(b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n", 400),
    "tls-client-hello": Case(bytes.fromhex("16030100a5010000a10303") + bytes(100), 400),
    "trace-not-routed": Case(b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", 405),
}

# RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a
# Host header or with more than one.
HOST_CASES = {
    "duplicate-host": Case(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "missing-host-http-1.1": Case(b"GET / HTTP/1.1\r\n\r\n", 400),
}


def make_app(hits: list[str]):
    app = create_app()
    app.use(websocket())
    app.ws("/ws", lambda ws: ws.on("message", ws.send))

    @app.post("/body")
    async def body(ctx):
        return {"length": len(await ctx.body())}

    @app.get("/secret")
    def secret():
        hits.append("secret")
        return "smuggled"

    @app.get("/")
    def index():
        return "ok"

    return app


@pytest.fixture(scope="module")
def hits() -> list[str]:
    return []


@pytest.fixture(scope="module")
def server(hits: list[str]) -> Iterator[Running]:
    with serving(make_app(hits)) as running:
        yield running


@contextlib.contextmanager
def bystander(server: Running) -> Iterator[None]:
    """A WebSocket client open across the block and answered after it."""
    with ws_connect(server.url("/ws")) as ws:
        ws.send("before")
        assert ws.recv(timeout=5) == "before"
        yield
        ws.send("after")
        assert ws.recv(timeout=5) == "after"


def first_status(port: int, data: bytes) -> int:
    """Send ``data``; the status of the first response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        send_then_half_close(sock, data)
        out = read_to_close(sock, stop=b"\r\n")
    assert out.startswith(b"HTTP/1.1 "), f"no HTTP answer: {out[:100]!r}"
    return int(out[9:12])


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_smuggling_and_malformed_http(server: Running, hits: list[str], case: Case) -> None:
    with bystander(server):
        assert first_status(server.port, case.request) == case.status
    assert server.call(lambda: list(hits)) == [], "a smuggled request reached the app"


@pytest.mark.parametrize("case", HOST_CASES.values(), ids=HOST_CASES.keys())
def test_host_header_rules(server: Running, case: Case) -> None:
    assert first_status(server.port, case.request) == case.status


def test_body_of_a_get_is_not_a_second_request(server: Running, hits: list[str]) -> None:
    # The Content-Length body of a GET is body, not a pipelined request.
    request = (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(SMUGGLED)).encode()
               + b"\r\nConnection: close\r\n\r\n" + SMUGGLED)
    assert first_status(server.port, request) == 200
    assert server.call(lambda: list(hits)) == []
