"""Request heads that never end, and response heads a route cannot send.

- A header line (or name, or request line) without its line end: httptools
  reports a header only when its line ends, and grew the value by concatenation
  until then, so one connection could push megabytes at quadratic cost until the
  10 s timeout. Now every byte of a head is counted as it is fed to the parser,
  and the head is refused with 431 as soon as it reaches ``MAX_HEAD_BYTES``,
  well before the timeout.
- A response header built from user input (CR, LF, NUL, a character outside
  Latin-1) raised where the response was written: no answer, a hung connection,
  no access line. Now: 500, a log line naming the header, an access line, and
  the connection closed.
- The access log escapes what a client sends (a quote in the path could end the
  field and forge the rest of the line).
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from fastws import create_app, websocket
from fastws.http.request import MAX_HEAD_BYTES

from ..conftest import serving
from .wire import read_to_close

CHUNK = 16 * 1024
ANSWER_WITHIN = 5.0     # well under the 10 s handshake_timeout that ended it before


def app_with_routes():
    app = create_app()
    app.use(websocket())

    @app.get("/redirect")
    def redirect(ctx):
        return ctx.text("moved", status=302, headers={"Location": ctx.get_query("to", "/")})

    @app.get("/")
    def index(ctx):
        return "ok"

    @app.post("/upload")
    async def upload(ctx):
        return {"length": len(await ctx.body())}

    return app


def first_answer_while_sending(port: int, head_start: bytes, filler: bytes) -> tuple[bytes, int]:
    """Send ``head_start``, then ``filler`` chunk after chunk (never a line end)
    until the server answers; the answer and how many bytes went out."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WITHIN) as sock:
        sock.sendall(head_start)
        sent = len(head_start)
        deadline = time.monotonic() + ANSWER_WITHIN
        sock.setblocking(False)
        answer = b""
        while time.monotonic() < deadline and b"\r\n" not in answer:
            try:
                answer += sock.recv(65536)
                continue
            except BlockingIOError:
                pass
            except ConnectionResetError:
                break
            if sent < 8 * MAX_HEAD_BYTES:
                try:
                    sent += sock.send(filler[:CHUNK])
                except (BlockingIOError, BrokenPipeError, ConnectionResetError):
                    time.sleep(0.01)
            else:
                time.sleep(0.01)
        sock.setblocking(True)
        try:
            answer += read_to_close(sock, stop=b"\r\n")
        except OSError:
            pass
        return answer, sent


@pytest.mark.parametrize("head_start, what", [
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: ", "a header value"),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-", "a header name"),
])
def test_a_head_line_that_never_ends_is_refused_at_the_budget(head_start: bytes, what: str):
    with serving(app_with_routes()) as srv:
        answer, sent = first_answer_while_sending(srv.port, head_start, b"a" * CHUNK)
        assert answer.startswith(b"HTTP/1.1 431 "), \
            f"{what} growing without end: {answer[:80]!r} after {sent:,} bytes"
        # Before the server could read past the budget it had to answer: what
        # went out is the budget plus what the kernel buffers held meanwhile.
        assert sent >= MAX_HEAD_BYTES
        # The server serves others at once.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as other:
            other.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert read_to_close(other).startswith(b"HTTP/1.1 200 ")


def test_a_request_line_that_never_ends_is_refused():
    # A guard, not a regression test: httptools reports a URL as it arrives,
    # so MAX_URL refused this (414) before the head budget existed.
    with serving(app_with_routes()) as srv:
        answer, _ = first_answer_while_sending(srv.port, b"GET /", b"a" * CHUNK)
        assert answer[:12] in (b"HTTP/1.1 414", b"HTTP/1.1 431"), answer[:80]


def test_a_trailer_line_that_never_ends_is_refused():
    # Trailer fields go through httptools' header callbacks too, after the body.
    start = (b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"3\r\nabc\r\n0\r\nX-T: ")
    with serving(app_with_routes()) as srv:
        answer, sent = first_answer_while_sending(srv.port, start, b"a" * CHUNK)
        assert answer.startswith(b"HTTP/1.1 431 "), f"{answer[:80]!r} after {sent:,} bytes"


def test_a_chunked_body_of_many_small_chunks_is_no_head_too_large():
    body = b"".join(b"1\r\n" + bytes([97 + i % 26]) + b"\r\n" for i in range(20_000)) + b"0\r\n\r\n"
    with serving(app_with_routes()) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n" + body)
        answer = read_to_close(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"length":20000' in answer, answer[:200]


def test_a_head_within_the_budget_is_served():
    header = b"X-Big: " + b"v" * 15000 + b"\r\n"
    with serving(app_with_routes()) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        # Sent a byte at a time for its first part, then the rest: the budget
        # counts bytes, however they arrive.
        request = b"GET / HTTP/1.1\r\nHost: x\r\n" + header + b"Connection: close\r\n\r\n"
        for b in request[:64]:
            sock.send(bytes([b]))
        sock.sendall(request[64:])
        assert read_to_close(sock).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("to, shown", [
    ("/x%0d%0aSet-Cookie:%20evil=1", "'\\r'"),
    ("/x%00y", "'\\x00'"),
    ("/x%E2%80%A8", "'\\u2028'"),
])
def test_a_header_http_cannot_carry_answers_500_and_closes(to: str, shown: str,
                                                           caplog: pytest.LogCaptureFixture):
    with serving(app_with_routes(), access_log=True) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=ANSWER_WITHIN) as sock:
        caplog.set_level(logging.INFO, logger="fastws")
        # A second request pipelined behind it: the connection closes after the 500.
        sock.sendall(f"GET /redirect?to={to} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                     + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        out = read_to_close(sock)
    assert out.startswith(b"HTTP/1.1 500 "), out[:200]
    assert out.count(b"HTTP/1.1 ") == 1, "answered past the 500 that closes the connection"
    assert b"evil" not in out and b"\x00" not in out
    assert f"header 'Location' contains {shown}" in caplog.text, caplog.text
    assert any(r.name == "fastws.access" and getattr(r, "status", None) == 500
               for r in caplog.records), "no access line for the 500"


def test_the_access_log_escapes_what_a_client_sent(caplog: pytest.LogCaptureFixture):
    with serving(app_with_routes(), access_log=True) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        caplog.set_level(logging.INFO, logger="fastws.access")
        # A quote (the parser allows it in a target) must not end the field.
        sock.sendall(b'GET /x"-"admin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')
        assert read_to_close(sock).startswith(b"HTTP/1.1 404 ")
    lines = [r.getMessage() for r in caplog.records if r.name == "fastws.access"]
    assert lines and '"GET /x\\"-\\"admin HTTP/1.1" 404' in lines[-1], lines
