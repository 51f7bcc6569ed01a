#!/usr/bin/env python3
"""Instructions per message, counted: the same figure on a busy machine as on a quiet one.

    python bench/instructions.py                          # this build: echo and fan-out to 100
    python bench/instructions.py --base ../before         # also another checkout, as "base"
    python bench/instructions.py --env BENCH_METRICS=1    # one build, two settings
    python bench/instructions.py --modes fanout --receivers 1000 --messages 2000

Wall-clock CPU per message (``bench/compare.py``, ``bench/abtest.py``) moves by a fifth
between identical runs on this shared machine, which hides a 5 % difference. This script
runs the fastws bench server (``bench/servers/fastws_server.py``) under valgrind's
callgrind, which counts the instructions the server executes, and drives it in lockstep
from raw sockets so that every loop iteration does the same work in every run:

* ``echo``: one connection sends a 32-byte text message and waits for its echo, N times:
  one read, one message, one write per iteration.
* ``fanout``: R receivers join the room; one publisher sends a 64-byte message and waits
  until every receiver has it, N times: one read, one broadcast, R writes per iteration.

Instrumentation starts after a warm-up of the same traffic (``callgrind_control -i on``),
the counters are zeroed (``-z``), N messages are sent, and the dump (``-d``) holds only
those. The report is instructions per message (for fan-out, per delivered message, and
per broadcast), with the kernel's work left out: callgrind counts user space only. What
this cannot show is anything that depends on timing (batching under load, system calls
saved by coalescing): those stay with ``bench/abtest.py``.

Needs valgrind (``callgrind_control`` on PATH). One side's run takes about a minute.
"""
from __future__ import annotations

import argparse
import base64
import datetime as _dt
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import compare  # noqa: E402  (results writer and free ports)

MASK = b"\x11\x22\x33\x44"


def masked_text(payload: bytes) -> bytes:
    """A client text frame (FIN, masked) carrying ``payload`` (< 126 bytes)."""
    assert len(payload) < 126
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + MASK + body


def server_frame_len(payload: bytes) -> int:
    return 2 + len(payload)


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    return bytes(buf)


def open_ws(port: int, path: str, timeout: float) -> socket.socket:
    """A raw WebSocket client connection, handshake done."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("no handshake answer")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    assert head.endswith(b"\r\n\r\n"), "nothing may follow the 101 here"
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Side:
    """One fastws build served under callgrind."""

    def __init__(self, name: str, python: str, tree: Path, env: dict[str, str], out: Path):
        self.name, self.python, self.tree, self.env, self.out = name, python, tree, env, out
        self.proc: subprocess.Popen | None = None
        self.port = 0

    def start(self, timeout: float) -> None:
        self.port = compare.free_port()
        script = self.tree / "bench" / "servers" / "fastws_server.py"
        cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
               f"--callgrind-out-file={self.out}/{self.name}.%p.out",
               self.python, str(script), str(self.port)]
        env = {**os.environ, **self.env}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL,
                                     stderr=open(self.out / f"{self.name}.log", "w"))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name}: server exited; see {self.out}/{self.name}.log")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"{self.name}: server did not listen within {timeout:.0f} s")

    def control(self, flag: str) -> None:
        subprocess.run(["callgrind_control", flag, str(self.proc.pid)], check=True,
                       stderr=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, timeout=120)

    def newest_dump(self) -> Path:
        """The file of the newest dump."""
        return max(self.out.glob(f"{self.name}.{self.proc.pid}.out.*"),
                   key=lambda p: int(p.suffix[1:]))

    def dumped(self) -> int:
        """Instructions in the newest dump (everything since the last zeroing)."""
        dumps = [self.newest_dump()]
        text = dumps[-1].read_text()
        m = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if m is None:
            raise SystemExit(f"{self.name}: no totals in {dumps[-1]}")
        return int(m.group(1))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def measure(side: Side, mode: str, messages: int, warmup: int, receivers: int,
            timeout: float, annotate: int = 0) -> dict:
    """Instructions for ``messages`` lockstep messages of ``mode`` on a fresh server."""
    side.start(timeout)
    try:
        if mode == "echo":
            payload = b"x" * 32
            frame = masked_text(payload)
            need = server_frame_len(payload)
            sock = open_ws(side.port, "/echo", timeout)

            def step() -> None:
                sock.sendall(frame)
                recv_exact(sock, need)
            socks = [sock]
        else:
            payload = b"y" * 64
            frame = masked_text(payload)
            need = server_frame_len(payload)
            members = [open_ws(side.port, "/fanout", timeout) for _ in range(receivers)]
            publisher = open_ws(side.port, "/fanout", timeout)

            def step() -> None:
                publisher.sendall(frame)
                for m in members:
                    recv_exact(m, need)
            socks = members + [publisher]
        side.control("--instr=on")  # instrumentation on
        for _ in range(warmup):
            step()
        side.control("-z")          # zero: count from here
        for _ in range(messages):
            step()
        side.control("-d")          # dump what the N messages cost
        total = side.dumped()
        if annotate:
            print(f"\n--- {side.name} {mode}: where the instructions go "
                  f"(callgrind_annotate, per {messages} messages)")
            out = subprocess.run(["callgrind_annotate", "--inclusive=no", str(side.newest_dump())],
                                 capture_output=True, text=True)
            lines = out.stdout.splitlines()
            start = next((i for i, ln in enumerate(lines) if "file:function" in ln), 0)
            print("\n".join(lines[start:start + annotate + 2]), flush=True)
        for s in socks:
            s.close()
    finally:
        side.stop()
    per = total / messages
    out = {"instructions": total, "messages": messages, "per_message": per}
    if mode == "fanout":
        out.update(receivers=receivers, per_delivered=per / receivers)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", type=Path, help="another fastws checkout to count too")
    ap.add_argument("--base-python", help="its interpreter (default BASE/.venv/bin/python)")
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for this build's server")
    ap.add_argument("--base-env", action="append", default=[], help="KEY=VALUE for the base's server")
    ap.add_argument("--modes", default="echo,fanout")
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--receivers", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per side (the count repeats to within a fraction of a percent)")
    ap.add_argument("--timeout", type=float, default=180.0)
    ap.add_argument("--annotate", type=int, default=0, metavar="N",
                    help="also print the N functions with the most instructions of their own")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()

    def env_of(pairs: list[str]) -> dict[str, str]:
        out = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep:
                raise SystemExit(f"instructions: want KEY=VALUE, got {pair!r}")
            out[key] = value
        return out

    modes = [m for m in args.modes.split(",") if m]
    for m in modes:
        if m not in ("echo", "fanout"):
            raise SystemExit(f"instructions: unknown mode {m!r} (echo, fanout)")
    work = Path(tempfile.mkdtemp(prefix="fastws-callgrind-"))
    sides = []
    if args.base is not None:
        base = args.base.resolve()
        sides.append(Side("base", args.base_python or str(base / ".venv" / "bin" / "python"),
                          base, env_of(args.base_env), work))
    sides.append(Side("new", sys.executable, HERE.parent, env_of(args.env), work))

    results: dict[str, dict[str, list[dict]]] = {s.name: {m: [] for m in modes} for s in sides}
    for r in range(args.repeat):
        for mode in modes:
            for side in (sides if r % 2 == 0 else sides[::-1]):
                res = measure(side, mode, args.messages, args.warmup, args.receivers, args.timeout,
                              args.annotate)
                results[side.name][mode].append(res)
                key = "per_delivered" if mode == "fanout" else "per_message"
                print(f"instructions: {side.name} {mode}: {res[key]:,.0f} per "
                      f"{'delivered ' if mode == 'fanout' else ''}message", flush=True)

    print()
    cols = [s.name for s in sides]
    print("| figure | " + " | ".join(cols) + (" | new / base |" if len(cols) == 2 else " |"))
    print("| --- | " + " | ".join("---:" for _ in cols) + (" | ---: |" if len(cols) == 2 else " |"))
    rows = []
    if "echo" in modes:
        rows.append(("echo: instructions per message", "echo", "per_message"))
    if "fanout" in modes:
        rows.append((f"fan-out to {args.receivers:,}: per delivered message", "fanout", "per_delivered"))
        rows.append((f"fan-out to {args.receivers:,}: per broadcast", "fanout", "per_message"))
    for label, mode, key in rows:
        vals = [min(x[key] for x in results[c][mode]) for c in cols]
        line = f"| {label} | " + " | ".join(f"{v:,.0f}" for v in vals)
        if len(vals) == 2:
            line += f" | {vals[1] / vals[0]:.3f}"
        print(line + " |")
    compare.save_results(args.out, "instructions", _dt.datetime.now(), {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "results": results})


if __name__ == "__main__":
    main()
