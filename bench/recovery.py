#!/usr/bin/env python3
"""Recovery: what replaying missed messages costs the server, alone and in a storm.

    python bench/recovery.py                          # both parts, full size (~2 minutes)
    python bench/recovery.py --clients 2000 --rooms 200
    python bench/recovery.py --quick                  # a smoke run (the suite runs it)

1. **Replay**: one ``fastws.v1`` client states its position in a room that has
   received ``--missed`` (1,000) messages since; the server replays them. Reported:
   the time from the upgrade request to the ``fastws.joined`` that says
   ``recovered: true``, and the server's CPU over it (node, and Redis with a
   backplane), for the memory history and for the history in Redis; ``--repeats``
   (20) reconnects from the same position (median time, mean CPU: the CPU clock
   ticks in 10 ms, about what one replay costs).
2. **Reconnect storm**: ``--clients`` (10,000) clients in ``--rooms`` (1,000) rooms
   on node A, with the history in Redis (``bench/servers/recovery_server.py``). Node A
   is killed (SIGKILL); ``--storm-missed`` (100) messages go to every room through
   node B; then every client reconnects to node B at once, stating its position.
   Reported: the time until every client has its ``fastws.joined`` (recovered), node B's
   and Redis's CPU over the storm, per client and per replayed message, and whether
   every client got exactly its room's missed messages, in order (nothing lost).

The clients are the ``websockets`` library speaking ``fastws.v1`` by hand, in this
process (so the figures are the server's; this process's own CPU is not counted).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as _dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

from websockets.asyncio.client import connect  # noqa: E402

SERVERS_DIR = compare.SERVERS_DIR


class Proc:
    """A server process (a node or redis-server), stopped with SIGKILL."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, cwd=SERVERS_DIR, env={**os.environ, **env},
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.pid = self.proc.pid

    def cpu(self) -> float:
        return compare.proc_cpu_seconds(self.pid)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.log.close()


def start_redis(log_dir: Path) -> tuple[Proc, int]:
    port = compare.free_port()
    redis = Proc([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                  "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(log_dir)],
                 {}, log_dir / "redis.log")
    deadline = time.monotonic() + 10
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}", timeout=0.2):
                pass
        except Exception as exc:        # Redis answers HTTP with an error: it is up
            if "Connection refused" not in str(exc) or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    return redis, port


def start_node(log_dir: Path, env: dict[str, str]) -> tuple[Proc, int]:
    port = compare.free_port()
    node = Proc([sys.executable, str(SERVERS_DIR / "recovery_server.py"), str(port)], env,
                log_dir / f"node-{port}.log")
    deadline = time.monotonic() + 30
    while not compare.upgrade_ok(port, "/room/probe"):
        if node.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the node did not start: see {log_dir}")
        time.sleep(0.05)
    return node, port


def publish(port: int, prefix: str, rooms: int, n: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/publish?prefix={prefix}&rooms={rooms}&n={n}",
                                 data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=600) as resp:
        resp.read()


def token(room: str, epoch: str, offset: int) -> str:
    raw = json.dumps([[room, epoch, offset]]).encode()
    return "fastws.v1.positions." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def join(port: int, room: str, position: tuple[str, int] | None = None) -> tuple[object, dict]:
    """A fastws.v1 client in ``room``: (its connection, the fastws.joined it got)."""
    offer = ["fastws.v1"] + ([token(room, *position)] if position else [])
    ws = await connect(f"ws://127.0.0.1:{port}/room/{room}", subprotocols=offer, compression=None,
                       proxy=None, open_timeout=120, ping_interval=None, max_queue=None)
    while True:
        msg = json.loads(await ws.recv())
        if msg["type"] == "fastws.joined":
            return ws, msg


async def recover(port: int, room: str, position: tuple[str, int], missed: int) -> tuple[float, bool]:
    """Reconnect with ``position``: (seconds to the outcome, whether exactly the
    ``missed`` messages after it came, in order, with ``recovered: true``)."""
    started = time.perf_counter()
    ws = await connect(f"ws://127.0.0.1:{port}/room/{room}",
                       subprotocols=["fastws.v1", token(room, *position)], compression=None,
                       proxy=None, open_timeout=120, ping_interval=None, max_queue=None)
    offsets = []
    try:
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] == "fastws.message":
                offsets.append(msg["offset"])
            elif msg["type"] == "fastws.joined":
                ok = (msg.get("recovered") is True and msg.get("missed") == missed
                      and offsets == list(range(position[1] + 1, position[1] + missed + 1)))
                return time.perf_counter() - started, ok
    finally:
        await ws.close()


def replay_part(args, log_dir: Path, redis: Proc | None, redis_port: int | None) -> dict:
    env = {"BENCH_HISTORY": str(max(args.missed, 1000))}
    procs = []
    if redis_port is not None:
        env.update(BENCH_BACKPLANE=f"redis://127.0.0.1:{redis_port}/0",
                   BENCH_PREFIX="r" + uuid.uuid4().hex[:8])
    try:
        node, port = start_node(log_dir, env)
        procs.append(node)

        async def run() -> dict:
            ws, joined = await join(port, "replay0")
            await ws.close()
            publish(port, "replay", 1, args.missed)
            compare.wait_quiet(node.pid, settle=0.3, limit=5)
            # The same position each time: each reconnect replays the same messages.
            # Repeated because the CPU clock ticks in 10 ms, about one replay's cost.
            cpu, redis_cpu = node.cpu(), redis.cpu() if redis else 0.0
            times, exact = [], True
            for _ in range(args.repeats):
                seconds, ok = await recover(port, "replay0", (joined["epoch"], joined["offset"]),
                                            args.missed)
                times.append(seconds)
                exact = exact and ok
            n = args.repeats
            return {"seconds": statistics.median(times), "repeats": n,
                    "node_cpu_ms": (node.cpu() - cpu) * 1000 / n,
                    "redis_cpu_ms": ((redis.cpu() - redis_cpu) * 1000 / n) if redis else None,
                    "exact": exact}
        return asyncio.run(run())
    finally:
        for p in procs:
            p.kill()


def storm_part(args, log_dir: Path, redis: Proc, redis_port: int) -> dict:
    env = {"BENCH_HISTORY": str(max(args.storm_missed, 100)),
           "BENCH_BACKPLANE": f"redis://127.0.0.1:{redis_port}/0",
           "BENCH_PREFIX": "s" + uuid.uuid4().hex[:8]}
    node_a, port_a = start_node(log_dir, env)
    node_b, port_b = start_node(log_dir, env)
    per_room = max(1, args.clients // args.rooms)
    rooms = [f"storm{r}" for r in range(args.rooms)]
    try:
        async def run() -> dict:
            sem = asyncio.Semaphore(500)

            async def first(room: str) -> tuple[str, tuple[str, int]]:
                async with sem:
                    ws, joined = await join(port_a, room)
                return room, (joined["epoch"], joined["offset"]), ws

            joined = await asyncio.gather(*(first(room) for room in rooms for _ in range(per_room)))
            node_a.kill()           # every client's connection dies with it
            for _, _, ws in joined:
                ws.transport.abort()
            publish(port_b, "storm", args.rooms, args.storm_missed)
            compare.wait_quiet(node_b.pid, settle=0.3, limit=10)
            cpu_b, cpu_r = node_b.cpu(), redis.cpu()
            started = time.perf_counter()
            results = await asyncio.gather(*(recover(port_b, room, pos, args.storm_missed)
                                             for room, pos, _ in joined))
            seconds = time.perf_counter() - started
            node_cpu, redis_cpu = node_b.cpu() - cpu_b, redis.cpu() - cpu_r
            clients = len(results)
            replayed = clients * args.storm_missed
            return {"clients": clients, "rooms": args.rooms, "missed_each": args.storm_missed,
                    "seconds": seconds, "exact": sum(ok for _, ok in results),
                    "node_cpu_s": node_cpu, "redis_cpu_s": redis_cpu,
                    "node_cpu_us_per_replayed": node_cpu * 1e6 / replayed,
                    "redis_cpu_us_per_replayed": redis_cpu * 1e6 / replayed,
                    "p50_s": sorted(s for s, _ in results)[clients // 2],
                    "max_s": max(s for s, _ in results)}
        return asyncio.run(run())
    finally:
        node_a.kill()
        node_b.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--missed", type=int, default=1000, help="messages replayed to one client")
    ap.add_argument("--clients", type=int, default=10000, help="clients in the storm")
    ap.add_argument("--rooms", type=int, default=1000, help="rooms the storm's clients are in")
    ap.add_argument("--storm-missed", type=int, default=100, help="messages each storm client missed")
    ap.add_argument("--repeats", type=int, default=20,
                    help="reconnects replaying the same messages (median time, mean CPU)")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 100 missed, 200 clients")
    ap.add_argument("--out", default=str(compare.RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.missed, args.clients, args.rooms, args.storm_missed = 100, 200, 20, 10
        args.repeats = 3
    compare._raise_nofile()
    log_dir = Path(tempfile.mkdtemp(prefix="fastws-recovery-"))
    stamp = _dt.datetime.now()
    redis, redis_port = start_redis(log_dir)
    try:
        memory = replay_part(args, log_dir, None, None)
        in_redis = replay_part(args, log_dir, redis, redis_port)
        storm = storm_part(args, log_dir, redis, redis_port)
    finally:
        redis.kill()
    print(f"## Recovery ({stamp.isoformat(timespec='seconds')}, load average "
          f"{os.getloadavg()[0]:.1f} at the end)\n")
    print(f"Replay of {args.missed:,} missed messages to one client ({args.repeats} "
          f"reconnects with the same position: median time, mean CPU):\n")
    print("| history | time to the outcome | node CPU | redis-server CPU | exactly the missed ones |")
    print("| --- | ---: | ---: | ---: | --- |")
    for name, r in (("memory", memory), ("Redis", in_redis)):
        rcpu = "–" if r["redis_cpu_ms"] is None else f"{r['redis_cpu_ms']:.1f} ms"
        print(f"| {name} | {r['seconds'] * 1000:.1f} ms | {r['node_cpu_ms']:.1f} ms | {rcpu} | "
              f"{'yes' if r['exact'] else 'NO'} |")
    print(f"\nReconnect storm: {storm['clients']:,} clients in {storm['rooms']:,} rooms, node A "
          f"killed, {storm['missed_each']} messages per room published through node B, every "
          f"client back on node B at once:\n")
    print(f"- all recovered in {storm['seconds']:.1f} s (median client {storm['p50_s']:.2f} s, "
          f"slowest {storm['max_s']:.2f} s); exactly their missed messages: "
          f"{storm['exact']:,} of {storm['clients']:,}")
    print(f"- node B CPU {storm['node_cpu_s']:.2f} s ({storm['node_cpu_us_per_replayed']:.2f} µs per "
          f"replayed message), redis-server CPU {storm['redis_cpu_s']:.2f} s "
          f"({storm['redis_cpu_us_per_replayed']:.2f} µs per replayed message)")
    compare.save_results(args.out, "recovery", stamp, {"args": vars(args), "replay_memory": memory,
                                                      "replay_redis": in_redis, "storm": storm})
    ok = memory["exact"] and in_redis["exact"] and storm["exact"] == storm["clients"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
