#!/usr/bin/env python3
"""The NATS backplane's hot path with nats-py against fastws's own link (``fastws.cluster.nats_link``).

    python bench/nats_link.py                  # 200,000 messages of 64 B each way, 3 rounds
    python bench/nats_link.py --messages 50000 --rounds 1

Starts a nats-server of its own on a free port. In one process on one loop
(uvloop), a publisher connection publishes N messages to one subject, as the
backplane does for broadcasts (from synchronous code: with nats-py, a task per
publish, since ``publish`` is a coroutine; with the link, ``write_parts``), and
a subscriber connection receives them (nats-py: a subscription with a callback;
the link: ``on_msg`` in the read callback). Reported: this process's CPU time
per message (publish and receive together), and messages/s; the medians of
the rounds, and the ratio. nats-py is needed here only (``pip install nats-py``).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from fastws.cluster.nats_link import NatsLink, parse_nats_url  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def with_nats_py(url: str, n: int, payload: bytes) -> tuple[float, float]:
    import nats
    pub = await nats.connect(url)
    sub = await nats.connect(url)
    done = asyncio.get_running_loop().create_future()
    got = 0

    async def on_msg(msg) -> None:
        nonlocal got
        got += 1
        if got == n and not done.done():
            done.set_result(None)

    await sub.subscribe("bench.r.room", cb=on_msg, pending_msgs_limit=n + 1,
                        pending_bytes_limit=(n + 1) * (len(payload) + 64))
    await sub.flush()
    loop = asyncio.get_running_loop()
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        # What a synchronous broadcast has to do with a coroutine API.
        loop.create_task(pub.publish("bench.r.room", payload))
        if i % 256 == 255:
            await asyncio.sleep(0)
    await asyncio.wait_for(done, 120)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    await pub.close()
    await sub.close()
    return cpu, wall


async def with_link(url: str, n: int, payload: bytes) -> tuple[float, float]:
    parsed = parse_nats_url(url)
    done = asyncio.get_running_loop().create_future()
    got = 0

    def on_msg(sid: int, data: bytes) -> None:
        nonlocal got
        got += 1
        if got == n and not done.done():
            done.set_result(None)

    pub = await NatsLink.open(parsed, 5, "bench pub")
    sub = await NatsLink.open(parsed, 5, "bench sub", on_msg=on_msg)
    sub.write(b"SUB bench.r.room 1\r\n")
    await sub.ping()
    head, tail = b"PUB bench.r.room ", b"%d\r\n" % len(payload)
    size = len(head) + len(tail) + len(payload) + 2
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(n):
        pub.write_parts((head, tail, payload, b"\r\n"), size)
        if i % 256 == 255:
            await asyncio.sleep(0)
    await asyncio.wait_for(done, 120)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    pub.close()
    sub.close()
    return cpu, wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    try:
        import uvloop
    except ImportError:
        uvloop = None
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen([exe, "-a", "127.0.0.1", "-p", str(port)], cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("nats-server did not start")
                    time.sleep(0.05)
            url = f"nats://127.0.0.1:{port}"
            payload = b"x" * args.size
            results: dict[str, list[tuple[float, float]]] = {"nats-py": [], "fastws link": []}
            for r in range(args.rounds):
                for name, fn in (("nats-py", with_nats_py), ("fastws link", with_link)):
                    runner = uvloop.run if uvloop is not None else asyncio.run
                    results[name].append(runner(fn(url, args.messages, payload)))
        finally:
            proc.kill()
            proc.wait()
    print(f"## NATS hot path: {args.messages:,} messages of {args.size} B, published and received "
          f"in one process (median of {args.rounds})\n")
    print("| client | CPU µs per message | messages/s |")
    print("| --- | ---: | ---: |")
    med = {}
    for name, runs in results.items():
        cpu = statistics.median(c for c, _ in runs) * 1e6 / args.messages
        rate = statistics.median(args.messages / w for _, w in runs)
        med[name] = cpu
        print(f"| {name} | {cpu:.2f} | {rate:,.0f} |")
    print(f"\nnats-py costs {med['nats-py'] / med['fastws link']:.1f}x the CPU per message of the "
          f"link fastws uses.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
