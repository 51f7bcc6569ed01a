"""Proxy headers through a real server: one header family, addresses checked.

From a trusted proxy (127.0.0.1, the default), a client's own ``Forwarded``
made it 6.6.6.6 (and https) although the proxy wrote ``X-Forwarded-For``, so
rotating it opened any number of sockets past ``max_connections_per_ip``; an
entry that was no address went into the access line as it came; and spellings
of one IPv6 address were different clients. Each case here held before.
"""

from __future__ import annotations

import logging
import socket

import pytest

from fastws import create_app, websocket

from ..conftest import serving
from ..integration.rawws import handshake_request, new_key, read_head


def limited_app():
    app = create_app()
    app.use(websocket(max_connections_per_ip=2))
    app.ws("/echo", lambda ws: ws.on("message", ws.send))

    @app.get("/who")
    def who(ctx):
        return {"remote": ctx.remote[0], "scheme": ctx.scheme}

    return app


def upgrade(port: int, *headers: tuple[str, str]) -> tuple[int, socket.socket]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(handshake_request("/echo", key=new_key(), extra=list(headers)))
    return int(read_head(sock)[9:12]), sock


def statuses(port: int, headers_per_try: list[list[tuple[str, str]]]) -> list[int]:
    held, out = [], []
    try:
        for headers in headers_per_try:
            status, sock = upgrade(port, *headers)
            held.append(sock)
            out.append(status)
    finally:
        for sock in held:
            sock.close()
    return out


def test_a_clients_forwarded_header_does_not_name_it_under_the_default():
    rotating = [[("Forwarded", f"for=6.6.6.{i};proto=https"), ("X-Forwarded-For", "10.9.9.9")]
                for i in range(4)]
    with serving(limited_app(), proxy_headers=True) as srv:
        # All one client, 10.9.9.9, as the proxy said: two sockets, then 429.
        assert statuses(srv.port, rotating) == [101, 101, 429, 429]


def test_the_forwarded_family_when_chosen():
    with serving(limited_app(), proxy_headers=True, forwarded_header="forwarded") as srv:
        rotating = [[("Forwarded", f"for=6.6.6.{i}")] for i in range(4)]
        assert statuses(srv.port, rotating) == [101, 101, 101, 101]


def test_spellings_of_one_ipv6_address_are_one_client():
    spellings = ["2001:db8::1", "2001:DB8::1", "2001:db8:0::1", "[2001:db8::1]:4711"]
    with serving(limited_app(), proxy_headers=True) as srv:
        assert statuses(srv.port, [[("X-Forwarded-For", s)] for s in spellings]) == \
            [101, 101, 429, 429]


def test_an_entry_that_is_no_address_never_reaches_the_log(caplog: pytest.LogCaptureFixture):
    forged = '1.1.1.1" - "GET /admin'
    with serving(limited_app(), proxy_headers=True, access_log=True) as srv, \
            socket.create_connection(("127.0.0.1", srv.port), timeout=5) as sock:
        caplog.set_level(logging.INFO, logger="fastws.access")
        sock.sendall(b"GET /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     + f"X-Forwarded-For: {forged}\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert b'"remote":"127.0.0.1"' in answer.replace(b" ", b""), answer
    lines = [r.getMessage() for r in caplog.records if r.name == "fastws.access"]
    assert lines and all("/admin" not in line for line in lines), lines
