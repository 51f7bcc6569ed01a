"""HTTP request bodies have a server-wide bound, not only a per-request one.

150 connections each holding a 1 MiB body raised RSS from 49 to 201 MB for up to
10 s: ``MAX_BODY`` bounds one request, nothing bounded them all. Now the bytes of
request bodies all connections hold at once are counted against
``max_request_memory`` (default 64 MiB); past it a request is answered 503 and
its connection closed, and the budget comes back as requests are answered or
connections go.
"""

from __future__ import annotations

import socket

from fastws import create_app, websocket

from ..conftest import serving
from .wire import read_to_close

BUDGET = 4 << 20
PART = 900 * 1024           # of each 1 MiB body, sent and then held back


def body_app():
    app = create_app()
    app.use(websocket())

    @app.post("/upload")
    async def upload(ctx):
        return {"length": len(await ctx.body())}

    return app


def start_upload(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n"
                 + b"b" * PART)
    return sock


def test_bodies_held_by_all_connections_have_a_bound():
    with serving(body_app(), max_request_memory=BUDGET) as srv:
        held = [start_upload(srv.port) for _ in range(8)]
        try:
            # Four fit in 4 MiB (900 KiB each); the rest are refused as they arrive.
            refused = []
            for sock in held:
                sock.settimeout(0.5)
                try:
                    answer = sock.recv(100)
                except TimeoutError:
                    continue
                refused.append(answer[:12])
            assert len(refused) >= 4 and set(refused) == {b"HTTP/1.1 503"}, refused
            assert srv.call(lambda: srv.server.bodies_held) <= BUDGET
        finally:
            for sock in held:
                sock.close()
        # Their bytes come back once they are gone: a whole upload is served.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n"
                         b"Connection: close\r\n\r\n" + b"c" * (1 << 20))
            answer = read_to_close(sock)
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"length":1048576' in answer, answer[:200]
        assert srv.call(lambda: srv.server.bodies_held) == 0


def test_http_connections_per_address_have_a_bound():
    app = body_app()

    @app.get("/")
    def index(ctx):
        return "ok"

    def get(sock: socket.socket) -> bytes:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return sock.recv(4096)

    with serving(app, max_http_connections_per_ip=2) as srv:
        first, second = (socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                         for _ in range(2))
        with first, second:
            assert get(first).startswith(b"HTTP/1.1 200 ")
            assert get(second).startswith(b"HTTP/1.1 200 ")
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as third:
                third.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = read_to_close(third)
            assert answer.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 1" in answer, answer
            assert get(first).startswith(b"HTTP/1.1 200 "), "the two held ones go on"
        # Once they are gone, the address may connect again.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as again:
            assert get(again).startswith(b"HTTP/1.1 200 ")
