#!/usr/bin/env python3
"""Fan-out across processes: fastws's Redis backplane against one node, and against
python-socketio with its Redis manager, through the same C load generator.

    python bench/cluster.py                       # 3 rounds, 1,000 receivers (~4 minutes)
    python bench/cluster.py --rounds 1 --receivers 200 --duration 3
    python bench/cluster.py --scenarios fastws-local,fastws-cross

Scenarios (each round runs every one, order alternating, on fresh processes and a fresh
redis-server of its own on a free port):

- ``fastws-local``: one fastws node, no backplane; the publisher and R receivers on it.
- ``fastws-cross``: node A with the publisher, node B with the R receivers, a backplane
  between them (``BENCH_BACKPLANE``).
- ``fastws-split``: the publisher on A, the receivers alternating between A and B.
- ``fastws-rooms-local`` / ``fastws-rooms-split``: small rooms. ``--rooms`` rooms (default
  100) of 10 receivers, each room with a publisher of its own on node A keeping
  ``--room-window`` messages in flight (``loadgen --group 10``); on one node, or with every
  room's members alternating between nodes A and B.
- ``fastws-history-cross``, ``fastws-history-split``, ``fastws-history-rooms-split``: the
  same with room history in Redis (``BENCH_HISTORY=100``: every message numbered and
  stored by Redis, delivered from Redis on every node) and receivers that speak
  ``fastws.v1`` (``loadgen --v1``: every receiver's offsets checked contiguous).
- ``fastws-sharded-cross``, ``fastws-sharded-rooms-split``, ``fastws-sharded-history-rooms-split``:
  the same with the rooms sharded over ``--shards`` redis-servers (default 4; a
  ``redis://a,redis://b,...`` backplane); reported besides: each instance's share of the
  redis-servers' CPU, and the busiest against the mean.
- ``fastws-rcluster-cross``, ``fastws-rcluster-rooms-split``,
  ``fastws-rcluster-history-rooms-split``: the same on a Redis Cluster of ``--shards``
  masters without replicas (``redis-server --cluster-enabled yes``, ``redis-cli --cluster
  create``; a ``redis+cluster://`` backplane, sharded pub/sub); shares as for sharded.
- ``fastws-nats-cross``, ``fastws-nats-rooms-split``, ``fastws-nats-history-cross``,
  ``fastws-nats-history-rooms-split``:
  the same on a NATS backplane (a ``nats-server`` of its own on a free port, ``nats://``
  URL; with history, JetStream on with file storage in the run's log directory); its CPU
  is reported where redis-server's is.
- ``socketio-cross``: python-socketio on aiohttp (uvloop), ``AsyncRedisManager``, the same
  A/B layout; the load generator speaks Engine.IO v4 to it (``loadgen --eio``).
- ``socketio-local``: one python-socketio node, no manager.

Every server process and redis-server run on CPU 0, the load generator on CPU 1. The
load generator reads the CPU time of every process over the measured window; reported:
delivered msg/s, the servers' CPU per delivered message (node A + node B), redis-server's
CPU per delivered message, and lost messages. Medians over the rounds.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

SERVERS_DIR = compare.SERVERS_DIR
EIO_PATH = "/socket.io/?EIO=4&transport=websocket"
SCENARIOS = ["fastws-local", "fastws-cross", "fastws-split", "fastws-rooms-local",
             "fastws-rooms-split", "fastws-history-cross", "fastws-history-split",
             "fastws-history-rooms-split", "fastws-sharded-cross", "fastws-sharded-rooms-split",
             "fastws-sharded-history-rooms-split", "fastws-nats-cross", "fastws-nats-rooms-split",
             "fastws-nats-history-rooms-split", "fastws-nats-history-cross", "fastws-rcluster-cross",
             "fastws-rcluster-rooms-split", "fastws-rcluster-history-rooms-split",
             "socketio-cross", "socketio-local"]
#: Messages each room keeps in the fastws-history-* scenarios.
HISTORY = 100


class Proc:
    """One pinned process (a node or redis-server) with its log."""

    def __init__(self, argv: list[str], log: Path, pin: bool, env: dict[str, str] | None = None,
                 cwd: Path = SERVERS_DIR) -> None:
        if pin:
            argv = ["taskset", "-c", str(compare.SERVER_CPU), *argv]
        self.log = log
        self._f = open(log, "ab")
        self.proc = compare._spawn(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._f,
                                   stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        compare._kill_group(self.proc)
        self._f.close()


def redis_ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = compare.free_port()
        if port + 10000 < 65536 and not port_open(port + 10000):
            return port


def cluster_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"CLUSTER INFO\r\n")
            return b"cluster_state:ok" in s.recv(4096)
    except OSError:
        return False


def wait(check, what: str, proc: Proc, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            raise compare.ServerFailed(f"{what}: exited with {proc.proc.returncode}: "
                                       f"{compare._tail(proc.log.read_text(errors='replace'))}")
        if check():
            return
        time.sleep(0.1)
    raise compare.ServerFailed(f"{what}: not ready within {timeout:.0f} s")


def start_node(kind: str, log_dir: Path, pin: bool, env: dict[str, str]) -> tuple[Proc, int]:
    port = compare.free_port()
    script = "fastws_server.py" if kind == "fastws" else "socketio_server.py"
    node = Proc([sys.executable, str(SERVERS_DIR / script), str(port)],
                log_dir / f"{kind}-{port}.log", pin, env)
    path = "/fanout" if kind == "fastws" else EIO_PATH
    wait(lambda: compare.upgrade_ok(port, path), f"{kind} node", node)
    return node, port


def one_run(scenario: str, loadgen: Path, pin: bool, log_dir: Path, args) -> dict:
    kind, _, layout = scenario.partition("-")
    sharded = layout.startswith("sharded-")
    layout = layout.removeprefix("sharded-")
    on_cluster = layout.startswith("rcluster-")
    layout = layout.removeprefix("rcluster-")
    on_nats = layout.startswith("nats-")
    layout = layout.removeprefix("nats-")
    history = layout.startswith("history-")
    layout = layout.removeprefix("history-")
    rooms = layout.startswith("rooms-")
    layout = layout.removeprefix("rooms-")
    procs: list[Proc] = []
    try:
        env: dict[str, str] = {}
        redises: list[Proc] = []
        if layout != "local" and on_nats:
            nport = compare.free_port()
            js = ["-js", "-sd", str(log_dir / f"js-{nport}")] if history else []
            broker = Proc([shutil.which("nats-server") or "/usr/sbin/nats-server", "-a", "127.0.0.1",
                           "-p", str(nport), *js], log_dir / "nats.log", pin, cwd=log_dir)
            procs.append(broker)
            redises.append(broker)
            wait(lambda: port_open(nport), "nats-server", broker)
            env = {"BENCH_BACKPLANE": f"nats://127.0.0.1:{nport}",
                   "BENCH_PREFIX": "b" + uuid.uuid4().hex[:8]}
        elif layout != "local" and on_cluster:
            ports = []
            for i in range(args.shards):
                rport = cluster_port()
                redis = Proc([shutil.which("redis-server") or "redis-server", "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--cluster-enabled", "yes", "--cluster-config-file",
                              f"nodes-{rport}.conf"], log_dir / f"redis{i}.log", pin, cwd=log_dir)
                procs.append(redis)
                redises.append(redis)
                wait(lambda: redis_ready(rport), "redis-server", redis)
                ports.append(rport)
            subprocess.run([shutil.which("redis-cli") or "redis-cli", "--cluster", "create",
                            *[f"127.0.0.1:{p}" for p in ports], "--cluster-replicas", "0",
                            "--cluster-yes"], check=True, capture_output=True, timeout=60)
            wait(lambda: all(cluster_ok(p) for p in ports), "the Redis Cluster", redises[0])
            env = {"BENCH_BACKPLANE": "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports),
                   "BENCH_PREFIX": "b" + uuid.uuid4().hex[:8]}
        elif layout != "local":
            urls = []
            for i in range(args.shards if sharded else 1):
                rport = compare.free_port()
                redis = Proc([shutil.which("redis-server") or "redis-server", "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                             log_dir / f"redis{i}.log", pin, cwd=log_dir)
                procs.append(redis)
                redises.append(redis)
                wait(lambda: redis_ready(rport), "redis-server", redis)
                urls.append(f"redis://127.0.0.1:{rport}/0")
            env = {"BENCH_BACKPLANE": ",".join(urls), "BENCH_PREFIX": "b" + uuid.uuid4().hex[:8]}
        if history:
            env["BENCH_HISTORY"] = str(HISTORY)
        a, port_a = start_node(kind, log_dir, pin, env)
        procs.append(a)
        pids = []
        recv_ports = []
        if layout in ("cross", "split"):
            b, port_b = start_node(kind, log_dir, pin, env)
            procs.append(b)
            pids.append(b.pid)
            recv_ports = [port_b] if layout == "cross" else [port_a, port_b]
        pids += [r.pid for r in redises]
        for p in procs:
            compare.wait_quiet(p.pid, settle=0.3, limit=5)
        lg = ["--size", str(args.size), "--warmup", str(args.warmup), "--duration", str(args.duration)]
        if rooms:
            lg += ["--receivers", str(args.rooms * args.room_size), "--group", str(args.room_size),
                   "--path", "/room/g", "--window", str(args.room_window)]
        else:
            lg += ["--receivers", str(args.receivers), "--window", str(args.window)]
        if recv_ports:
            lg += ["--recv-ports", ",".join(map(str, recv_ports))]
        if pids:
            lg += ["--pids", ",".join(map(str, pids))]
        if kind == "socketio":
            lg += ["--eio", "--path", EIO_PATH]
        if history:
            lg += ["--v1"]
        result = compare.run_loadgen(loadgen, pin, "fanout", port_a, a.pid, lg,
                                     timeout=120 + args.receivers / 20)
        if "error" in result:
            return result
        extra = result.get("pids_cpu_s", [])
        node_cpu = result["server_cpu_s"] + (extra[0] if layout in ("cross", "split") else 0.0)
        per_redis = extra[len(extra) - len(redises):] if redises else []
        redis_cpu = sum(per_redis)
        delivered = result["messages"]
        published = result.get("published") or 0
        result["nodes_cpu_us_per_msg"] = node_cpu * 1e6 / delivered if delivered else None
        result["redis_cpu_us_per_msg"] = redis_cpu * 1e6 / delivered if delivered and redises else None
        result["redis_cpu_us_per_publish"] = redis_cpu * 1e6 / published if published and redises else None
        if len(per_redis) > 1 and redis_cpu:
            result["redis_shares"] = [c / redis_cpu for c in per_redis]
        return result
    except compare.ServerFailed as exc:
        return {"error": str(exc)}
    finally:
        for p in reversed(procs):
            p.stop()


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"error": runs[0].get("error", "no run") if runs else "no run"}

    def med(key):
        vals = [r[key] for r in ok if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    return {"rounds": len(ok), "msg_per_s": med("msg_per_s"),
            "v1_gaps": sum(r.get("v1_gaps", 0) for r in ok),
            "nodes_cpu_us_per_msg": med("nodes_cpu_us_per_msg"),
            "redis_cpu_us_per_msg": med("redis_cpu_us_per_msg"),
            "redis_cpu_us_per_publish": med("redis_cpu_us_per_publish"),
            "redis_shares": [r["redis_shares"] for r in ok if r.get("redis_shares")],
            "lost": sum(r["lost"] for r in ok),
            "p99s_ms": [r["latency_us"]["p99"] / 1000 for r in ok],
            "all_msg_per_s": [r["msg_per_s"] for r in ok],
            "all_cpu": [r["nodes_cpu_us_per_msg"] for r in ok]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--receivers", type=int, default=1000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--rooms", type=int, default=100, help="small rooms for the rooms-* scenarios")
    ap.add_argument("--room-size", type=int, default=10, help="receivers per small room")
    ap.add_argument("--shards", type=int, default=4, help="redis-servers of the sharded-* scenarios")
    ap.add_argument("--room-window", type=int, default=4, help="messages in flight per small room")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--out", default=str(compare.RESULTS))
    args = ap.parse_args(argv)
    chosen = args.scenarios.split(",")
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    if any(s.startswith("socketio") for s in chosen):
        try:
            import socketio  # noqa: F401  (is it installed?)
            import redis  # noqa: F401
        except ImportError:
            print("cluster: python-socketio/redis not installed (pip install -e '.[bench]'); "
                  "skipping its scenarios", file=sys.stderr)
            chosen = [s for s in chosen if not s.startswith("socketio")]
    if not shutil.which("redis-server"):
        ap.error("redis-server is not on PATH")
    started = time.monotonic()
    runs: dict[str, list[dict]] = {s: [] for s in chosen}
    with compare.pinned_session() as (pin, loadgen):
        with tempfile.TemporaryDirectory(prefix="fastws-cluster-") as log_dir:
            for r in range(args.rounds):
                for s in (chosen if r % 2 == 0 else list(reversed(chosen))):
                    print(f"cluster: round {r + 1}: {s} ...", file=sys.stderr, flush=True)
                    res = one_run(s, loadgen, pin, Path(log_dir), args)
                    if "error" in res:
                        print(f"cluster:   {s}: {res['error']}", file=sys.stderr)
                    runs[s].append(res)
    report(args, chosen, runs, time.monotonic() - started)
    return 0


def report(args, chosen: list[str], runs: dict[str, list[dict]], elapsed: float) -> None:
    stamp = _dt.datetime.now()
    summary = {s: summarize(runs[s]) for s in chosen}
    print(f"## Fan-out across processes ({stamp.isoformat(timespec='seconds')}, {elapsed:.0f} s, "
          f"load average {os.getloadavg()[0]:.1f} at the end)\n")
    print(f"Big room: 1 publisher ({args.window} x {args.size} B in flight), {args.receivers:,} "
          f"receivers. Small rooms: {args.rooms:,} rooms of {args.room_size}, a publisher each "
          f"({args.room_window} in flight). Median of {args.rounds} round(s), each "
          f"{args.duration:g} s measured; \"vs local\" compares with the same workload on one "
          f"fastws node.\n")
    print("| scenario | delivered msg/s | nodes' CPU µs/msg | broker CPU µs/msg | "
          "vs local fastws CPU | lost | v1 gaps | p99 ms (per round) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for s in chosen:
        m = summary[s]
        base = "fastws-rooms-local" if "rooms" in s else "fastws-local"
        local = summary.get(base, {}).get("nodes_cpu_us_per_msg")
        if "error" in m:
            print(f"| {s} | failed: {m['error'][:80]} | | | | | | |")
            continue
        ratio = f"{m['nodes_cpu_us_per_msg'] / local:.2f}x" if local and m["nodes_cpu_us_per_msg"] else "–"
        redis_cpu = f"{m['redis_cpu_us_per_msg']:.3f}" if m["redis_cpu_us_per_msg"] is not None else "–"
        gaps = f"{m['v1_gaps']:,}" if "history" in s else "–"
        print(f"| {s} | {m['msg_per_s']:,.0f} | {m['nodes_cpu_us_per_msg']:.3f} | {redis_cpu} | "
              f"{ratio} | {m['lost']:,} | {gaps} | {', '.join(f'{v:.1f}' for v in m['p99s_ms'])} |")
    for s in chosen:
        m = summary[s]
        if "error" in m or not m.get("redis_shares") or "rooms" not in s:
            continue
        shares = m["redis_shares"]
        worst = max(max(sh) * len(sh) for sh in shares)
        print(f"\n{s}: {len(shares[0])} redis-servers, {m['redis_cpu_us_per_publish']:.3f} µs "
              f"of their CPU per publish in all; each one's share of it per round: "
              + "; ".join(", ".join(f"{x:.0%}" for x in sh) for sh in shares)
              + f"; the busiest carried {worst:.2f}x the mean.")
    for s in chosen:
        plain = s.replace("history-", "")
        m, p = summary[s], summary.get(plain)
        if s != plain and p and "error" not in m and "error" not in p and p["nodes_cpu_us_per_msg"]:
            print(f"\n{s}: nodes' CPU per delivered message "
                  f"{m['nodes_cpu_us_per_msg'] / p['nodes_cpu_us_per_msg']:.2f}x {plain}'s "
                  f"(history in the broker against the same backplane without history)")
    fc, sc = summary.get("fastws-cross"), summary.get("socketio-cross")
    if fc and sc and "error" not in fc and "error" not in sc:
        print(f"\nfastws-cross delivers {fc['msg_per_s'] / sc['msg_per_s']:.1f}x socketio-cross's "
              f"msg/s at {sc['nodes_cpu_us_per_msg'] / fc['nodes_cpu_us_per_msg']:.1f}x less node CPU "
              "per delivered message.")
    compare.save_results(args.out, "cluster", stamp, {"args": vars(args), "summary": summary,
                                                     "runs": runs})


if __name__ == "__main__":
    sys.exit(main())
