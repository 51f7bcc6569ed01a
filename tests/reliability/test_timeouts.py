"""Liveness: peers that go silent, dribble their handshake, sit idle, or
never answer our close frame are each cut within their timeout.

Timeouts here are short (0.3-1 s) so the tests are quick. The bounds we
wait for are the timeout plus generous slack (the server checks deadlines
in a periodic sweep, and the machine is shared): they guard against a
server that never cuts, they do not measure how fast it cuts. The other
way round, a client that must keep up (answer pings, keep talking) gets
a full second each time: the server runs in a thread of this process, and
on a loaded machine a client thread can wait that long for its turn.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any, Iterator

import pytest

from fastws import create_app, websocket

from ..conftest import Running, serving
from ..integration.clients import wait_for, ws_connect
from ..integration.rawws import (OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, RawClient, handshake_request,
                                 masked_frame, raw_upgrade)
from .slow_client import SlowClient
from .wire import read_to_close

PING_INTERVAL = 0.3
IDLE_TIMEOUT = 1.0
HANDSHAKE_TIMEOUT = 1.0
CLOSE_TIMEOUT = 0.5
# Sweep period, scheduling on a busy 2-core machine, the transport close.
SLACK = 3.0


class Seen:
    """What the app's handlers saw, per ``?id=``; written on the server loop."""

    def __init__(self) -> None:
        self.closes: dict[str, list[tuple[int, str]]] = {}
        self.sockets: dict[str, Any] = {}


@pytest.fixture
def seen() -> Seen:
    return Seen()


@pytest.fixture
def server(seen: Seen) -> Iterator[Running]:
    """Heartbeat every 0.3 s, 1 s to answer, 1 s for a request, 0.5 s to
    answer our close; /echo echoes and records its closes, / answers HTTP."""
    app = create_app()
    app.use(websocket(ping_interval=PING_INTERVAL, idle_timeout=IDLE_TIMEOUT,
                      handshake_timeout=HANDSHAKE_TIMEOUT, close_timeout=CLOSE_TIMEOUT))

    @app.ws("/echo")
    def echo(ws, ctx):
        conn = ctx.get_query("id") or "anonymous"
        seen.sockets[conn] = ws
        ws.on("message", ws.send)
        ws.on("close", lambda code, reason: seen.closes.setdefault(conn, []).append((code, reason)))

    @app.get("/")
    def index():
        return "ok"

    big = "b" * 100_000

    @app.get("/big")
    def big_page():
        return big

    with serving(app) as running:
        yield running


def closes_of(server: Running, seen: Seen, conn: str, timeout: float) -> list[tuple[int, str]]:
    """The close handler calls for ``conn``, once there is one (else fail after ``timeout``)."""
    return wait_for(lambda: server.call(lambda: list(seen.closes.get(conn, ()))),
                    timeout=timeout, what=f"the close handler of {conn}")


def read_until_gone(client: RawClient, timeout: float) -> tuple[list[Any], str]:
    """Frames from the server until it ends the connection; also how it
    ended: "eof" (FIN) or "reset" (RST). Fails if it is still open after ``timeout``."""
    frames = []
    client.sock.settimeout(timeout)
    while True:
        try:
            frames.append(client.read_frame())
        except EOFError:
            return frames, "eof"
        except ConnectionResetError:
            return frames, "reset"
        except AssertionError as exc:
            raise AssertionError(f"server kept the connection open for {timeout}s; "
                                 f"frames so far {frames}") from exc


def test_silent_peer_is_closed_1011_while_a_live_one_stays(server: Running, seen: Seen) -> None:
    live = ws_connect(server.url("/echo?id=live"), ping_interval=None)
    try:
        # Upgraded, then silent: it answers no ping and sends nothing.
        silent = raw_upgrade(server.port, "/echo?id=silent")
        with silent:
            frames, _ = read_until_gone(silent, PING_INTERVAL + IDLE_TIMEOUT + SLACK)
        assert frames and frames[0].opcode == OP_PING, frames
        closing = [f for f in frames if f.opcode == OP_CLOSE]
        if closing:       # the close frame is sent, though the link may be cut before it lands
            assert (closing[0].close_code, closing[0].close_reason) == (1011, "keepalive timeout")
        assert closes_of(server, seen, "silent", SLACK) == [(1011, "keepalive timeout")]

        # The well-behaved client answered every ping meanwhile: still open
        # after several more heartbeats, and still echoed.
        time.sleep(2 * (PING_INTERVAL + IDLE_TIMEOUT))
        live.send("still here")
        assert live.recv(timeout=5) == "still here"
        assert server.call(lambda: "live" not in seen.closes)
    finally:
        live.close()
    assert closes_of(server, seen, "live", SLACK)[0][0] == 1000


def test_peer_that_only_pongs_late_is_closed(server: Running, seen: Seen) -> None:
    # Answers the first ping, then stops: the second ping goes unanswered.
    with raw_upgrade(server.port, "/echo?id=once") as client:
        client.sock.settimeout(PING_INTERVAL + SLACK)
        first = client.read_frame()
        assert first.opcode == OP_PING
        client.send(masked_frame(OP_PONG, first.payload))
        frames, _ = read_until_gone(client, 2 * (PING_INTERVAL + IDLE_TIMEOUT) + SLACK)
    assert frames and frames[0].opcode == OP_PING, frames
    assert closes_of(server, seen, "once", SLACK) == [(1011, "keepalive timeout")]


def test_traffic_counts_as_liveness(server: Running, seen: Seen) -> None:
    # A client that never answers pings but keeps talking is alive: any frame counts.
    with raw_upgrade(server.port, "/echo?id=chatty") as client:
        client.sock.settimeout(5)
        # Twice as long as an unanswered ping takes to get a client cut.
        deadline = time.monotonic() + 2 * (PING_INTERVAL + IDLE_TIMEOUT)
        n = 0
        while time.monotonic() < deadline:
            client.send(masked_frame(OP_TEXT, f"m{n}"))
            while True:
                frame = client.read_frame()
                if frame.opcode == OP_PING:
                    continue            # ignored on purpose
                assert (frame.opcode, frame.payload) == (OP_TEXT, f"m{n}".encode()), frame
                break
            n += 1
            time.sleep(PING_INTERVAL / 3)
        assert server.call(lambda: "chatty" not in seen.closes)


def dribble(client: RawClient, data: bytes, pause: float, limit: float) -> bytes:
    """Send ``data`` a byte every ``pause`` seconds until the server answers or
    closes; returns what it sent back (b"" for a bare close). Fails if the
    server is still waiting after ``limit`` seconds or the request is all out."""
    deadline = time.monotonic() + limit
    for i in range(len(data)):
        if time.monotonic() > deadline:
            break
        try:
            client.sock.sendall(data[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            return b""
        readable, _, _ = select.select([client.sock], [], [], pause)
        if readable:
            return read_to_close(client.sock)
    raise AssertionError(f"server still reading the request after {limit}s")


def test_dribbling_handshake_gets_408(server: Running) -> None:
    request = handshake_request("/echo?id=dribble")
    assert len(request) * 0.2 > HANDSHAKE_TIMEOUT + SLACK    # it cannot finish in time
    with RawClient(server.port) as client:
        answer = dribble(client, request, 0.2, HANDSHAKE_TIMEOUT + SLACK)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_dribbling_http_request_gets_408(server: Running) -> None:
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"p" * 64 + b"\r\n\r\n"
    with RawClient(server.port) as client:
        answer = dribble(client, request, 0.2, HANDSHAKE_TIMEOUT + SLACK)
    assert answer.startswith(b"HTTP/1.1 408 "), answer


def test_silent_connection_is_dropped(server: Running) -> None:
    with RawClient(server.port, timeout=HANDSHAKE_TIMEOUT + SLACK) as client:
        assert read_all_or_fail(client) == b""


def read_all_or_fail(client: RawClient) -> bytes:
    """What the server sends before closing; fails on the socket timeout."""
    try:
        return read_to_close(client.sock)
    except socket.timeout:
        raise AssertionError("the server kept an idle connection open") from None


def test_idle_keep_alive_connection_is_dropped(server: Running) -> None:
    with RawClient(server.port, timeout=HANDSHAKE_TIMEOUT + SLACK) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        response = client.read_response()
        assert (response.status, response.body) == (200, b"ok")
        assert "close" not in response.tokens("connection")
        # A second request right away is still answered on the same connection...
        client.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert client.read_response().status == 200
        # ...but an idle one is closed, without a response to no request.
        assert bytes(client.buf) + read_all_or_fail(client) == b""


def test_client_that_never_reads_its_responses_is_cut(server: Running) -> None:
    with SlowClient(server.port) as client:
        # 100 x 100 KB of responses: far more than the kernel buffers hold.
        client.send(b"GET /big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 100)
        wait_for(lambda: server.server.connections == 1, what="the connection")
        wait_for(lambda: server.server.connections == 0, timeout=HANDSHAKE_TIMEOUT + SLACK,
                 what="the server to drop a client that never reads")


def test_upgraded_connection_outlives_the_handshake_timeout(server: Running, seen: Seen) -> None:
    with ws_connect(server.url("/echo?id=long")) as ws:
        time.sleep(HANDSHAKE_TIMEOUT * 2)
        ws.send("late")
        assert ws.recv(timeout=5) == "late"
    assert closes_of(server, seen, "long", SLACK) == [(1000, "")]


def test_peer_that_never_answers_close_is_cut(server: Running, seen: Seen) -> None:
    with raw_upgrade(server.port, "/echo?id=mute") as client:
        client.sock.settimeout(5)
        client.send(masked_frame(OP_TEXT, "hi"))
        assert client.read_frame().payload == b"hi"
        ws = wait_for(lambda: server.call(lambda: seen.sockets.get("mute")), what="the socket")
        server.call(lambda: ws.close(4000, "bye"))
        # The close frame comes; we never answer it; the server cuts us.
        frames, _ = read_until_gone(client, CLOSE_TIMEOUT + SLACK)
    # A heartbeat ping may come before the close frame (not answered either).
    frames = [f for f in frames if f.opcode != OP_PING]
    assert [(f.opcode, f.close_code, f.close_reason) for f in frames] == [(OP_CLOSE, 4000, "bye")]
    assert closes_of(server, seen, "mute", SLACK) == [(4000, "bye")]
    time.sleep(CLOSE_TIMEOUT)
    assert server.call(lambda: seen.closes["mute"]) == [(4000, "bye")]    # once


def test_options_are_validated() -> None:
    for bad in ({"ping_interval": 0}, {"ping_interval": -1.0}, {"idle_timeout": 0},
                {"handshake_timeout": 0}, {"close_timeout": -1}, {"ping_interval": "20"}):
        name = next(iter(bad))
        with pytest.raises(ValueError, match=name):
            websocket(**bad)
    websocket(ping_interval=None)       # heartbeat off is allowed
