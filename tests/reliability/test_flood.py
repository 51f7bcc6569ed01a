"""Flood: one client sends as fast as it can under rate_limit=(100, 20),
while 50 others do paced echo round-trips (50 messages/s each, well under
the limit) and must all complete, whatever the flooder's fate.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Iterator

import pytest
from websockets.asyncio.client import connect as ws_async_connect

from fastws import create_app, websocket

from ..conftest import Running, serving
from ..integration.clients import wait_for
from ..integration.rawws import (OP_CLOSE, OP_TEXT, RawClient, close_payload, hand_frame,
                                 masked_frame, raw_upgrade)

RATE, BURST = 100.0, 20
ECHO_CLIENTS = 50
ROUND_TRIPS = 20
PACE = 0.02                    # seconds between one echo client's messages
BATCH = 1000                   # frames per flooder write
MAX_BATCHES = 2000             # hard bound on what the flooder sends


class Seen:
    """Per ``?id=``: messages the handler saw, close calls, the socket."""

    def __init__(self) -> None:
        self.messages: dict[str, int] = {}
        self.closes: dict[str, list[tuple[int, str]]] = {}
        self.sockets: dict[str, Any] = {}


def flood_server(policy: str, seen: Seen) -> Any:
    """An echo app under the rate limit with ``policy``."""
    app = create_app()
    app.use(websocket(rate_limit=(RATE, BURST), rate_limit_policy=policy, close_timeout=2))

    @app.ws("/echo")
    def echo(ws, ctx):
        conn = ctx.get_query("id") or "anonymous"
        seen.sockets[conn] = ws

        @ws.on("message")
        def on_message(data):
            seen.messages[conn] = seen.messages.get(conn, 0) + 1
            ws.send(data)

        ws.on("close", lambda code, reason: seen.closes.setdefault(conn, []).append((code, reason)))

    return app


@pytest.fixture(params=["close", "drop"])
def flood(request: pytest.FixtureRequest) -> Iterator[tuple[str, Running, Seen]]:
    """(policy, running server, what it saw), for each policy."""
    seen = Seen()
    with serving(flood_server(request.param, seen)) as running:
        yield request.param, running, seen


async def paced_echoes(url: str) -> list[int]:
    """ECHO_CLIENTS clients, each doing ROUND_TRIPS paced round-trips at
    once; returns how many each completed (all must complete)."""
    async def one(i: int) -> int:
        done = 0
        async with ws_async_connect(f"{url}?id=echo{i}", proxy=None, compression=None,
                                    open_timeout=10, close_timeout=5) as ws:
            for n in range(ROUND_TRIPS):
                await ws.send(f"{i}:{n}")
                assert await asyncio.wait_for(ws.recv(), 10) == f"{i}:{n}"
                done += 1
                await asyncio.sleep(PACE)
        return done
    return await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(ECHO_CLIENTS))), 60)


class Flooder(threading.Thread):
    """Writes batches of tiny text frames as fast as the socket takes them,
    until the server stops it or MAX_BATCHES is reached, or ``stop`` is set."""

    def __init__(self, client: RawClient) -> None:
        super().__init__(name="flooder", daemon=True)
        self.client = client
        self.sent = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.batch = b"".join(masked_frame(OP_TEXT, f"f{i % 10}") for i in range(BATCH))

    def run(self) -> None:
        try:
            for _ in range(MAX_BATCHES):
                if self.stop.is_set():
                    return
                self.client.sock.sendall(self.batch)
                self.sent += BATCH
        except OSError as exc:          # the server cut us: expected under "close"
            self.error = exc


def test_flooder_is_rate_limited_while_others_echo(flood: tuple[str, Running, Seen]) -> None:
    policy, server, seen = flood
    client = raw_upgrade(server.port, "/echo?id=flooder")
    client.sock.settimeout(10)
    flooder = Flooder(client)
    try:
        flooder.start()
        completed = asyncio.run(paced_echoes(server.url("/echo")))
        flooder.stop.set()
        flooder.join(30)
        assert not flooder.is_alive()
        # Every paced client completed every round-trip, was never limited.
        assert completed == [ROUND_TRIPS] * ECHO_CLIENTS
        counts = server.call(lambda: {k: v for k, v in seen.messages.items() if k != "flooder"})
        assert sorted(counts.values()) == [ROUND_TRIPS] * ECHO_CLIENTS
        assert server.call(lambda: sum(ws.dropped for k, ws in seen.sockets.items()
                                       if k != "flooder")) == 0

        if policy == "close":
            closes = wait_for(lambda: server.call(lambda: list(seen.closes.get("flooder", ()))),
                              what="the flooder's close handler")
            assert closes == [(1008, "rate limit exceeded")]
            # The flooder got at most a burst of echoes, then the 1008 close frame.
            echoes, close = read_echoes_then_close(client)
            assert close is not None, "flooder saw no close frame"
            assert (close.close_code, close.close_reason) == (1008, "rate limit exceeded")
            handled = server.call(lambda: seen.messages.get("flooder", 0))
            assert handled == echoes and handled >= BURST
            assert server.call(lambda: server.app.dropped) == 0
        else:
            assert flooder.error is None, f"the flooder was cut under 'drop': {flooder.error!r}"
            sent = flooder.sent
            # Every frame was either handled or dropped, none lost or doubled.
            wait_for(lambda: server.call(lambda: seen.messages.get("flooder", 0)
                                         + seen.sockets["flooder"].dropped) == sent,
                     timeout=30, what="the server to account for every flooder frame")
            handled = server.call(lambda: seen.messages.get("flooder", 0))
            dropped = server.call(lambda: seen.sockets["flooder"].dropped)
            assert 0 < handled < sent and dropped > 0
            assert server.call(lambda: server.app.dropped) == dropped
            print(f"\ndrop: flooder sent {sent}, handler saw {handled}, dropped {dropped}")
            # Still connected and served once it slows down.
            echoes, close = read_echoes(client, handled)
            assert close is None
            time.sleep(BURST / RATE)          # the bucket refills
            client.send(masked_frame(OP_TEXT, "calm"))
            assert client.read_frame().payload == b"calm"
            client.send(hand_frame(OP_CLOSE, close_payload(1000)))
            assert client.read_frame().close_code == 1000
            assert server.call(lambda: seen.closes.get("flooder")) in (None, [(1000, "")])
    finally:
        flooder.stop.set()
        client.close()


def read_echoes_then_close(client: RawClient) -> tuple[int, Any]:
    """Count echo frames until the close frame; (echoes, close frame or None
    if the connection ended without one)."""
    echoes = 0
    while True:
        try:
            frame = client.read_frame()
        except (EOFError, ConnectionResetError):
            return echoes, None
        if frame.opcode == OP_CLOSE:
            return echoes, frame
        echoes += 1


def read_echoes(client: RawClient, n: int) -> tuple[int, Any]:
    """Read exactly ``n`` echo frames (or stop at a close frame)."""
    for i in range(n):
        frame = client.read_frame()
        if frame.opcode == OP_CLOSE:
            return i, frame
        assert frame.opcode == OP_TEXT
    return n, None


def test_rate_limit_options_are_validated() -> None:
    for bad in ({"rate_limit": (0, 10)}, {"rate_limit": (100, 0)}, {"rate_limit": 100},
                {"rate_limit": (100,)}, {"rate_limit_policy": "ignore"}):
        with pytest.raises(ValueError, match="rate_limit"):
            websocket(**bad)
    websocket(rate_limit=(0.5, 1), rate_limit_policy="drop")
