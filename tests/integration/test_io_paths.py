"""The two I/O paths: plain TCP sockets owned by fastws's poller (Linux, the
default) and uvloop's transports (``FASTWS_IO=transport``; TLS and Unix sockets
always). The whole suite runs on the default path, and ``.ci/run`` runs the
integration and reliability sets again on the other; these tests check which path
a connection takes and what only the owned path has to get right itself: its
epoll set's life, a socket that dies while bytes wait for it, a client's half close.
"""

from __future__ import annotations

import os
import socket
import sys

import pytest

from fastws import create_app, websocket
from tests.conftest import serving
from tests.integration.clients import (client_frame, raw_ws, read_frame, recv, wait_for,
                                       ws_connect)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the owned path is Linux's (epoll)")


def echo_app(events: list | None = None, **options):
    app = create_app()
    app.use(websocket(**options))

    @app.ws("/echo")
    def echo(ws, ctx):
        ws.on("message", lambda data: ws.send(data))
        if events is not None:
            ws.on("close", lambda code, reason: events.append(("close", code)))

    @app.get("/hello")
    def hello(ctx):
        return ctx.text("hello")

    return app


def transport_names(srv) -> list[str]:
    return srv.call(lambda: sorted(type(p.transport).__name__ for p in srv.server._connections))


@linux_only
@pytest.mark.parametrize("mode, expected", [("owned", "OwnedTransport"),
                                            ("transport", "TCPTransport"),
                                            ("", "OwnedTransport")])
def test_plain_tcp_takes_the_path_fastws_io_names(monkeypatch, mode, expected):
    monkeypatch.setenv("FASTWS_IO", mode)
    with serving(echo_app()) as srv:
        with ws_connect(srv.url("/echo")) as a, ws_connect(srv.url("/echo")) as b:
            a.send("one")
            b.send(b"two")
            assert (recv(a), recv(b)) == ("one", b"two")
            assert transport_names(srv) == [expected, expected]


def test_an_unknown_io_mode_is_refused_at_start(monkeypatch):
    monkeypatch.setenv("FASTWS_IO", "epoll")
    with pytest.raises(ValueError, match="FASTWS_IO must be 'owned' or 'transport'"):
        with serving(echo_app()):
            pass


@linux_only
def test_the_poller_closes_its_epoll_set_when_the_server_is_done(monkeypatch):
    monkeypatch.setenv("FASTWS_IO", "owned")
    with serving(echo_app()) as srv:
        poller = srv.server._poller
        fd = poller.fileno()
        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventpoll]"
        a = ws_connect(srv.url("/echo"))
        a.send("x")
        assert recv(a) == "x"
        assert srv.call(lambda: poller.connections) == 1
        # Left open: the shutdown closes it (1001), then the poller goes.
    a.close()
    assert poller.fileno() == -1 and poller.connections == 0


@linux_only
def test_a_socket_reset_while_the_server_holds_bytes_for_it(monkeypatch):
    """A client that stops reading makes the poller buffer and wait for
    writability; its reset reaches the close handler as 1006, and nobody else
    notices."""
    monkeypatch.setenv("FASTWS_IO", "owned")
    events: list = []
    app = echo_app(events, max_backpressure=1 << 24)    # never a slow consumer's 1008
    big = b"x" * (1 << 20)

    @app.ws("/flood")
    def flood(ws, ctx):
        ws.on("close", lambda code, reason: events.append(("flood-close", code)))
        for _ in range(8):
            ws.send(big)

    with serving(app) as srv:
        sock, _ = raw_ws(srv.port, "/flood")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # Until the server holds bytes the kernel would not take.
        wait_for(lambda: srv.call(
            lambda: [p.transport.get_write_buffer_size() for p in srv.server._connections
                     if p.ws is not None][0] > 0), what="bytes buffered in the transport")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()    # linger 0: a reset
        wait_for(lambda: ("flood-close", 1006) in events, what="close 1006 after the reset")
        with ws_connect(srv.url("/echo")) as other:
            other.send("still here")
            assert recv(other) == "still here"


@linux_only
def test_a_half_close_from_the_client_ends_the_connection(monkeypatch):
    monkeypatch.setenv("FASTWS_IO", "owned")
    events: list = []
    with serving(echo_app(events)) as srv:
        sock, buf = raw_ws(srv.port, "/echo")
        sock.sendall(client_frame(0x1, b"before"))
        assert read_frame(sock, buf) == (0x1, b"before")
        sock.shutdown(socket.SHUT_WR)
        wait_for(lambda: ("close", 1006) in events, what="close 1006 after the client's FIN")
        assert srv.call(lambda: len(srv.server._connections)) == 0
        sock.close()


@linux_only
def test_many_sockets_ready_at_once_are_all_served(monkeypatch):
    """Hundreds of sockets readable in the same wake-up: each read, each
    answered, in order per socket."""
    monkeypatch.setenv("FASTWS_IO", "owned")
    with serving(echo_app()) as srv:
        socks = [raw_ws(srv.port, "/echo") for _ in range(300)]
        for i, (sock, _) in enumerate(socks):
            sock.sendall(client_frame(0x1, f"{i}-a".encode()) + client_frame(0x1, f"{i}-b".encode()))
        for i, (sock, buf) in enumerate(socks):
            assert read_frame(sock, buf) == (0x1, f"{i}-a".encode())
            assert read_frame(sock, buf) == (0x1, f"{i}-b".encode())
            sock.close()


@linux_only
def test_http_keep_alive_on_the_owned_path(monkeypatch):
    monkeypatch.setenv("FASTWS_IO", "owned")
    with serving(echo_app()) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            request = f"GET /hello HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode()
            sock.sendall(request * 3)
            got = b""
            while got.count(b"hello") < 3:
                chunk = sock.recv(65536)
                assert chunk, got
                got += chunk
            assert got.count(b"HTTP/1.1 200") == 3
            assert transport_names(srv) == ["OwnedTransport"]


@pytest.mark.parametrize("mode", ["owned", "transport"])
def test_a_client_that_half_closes_after_its_request_gets_the_answer(monkeypatch, mode):
    """The FIN is read while the handler still works: the answer goes out all
    the same, then the connection closes (it used to close unanswered)."""
    import asyncio

    monkeypatch.setenv("FASTWS_IO", mode)
    app = echo_app()

    @app.get("/slow")
    async def slow(ctx):
        await asyncio.sleep(0.2)
        return ctx.text("late but here")

    with serving(app) as srv:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
            sock.sendall(f"GET /slow HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n\r\n".encode())
            sock.shutdown(socket.SHUT_WR)
            got = b""
            while chunk := sock.recv(65536):
                got += chunk
        assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"late but here"), got
        wait_for(lambda: srv.call(lambda: len(srv.server._connections)) == 0,
                 what="the connection closed after the answer")


@linux_only
def test_a_large_message_to_a_slow_reader_arrives_intact(monkeypatch):
    """Written in many partial writes as the reader takes a little at a time:
    every byte in order (the transport resumes the first piece where the
    kernel stopped)."""
    monkeypatch.setenv("FASTWS_IO", "owned")
    payload = bytes(range(256)) * (12 * 1024 + 7)        # about 3 MiB, no period of 64 KiB
    app = create_app()
    app.use(websocket(max_backpressure=1 << 23))

    @app.ws("/big")
    def big(ws, ctx):
        ws.send(payload)
        ws.send(b"after")

    with serving(app) as srv:
        sock, buf = raw_ws(srv.port, "/big")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        want = len(payload) + 10 + 7            # the big frame's head, and the small frame
        while len(buf) < want:
            chunk = sock.recv(16384)
            assert chunk, "server closed early"
            buf.extend(chunk)
        assert read_frame(sock, buf) == (0x2, payload)
        assert read_frame(sock, buf) == (0x2, b"after")
        sock.close()
