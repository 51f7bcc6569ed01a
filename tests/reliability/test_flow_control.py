"""Flow control: a burst of large broadcasts goes at the pace of the readers that
read, and only a member that stops reading is cut (or skipped).

A publisher sends about 100 MB of 100 KB broadcasts as fast as its socket takes
them; readers read at a steady, modest pace; one member never reads. Every
reader must receive every message, in order; the silent member is handled by
the backpressure policy after ``slow_consumer_timeout``; the server's memory
stays bounded by the limits. Then the same for broadcasts from server code,
paced with ``await app.drain(room)``, and for the heartbeat of a publisher that
flow control holds.
"""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from pathlib import Path

import pytest

from fastws import create_app, websocket

from ..conftest import serving
from ..integration.clients import wait_for
from ..integration.rawws import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, masked_frame, raw_upgrade
from .procs import ServerProcess
from .slow_client import SlowClient

MESSAGE = 100_000
COUNT = 1_000                   # 100 MB in all
READERS = 3
READ_RATE = 20e6                # bytes per second per reader: steady, well under the burst
MAX_BACKPRESSURE = 1 << 20
SLOW_TIMEOUT = 2.0
# Python heap, allocator rounding and the frames in flight: fixed, not per byte sent.
RSS_SLACK_KIB = 32 * 1024


class PacedReader(threading.Thread):
    """Reads at READ_RATE at most, answers pings, records sequence numbers."""

    def __init__(self, port: int, name: str, want: int, rate: float = READ_RATE,
                 small_buffer: bool = False) -> None:
        super().__init__(name=name, daemon=True)
        if small_buffer:                # the kernel holds little for it: the server does
            self.client = SlowClient(port)
            self.client.upgrade(f"/fanout?id={name}")
        else:
            self.client = raw_upgrade(port, f"/fanout?id={name}")
        self.client.sock.settimeout(60)
        self.want = want
        self.rate = rate
        self.seqs: list[int] = []
        self.closed: tuple[int, str] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        start, got = time.monotonic(), 0
        try:
            while len(self.seqs) < self.want:
                frame = self.client.read_frame()
                if frame.opcode == OP_PING:
                    self.client.send(masked_frame(OP_PONG, frame.payload))
                elif frame.opcode == OP_CLOSE:
                    self.closed = (frame.close_code, frame.close_reason)
                    return
                elif frame.opcode == OP_BINARY:
                    self.seqs.append(struct.unpack("!Q", frame.payload[:8])[0])
                    got += len(frame.payload)
                    lag = got / self.rate - (time.monotonic() - start)
                    if lag > 0:
                        time.sleep(lag)
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def publish(port: int, count: int, size: int = MESSAGE, then=None) -> None:
    """Send ``count`` broadcasts as fast as the socket takes them; call
    ``then()`` before disconnecting."""
    pad = b"p" * (size - 8)
    with raw_upgrade(port, "/fanout?id=pub") as pub:
        pub.sock.settimeout(120)
        for seq in range(1, count + 1):
            pub.send(masked_frame(OP_BINARY, struct.pack("!Q", seq) + pad))
        if then is not None:
            then()


@pytest.mark.parametrize("policy", ["skip", "close"])
def test_a_burst_is_paced_by_readers_and_only_the_silent_member_is_cut(policy: str,
                                                                     tmp_path: Path) -> None:
    with ServerProcess("fanout", tmp_path / "server.log", max_backpressure=MAX_BACKPRESSURE,
                       backpressure=policy, slow_consumer_timeout=SLOW_TIMEOUT,
                       close_timeout=2, ping_interval=None, shutdown_timeout=5) as server, \
            SlowClient(server.port) as silent:
        silent.upgrade("/fanout?id=silent")
        readers = [PacedReader(server.port, f"r{i}", COUNT) for i in range(READERS)]
        wait_for(lambda: server.stats()["connections"] == READERS + 1, what="room joins")
        baseline_kib = server.rss_kib()
        for r in readers:
            r.start()
        started = time.monotonic()
        publish(server.port, COUNT)
        for r in readers:
            r.join(120)
        elapsed = time.monotonic() - started
        peak_kib = server.hwm_kib()
        stats = server.stats()
        print(f"\n{policy}: {COUNT} x {MESSAGE // 1000} KB to {READERS} paced readers in "
              f"{elapsed:.1f}s; RSS +{(peak_kib - baseline_kib) / 1024:.1f} MiB; silent member: "
              f"{stats['sockets']['silent']}")

        for r in readers:
            assert r.error is None, f"{r.name}: {r.error!r}"
            assert r.closed is None, f"{r.name} was closed: {r.closed}"
            assert r.seqs == list(range(1, COUNT + 1)), f"{r.name}: missing or reordered"
        silent_info = stats["sockets"]["silent"]
        assert stats["skipped"] == silent_info["skipped"], "a reader that reads was skipped"
        if policy == "skip":
            assert silent_info["close"] is None and silent_info["skipped"] > 0, silent_info
        else:
            # Its close frame waits behind what it never read: TCP goes after
            # close_timeout, and then the close handler runs.
            wait_for(lambda: server.stats()["sockets"]["silent"]["close"] is not None,
                     timeout=15, what="the silent member's close")
            silent_info = server.stats()["sockets"]["silent"]
            assert silent_info["close"] == [1008, "slow consumer"], silent_info
        bound_kib = baseline_kib + (READERS + 2) * MAX_BACKPRESSURE * 2 // 1024 + RSS_SLACK_KIB
        assert peak_kib <= bound_kib, (peak_kib, bound_kib)
        for r in readers:
            r.client.close()


def test_a_publisher_held_by_flow_control_survives_the_heartbeat(tmp_path: Path) -> None:
    """Not read by us while a slow (but alive) reader drains: its pongs wait in
    the kernel, and the heartbeat must not hold that against it."""
    count = 80                          # 8 MB, read at 1 MB/s: held ~2 s at a time
    with ServerProcess("fanout", tmp_path / "server.log", max_backpressure=4 << 20,
                       ping_interval=0.5, idle_timeout=0.5, slow_consumer_timeout=30,
                       shutdown_timeout=5) as server:
        reader = PacedReader(server.port, "trickle", count, rate=1e6, small_buffer=True)
        with reader.client:
            wait_for(lambda: server.stats()["connections"] == 1, what="the reader's join")
            reader.start()
            # The publisher is not read for seconds at a time, far past
            # ping_interval + idle_timeout; it is still open once all arrived.
            seen = []
            # Right after its last send went out: until then it was held for
            # seconds at a time (afterwards, silent and not answering pings, the
            # heartbeat may rightly drop it).
            publish(server.port, count,
                    then=lambda: seen.append(server.stats()["sockets"]["pub"]["close"]))
            reader.join(60)
            assert reader.error is None and reader.closed is None, (reader.error, reader.closed)
            assert reader.seqs == list(range(1, count + 1))
            assert seen == [None], f"the publisher was closed: {seen}"


def test_server_code_paces_itself_with_app_drain() -> None:
    """A feed from server code: `await app.drain(room)` between broadcasts keeps
    a reader that reads from ever being skipped, and a silent member holds the
    feed up for slow_consumer_timeout at most."""
    app = create_app()
    app.use(websocket(max_backpressure=256 * 1024, backpressure="skip",
                      slow_consumer_timeout=1.0, ping_interval=None))
    members = []

    @app.ws("/fanout")
    def join(ws, ctx):
        ws.join("feed")
        members.append((ctx.get_query("id"), ws))

    async def feed(n: int) -> float:
        started = time.monotonic()
        payload = b"f" * 50_000
        for seq in range(1, n + 1):
            app.broadcast("feed", struct.pack("!Q", seq) + payload[8:])
            await app.drain("feed")
        return time.monotonic() - started

    with serving(app) as srv:
        reader = PacedReader(srv.port, "reader", 200, rate=5e6)
        with reader.client, SlowClient(srv.port) as silent:
            silent.upgrade("/fanout?id=silent")
            wait_for(lambda: srv.call(app.room_size, "feed") == 2, what="both joined")
            reader.start()
            took = asyncio.run_coroutine_threadsafe(feed(200), srv.loop).result(60)
            reader.join(60)
            assert reader.error is None and reader.closed is None
            assert reader.seqs == list(range(1, 201))
            by_id = dict(members)
            assert srv.call(lambda: by_id["reader"].skipped) == 0
            assert srv.call(lambda: by_id["silent"].skipped) > 0
            assert srv.call(lambda: app.slow_consumers) >= 1    # the silent one, given up on
            assert took < 60
