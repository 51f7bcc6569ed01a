"""Slow consumers: one socket stops reading while the others keep up.

The room test runs the server in a child process (its RSS is the point) and
the 99 fast receivers plus the publisher in the C load generator
(bench/loadgen.c, fanout mode): it keeps a window of 64 KiB messages in
flight, checks every receiver's sequence numbers, and counts gaps and
reordering. The slow consumer is a raw socket with a tiny receive buffer
that reads nothing until the publisher is done.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from fastws import create_app, websocket

from ..conftest import serving
from ..integration.clients import wait_for
from ..integration.rawws import (OP_BINARY, OP_CLOSE, OP_PING, OP_TEXT, Frame, close_payload,
                                 hand_frame, masked_frame)
from .procs import ServerProcess, build_loadgen
from .slow_client import SlowClient

RECEIVERS = 99
MESSAGE = 64 * 1024
# At most WINDOW messages wait for the slowest fast receiver, so a fast
# receiver never holds more than WINDOW * MESSAGE: well under the limit.
WINDOW = 2
MAX_BACKPRESSURE = 256 * 1024
# Publishing time: about 3,000 messages of 64 KiB (~200 MB) on a quiet
# 2-core machine; the guard below is for hangs only.
PUBLISH_SECONDS = 10.0
# Python heap, allocator rounding, read buffers, the load generator's 100
# connections and the frames in flight at one moment: fixed, not per byte sent.
RSS_SLACK_KIB = 32 * 1024


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C load generator, compiled for this module."""
    return build_loadgen(tmp_path_factory.mktemp("loadgen"))


def run_fanout(loadgen: Path, port: int) -> dict[str, Any]:
    """99 receivers and a publisher on /fanout for PUBLISH_SECONDS."""
    argv = [str(loadgen), "fanout", "--port", str(port), "--path", "/fanout",
            "--receivers", str(RECEIVERS), "--size", str(MESSAGE), "--window", str(WINDOW),
            "--warmup", "0.2", "--duration", str(PUBLISH_SECONDS), "--drain", "10",
            "--stall", "10"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=PUBLISH_SECONDS + 120)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"loadgen printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def read_until_quiet(client: SlowClient, server: ServerProcess) -> list[Frame]:
    """Every frame the server has for ``client``: read until the server holds
    nothing more for it (or closed it). Bounded by a 60 s guard."""
    frames: list[Frame] = []
    client.sock.settimeout(0.5)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            frame = client.read_frame()
        except AssertionError:          # nothing within 0.5 s: is anything left?
            info = server.stats()["sockets"]["slow"]
            if info["buffered"] == 0 and info["drains"] > 0:
                return frames
            continue
        except EOFError:
            return frames
        frames.append(frame)
        if frame.opcode == OP_CLOSE:
            return frames
    raise AssertionError(f"slow client still reading after 60 s ({len(frames)} frames)")


def sequence_numbers(frames: list[Frame]) -> list[int]:
    """The load generator's sequence numbers (first 8 bytes, host order) of
    the data frames; 0 is its readiness probe."""
    seqs = []
    for frame in frames:
        if frame.opcode == OP_CLOSE:
            continue
        assert frame.opcode == OP_BINARY and len(frame.payload) == MESSAGE, frame[:3]
        seqs.append(struct.unpack("=Q", frame.payload[:8])[0])
    return seqs


@pytest.mark.parametrize("policy", ["skip", "close"])
def test_slow_consumer_in_a_room_of_100(policy: str, loadgen: Path, tmp_path: Path) -> None:
    with ServerProcess("fanout", tmp_path / "server.log", max_backpressure=MAX_BACKPRESSURE,
                       backpressure=policy, close_timeout=120, shutdown_timeout=5) as server, \
            SlowClient(server.port) as slow:
        slow.upgrade("/fanout?id=slow")
        baseline_kib = server.rss_kib()

        result = run_fanout(loadgen, server.port)

        peak_kib = server.hwm_kib()
        during = server.stats()
        frames = read_until_quiet(slow, server)
        after = server.stats()
        print(f"\n{policy}: published {result['published']} x {MESSAGE // 1024} KiB "
              f"= {result['published'] * MESSAGE / 1e6:.0f} MB to {RECEIVERS} receivers; "
              f"server RSS {baseline_kib / 1024:.1f} MiB before, peak "
              f"{peak_kib / 1024:.1f} MiB (+{(peak_kib - baseline_kib) / 1024:.1f} MiB); "
              f"slow consumer got {len(frames)} frames, skipped {after['sockets']['slow']['skipped']}")

        # The 99 others got every message, in order, and none was cut.
        assert "error" not in result, result
        assert result["receivers"] == RECEIVERS and result["published"] > 0, result
        for key in ("lost", "gaps", "out_of_order", "stalls", "server_closed", "bad_frames",
                    "connect_errors", "handshake_errors"):
            assert result[key] == 0, (key, result)

        # Memory stayed bounded by the limits, not by what was published.
        bound_kib = baseline_kib + (RECEIVERS + 2) * MAX_BACKPRESSURE * 2 // 1024 + RSS_SLACK_KIB
        assert peak_kib <= bound_kib, (peak_kib, bound_kib)
        assert during["sockets"]["slow"]["buffered"] <= MAX_BACKPRESSURE + 4 * MESSAGE, during

        seqs = sequence_numbers(frames)
        data = [s for s in seqs if s]
        assert data == sorted(data) and len(set(data)) == len(data), "slow consumer got reordered frames"
        assert len(data) < result["published"], "the slow consumer was not held back"
        slow_info = after["sockets"]["slow"]
        if policy == "skip":
            # Skipped, counted, still open; drain fired once it caught up.
            assert slow_info["skipped"] > 0 and slow_info["close"] is None, slow_info
            assert after["skipped"] == slow_info["skipped"], after   # nobody else skipped
            assert slow_info["drains"] >= 1, slow_info
            assert frames and frames[-1].opcode != OP_CLOSE
            slow.send(hand_frame(OP_CLOSE, close_payload(1000)))
            assert slow.read_frame().close_code == 1000
        else:
            # Closed with 1008 after the data queued before the limit.
            assert frames and frames[-1].opcode == OP_CLOSE, "no close frame for the slow consumer"
            assert (frames[-1].close_code, frames[-1].close_reason) == (1008, "slow consumer")
            wait_for(lambda: server.stats()["sockets"]["slow"]["close"] is not None,
                     what="the slow consumer's close handler")
            after = server.stats()
            assert after["sockets"]["slow"]["close"] == [1008, "slow consumer"], after
            assert after["skipped"] == 0, after
        slow.close()
        assert server.stop() == 0
        assert "Traceback" not in server.log(), server.log()[-3000:]


# ---------------------------------------------------------------- what the server sends unasked

# Bytes a client can make the server queue without sending app data: pongs
# to its pings, responses to pipelined requests. Neither may outgrow the
# limits when the client never reads.
UNREAD_SLACK_KIB = 32 * 1024


def flood_unread(client: SlowClient, chunk: bytes, times: int) -> int:
    """Write ``chunk`` up to ``times`` times; stop early when the server stops
    reading (the send blocks past the socket timeout) or closes. Returns
    how many chunks went out."""
    client.sock.settimeout(3)
    for i in range(times):
        try:
            client.sock.sendall(chunk)
        except (socket.timeout, BrokenPipeError, ConnectionResetError):
            return i
    return times


def test_ping_flood_from_a_client_that_never_reads(tmp_path: Path) -> None:
    with ServerProcess("fanout", tmp_path / "server.log", shutdown_timeout=2) as server, \
            SlowClient(server.port) as client:
        client.upgrade("/fanout?id=pinger")
        baseline_kib = server.rss_kib()
        # 1,000,000 pings of 125 bytes: 131 MB of pongs if all were queued.
        flood_unread(client, hand_frame(OP_PING, b"p" * 125) * 1000, 1000)
        time.sleep(1)
        grown_kib = server.rss_kib() - baseline_kib
        info = server.stats()["sockets"]["pinger"]
        # Reading stops once max_backpressure (1 MiB) is held, but the pings of the
        # read in progress are answered first: uvloop reads up to 256,000 bytes per
        # callback, so up to that much more (a loaded machine reads fuller buffers).
        assert info["buffered"] <= (1 << 20) + 256_000 or info["close"] is not None, info
        assert grown_kib <= UNREAD_SLACK_KIB, f"server RSS grew {grown_kib} KiB"


def test_pipelined_http_from_a_client_that_never_reads(tmp_path: Path) -> None:
    with ServerProcess("fanout", tmp_path / "server.log", shutdown_timeout=2) as server, \
            SlowClient(server.port) as client:
        baseline_kib = server.rss_kib()
        # 5,000 requests for 100 KB each: 500 MB of responses if all were queued.
        flood_unread(client, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 100, 50)
        time.sleep(1)
        grown_kib = server.rss_kib() - baseline_kib
        assert server.stats()["connections"] == 0          # others are still served
        assert grown_kib <= UNREAD_SLACK_KIB, f"server RSS grew {grown_kib} KiB"


# ---------------------------------------------------------------- send() and drain()

@pytest.fixture
def slow_socket() -> Iterator[tuple[Any, Any, SlowClient, list[int]]]:
    """A server with a 64 KiB skip limit and one connected SlowClient:
    (running server, its WebSocket, the client, drain event log)."""
    app = create_app()
    app.use(websocket(max_backpressure=64 * 1024, backpressure="skip"))
    sockets: list[Any] = []
    drains: list[int] = []

    @app.ws("/slow")
    def slow(ws):
        sockets.append(ws)
        ws.on("drain", lambda: drains.append(ws.buffered_amount))

    with serving(app) as srv, SlowClient(srv.port) as client:
        client.upgrade("/slow")
        wait_for(lambda: srv.call(lambda: bool(sockets)), what="the route handler")
        yield srv, sockets[0], client, drains


def test_send_returns_false_over_the_limit_and_drain_resumes(slow_socket) -> None:
    srv, ws, client, drains = slow_socket
    chunk = b"c" * 16384

    async def fill() -> int:
        # Bounded: 10,000 x 16 KiB is far past any kernel buffer plus limit.
        for i in range(10_000):
            if not ws.send(chunk):
                return i
            await asyncio.sleep(0)       # let each send reach the socket
        raise AssertionError("send never returned False")

    accepted = srv.call(fill)
    assert srv.call(lambda: (ws.skipped, srv.app.skipped)) == (1, 1)
    assert srv.call(lambda: ws.send(b"over")) is False
    assert srv.call(lambda: ws.skipped) == 2
    assert srv.call(lambda: ws.buffered_amount) > 0

    waiter = asyncio.run_coroutine_threadsafe(ws.drain(), srv.loop)
    time.sleep(0.2)
    assert not waiter.done(), "drain() returned while the socket was over its limit"
    assert not drains

    # Catch up: exactly the accepted sends arrive, in order, nothing skipped.
    for _ in range(accepted):
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (OP_BINARY, chunk)
    waiter.result(timeout=10)
    wait_for(lambda: srv.call(lambda: bool(drains)), what="the drain event")
    assert srv.call(lambda: ws.send(b"after drain")) is True
    frame = client.read_frame()
    assert (frame.opcode, frame.payload) == (OP_BINARY, b"after drain")
    assert srv.call(lambda: ws.skipped) == 2


def test_drain_returns_at_once_under_the_limit(slow_socket) -> None:
    srv, ws, client, drains = slow_socket
    assert srv.call(lambda: ws.send(b"small")) is True
    srv.call(ws.drain, timeout=5)
    assert client.read_frame().payload == b"small"
    assert srv.call(lambda: ws.skipped) == 0


def test_one_number_bounds_what_a_socket_holds(slow_socket) -> None:
    """Queue and transport buffer together never pass max_backpressure by more
    than the frame that was accepted just under it."""
    srv, ws, client, drains = slow_socket
    chunk = b"d" * 16384
    frame_size = len(chunk) + 4             # header of a 16 KiB frame

    async def fill() -> int:
        for _ in range(10_000):
            if not ws.send(chunk):
                return ws.buffered_amount
            await asyncio.sleep(0)
        raise AssertionError("send never returned False")

    held = srv.call(fill)
    assert 64 * 1024 < held <= 64 * 1024 + frame_size, held


# ---------------------------------------------------------------- partly written batches

def test_partly_written_batches_arrive_whole_and_in_order() -> None:
    """A client with a tiny receive buffer makes the kernel take only part of
    each batch the server writes straight to the socket, cutting it inside a
    frame and inside a large payload (queued apart from its header): what is
    left goes to the transport. Every byte must arrive, in order. A batch of
    up to 64 pieces (frames, or a large one's header and payload) goes out in
    one sendmsg, a longer one joined; both are covered."""
    rng = random.Random(20261203)
    small = [10, 125, 126, 1000, 4096, 65535]
    large = [65536, 70_000, 200_000, 500_000]       # a header and a payload each
    # Up to 4 MiB in the kernel's send buffer: a batch must be larger to be cut.
    few = [[rng.randbytes(rng.choice(large if rng.random() < 0.7 else small))
            for _ in range(rng.randint(20, 30))] for _ in range(15)]
    many = [[rng.randbytes(rng.choice(small + large)) for _ in range(rng.randint(65, 100))]
            for _ in range(15)]
    batches = [batch for pair in zip(few, many) for batch in pair]
    app = create_app()
    app.use(websocket(max_backpressure=64 << 20))

    @app.ws("/batches")
    def handler(ws):
        @ws.on("message")
        def go(data):
            for payload in batches[int(data)]:
                assert ws.send(payload)

    with serving(app) as srv, SlowClient(srv.port) as client:
        client.upgrade("/batches")
        for i, batch in enumerate(batches):
            client.send(masked_frame(OP_TEXT, str(i)))
            for j, payload in enumerate(batch):
                frame = client.read_frame()
                assert (frame.fin, frame.opcode) == (True, OP_BINARY), (i, j, frame[:3])
                assert frame.payload == payload, (i, j, len(frame.payload), len(payload))
