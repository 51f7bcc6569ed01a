#!/usr/bin/env python3
"""Run fastws and its peer WebSocket servers through the same load, one after another.

One command (see bench/README.md, "Server comparison"):

    python bench/compare.py            # full run: about 10 minutes on a 2-core machine
    python bench/compare.py --quick    # smoke run: about 2.5 minutes
    python bench/compare.py --modes fanout-deflate   # compression: about 5 minutes

Each measurement starts a fresh server pinned to CPU 0 and the C load generator
(bench/loadgen.c, built here with the system compiler) pinned to CPU 1. The figure that
stays stable on a shared machine is the server's CPU time (utime + stime from
/proc/PID/stat, read by the load generator at the edges of the measured window) per
delivered message. Prints markdown tables; writes bench/results/compare-<stamp>.json and
a PNG chart of fan-out cost against room size. A server that cannot be installed or
started is reported as skipped with the reason; it never stops the run.

Mode ``fanout-deflate`` (not in the default run) is the compression benchmark: a
fan-out of 1 KiB JSON chat messages in which every client offers permessage-deflate,
run twice per server, compression off and on (BENCH_COMPRESSION=1 in the server's
environment), reporting server CPU and bytes on the wire per delivered message.

Modes ``rooms``, ``chat`` and ``chat-orjson`` (in the default run) are many small
rooms at once: 2,000 rooms of 5 by default (4 receivers and a publisher each, 10,000
sockets), every publisher keeping a few messages in flight. ``rooms`` relays binary
messages on ``/room/<name>``; ``chat`` is the seed's chat example on ``/chat/<room>``,
JSON events in and ``{"user", "message", "timestamp"}`` objects broadcast to the room;
``chat-orjson`` is fastws alone with orjson as its JSON codec (BENCH_JSON=orjson). The
``floor`` server (a bare asyncio.Protocol on uvloop that answers the upgrade and then
does nothing) takes part in ``idle`` only: the memory a connection costs before any
WebSocket server code.
"""
from __future__ import annotations

import argparse
import atexit
import contextlib
import datetime as _dt
import fcntl
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

BENCH = Path(__file__).resolve().parent
SERVERS_DIR = BENCH / "servers"
RESULTS = BENCH / "results"
BUILD = BENCH / "build"
HOST = "127.0.0.1"
SERVER_CPU, LOADGEN_CPU = 0, 1
DEFLATE_MODE = "fanout-deflate"
ROOMS_MODE, CHAT_MODE, CHAT_ORJSON_MODE = "rooms", "chat", "chat-orjson"
#: Every mode, in the order a server runs them.
ALL_MODES = ("echo", "fanout", "idle", ROOMS_MODE, CHAT_MODE, CHAT_ORJSON_MODE, DEFLATE_MODE)
#: The peers run the chat once, with their own JSON; the orjson variant is fastws's.
PEER_MODES = frozenset(ALL_MODES) - {CHAT_ORJSON_MODE}
#: The whole default run fits in about 10 minutes on the 2-core machine (the many-rooms
#: modes add about 3.5 of them); fanout-deflate is a benchmark of its own.
DEFAULT_MODES = "echo,fanout,idle,rooms,chat,chat-orjson"
#: Modes run on many small rooms (loadgen fanout --group), with their URL prefix.
GROUP_MODES = {ROOMS_MODE: "/room/g", CHAT_MODE: "/chat/g", CHAT_ORJSON_MODE: "/chat/g"}
#: loadgen keeps at most 16,384 messages in flight over all publishers (its RING / 4).
MAX_IN_FLIGHT = 16384
#: What Chrome and Firefox send: the server picks context takeover and windows.
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"


# ---------------------------------------------------------------- peer servers

@dataclass
class Server:
    """A peer: how to check it is installed, how to start it, what version it is."""

    name: str
    label: str
    command: Callable[[int], list[str]]
    check: Callable[[], str | None]          # None when usable, else why not
    version: Callable[[], str]
    compression: bool = True                 # its server file honours BENCH_COMPRESSION=1
    modes: frozenset[str] = frozenset(ALL_MODES)   # the modes it takes part in


def _python_server(script: str) -> Callable[[int], list[str]]:
    return lambda port: [sys.executable, str(SERVERS_DIR / script), str(port)]


def _needs_module(module: str) -> Callable[[], str | None]:
    def check() -> str | None:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError) as exc:
            return f"python module {module!r} unusable: {exc}"
        return None if found else f"python module {module!r} is not installed"
    return check


def _dist_version(dist: str) -> Callable[[], str]:
    def version() -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "?"
    return version


NODE_MODULES = BENCH / "node_modules"
BUN = NODE_MODULES / ".bin" / "bun"
_npm_state: dict[str, str | None] = {}


def ensure_npm_packages() -> str | None:
    """Install bench/package.json's packages once per run; None when they are usable."""
    if "error" in _npm_state:
        return _npm_state["error"]
    stamp = NODE_MODULES / ".package-lock.json"
    fresh = stamp.exists() and stamp.stat().st_mtime >= (BENCH / "package.json").stat().st_mtime
    error = None
    if not fresh:
        npm = shutil.which("npm")
        if not npm:
            error = "npm is not installed"
        else:
            print("compare: npm install in bench/ (ws, bun) ...", file=sys.stderr)
            try:
                proc = subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=BENCH,
                                      capture_output=True, text=True, timeout=600)
                if proc.returncode:
                    error = "npm install failed: " + _tail(proc.stderr, 300)
            except subprocess.TimeoutExpired:
                error = "npm install timed out"
    _npm_state["error"] = error
    return error


def _check_node() -> str | None:
    if not shutil.which("node"):
        return "node is not installed"
    error = ensure_npm_packages()
    if error:
        return error
    return None if (NODE_MODULES / "ws" / "package.json").exists() else "npm package ws missing"


def _check_bun() -> str | None:
    error = ensure_npm_packages()
    if error:
        return error
    if not BUN.exists():
        return "npm package bun installed no binary for this platform"
    try:
        subprocess.run([str(BUN), "--version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bun binary does not run: {exc}"
    return None


def _npm_version(package: str) -> str:
    try:
        return json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"


SERVERS = [
    Server("fastws", "fastws", _python_server("fastws_server.py"), _needs_module("fastws"),
           _dist_version("fastws")),
    Server("websockets", "websockets (uvloop)", _python_server("websockets_server.py"),
           _needs_module("websockets"), _dist_version("websockets"), modes=PEER_MODES),
    Server("picows", "picows", _python_server("picows_server.py"), _needs_module("picows"),
           _dist_version("picows"), compression=False, modes=PEER_MODES),
    Server("aiohttp", "aiohttp (uvloop)", _python_server("aiohttp_server.py"),
           _needs_module("aiohttp"), _dist_version("aiohttp"), modes=PEER_MODES),
    Server("node-ws", "Node ws", lambda port: ["node", str(SERVERS_DIR / "node_ws_server.js"),
                                               str(port)],
           _check_node, lambda: f"{_npm_version('ws')} (node {platform_node_version()})",
           modes=PEER_MODES),
    Server("bun", "Bun (uWebSockets)", lambda port: [str(BUN), str(SERVERS_DIR / "bun_server.js"),
                                                     str(port)],
           _check_bun, lambda: _npm_version("bun"), modes=PEER_MODES),
    Server("socketify", "socketify (uWebSockets)", _python_server("socketify_server.py"),
           _needs_module("socketify"), _dist_version("socketify"), modes=PEER_MODES),
    # Not a WebSocket server: the idle memory below which no uvloop server can go.
    Server("floor", "bare uvloop protocol", _python_server("floor_server.py"),
           _needs_module("uvloop"), lambda: f"(uvloop {_dist_version('uvloop')()})",
           compression=False, modes=frozenset({"idle"})),
]


def platform_node_version() -> str:
    """The installed Node.js version, or '?'."""
    try:
        return subprocess.run(["node", "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


# ------------------------------------------------------------ process hygiene

_live: list[subprocess.Popen] = []


def machine_facts() -> dict[str, Any]:
    """What a result depends on besides the code: cores, kernel, Python, and
    the TCP congestion control (BBR paces a socket's bursts with timers in
    the sender's kernel time, which moved fastws's 64 KiB fan-out from 0.84x
    Bun's CPU under CUBIC to 1.4x on this machine)."""
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            congestion = f.read().strip()
    except OSError:
        congestion = None
    return {"cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "tcp_congestion_control": congestion}


def _kill_group(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process and everything it spawned (each child runs in its own session)."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)
        except ProcessLookupError:
            pass
    # Servers may leave helpers behind in their group (node/bun workers): reap them too.
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc in _live:
        _live.remove(proc)


def _kill_all() -> None:
    for proc in list(_live):
        _kill_group(proc, grace=1.0)


def _on_terminate(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen:
    # Own session = own process group, so one killpg() stops the whole server.
    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=_raise_nofile, **kwargs)
    _live.append(proc)
    return proc


def _tail(text: str, limit: int = 400) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    out = " | ".join(lines[-4:])
    return out[-limit:]


# --------------------------------------------------------------- /proc readers

def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def wait_quiet(pid: int, settle: float = 0.5, limit: float = 10.0) -> None:
    """Wait until the server burns no CPU for `settle` seconds (bounded by `limit`)."""
    deadline = time.monotonic() + limit
    last = proc_cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(settle)
        now = proc_cpu_seconds(pid)
        if now == last:
            return
        last = now


# ------------------------------------------------------------------ building

def build_loadgen() -> Path:
    """Compile bench/loadgen.c with the system cc unless the binary is newer."""
    src = BENCH / "loadgen.c"
    exe = BUILD / "loadgen"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("compare: no C compiler (cc) found to build bench/loadgen.c")
    BUILD.mkdir(exist_ok=True)
    # zlib: the fanout-deflate mode inflates what the servers compress.
    proc = subprocess.run([cc, "-O2", "-Wall", "-DWITH_ZLIB", "-o", str(exe), str(src), "-lz"],
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        hint = ""
        if "zlib.h" in proc.stderr or "-lz" in proc.stderr or "lz" in proc.stderr:
            hint = ("\ncompare: bench/loadgen.c needs zlib's headers and library: "
                    "apt-get install zlib1g-dev (Debian/Ubuntu), dnf install zlib-devel (Fedora)")
        raise SystemExit(f"compare: building bench/loadgen.c failed:\n{proc.stderr.strip()}{hint}")
    if proc.stderr.strip():
        print(proc.stderr.strip(), file=sys.stderr)
    return exe


# ------------------------------------------------------------- one server run

class ServerFailed(Exception):
    """The server did not come up (or died); the message says why."""


def free_port() -> int:
    """An unused loopback port (the kernel picks it)."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def upgrade_ok(port: int, path: str) -> bool:
    """True when a WebSocket upgrade on `path` gets a 101 answer."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as s:
            s.sendall((f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 4096:
                chunk = s.recv(4096)
                if not chunk:
                    break
                head += chunk
            return head.startswith(b"HTTP/1.1 101")
    except OSError:
        return False


class RunningServer:
    """A server process pinned to its core, started fresh for one measurement."""

    def __init__(self, server: Server, pin: bool, log_dir: Path,
                 env: dict[str, str] | None = None) -> None:
        self.server = server
        self.port = free_port()
        self.log = log_dir / f"{server.name}.log"
        argv = server.command(self.port)
        if pin:
            argv = ["taskset", "-c", str(SERVER_CPU), *argv]
        self._log_file = open(self.log, "ab")
        self.proc = _spawn(argv, cwd=SERVERS_DIR, stdin=subprocess.DEVNULL,
                           stdout=self._log_file, stderr=subprocess.STDOUT,
                           env={**os.environ, **env} if env else None)

    def log_tail(self) -> str:
        try:
            return _tail(self.log.read_text(errors="replace"))
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 30.0, paths: tuple[str, ...] = ()) -> None:
        """Wait for upgrades on /echo, /fanout and `paths` (the measurement's own route)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerFailed(f"exited with code {self.proc.returncode}: {self.log_tail()}")
            if upgrade_ok(self.port, "/echo") and upgrade_ok(self.port, "/fanout"):
                missing = [path for path in paths if not upgrade_ok(self.port, path)]
                if not missing:
                    return
                if time.monotonic() + 2 > deadline:
                    raise ServerFailed(f"no WebSocket upgrade on {missing[0]}")
            time.sleep(0.2)
        raise ServerFailed(f"no WebSocket upgrade within {timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        _kill_group(self.proc)
        self._log_file.close()


def run_loadgen(loadgen: Path, pin: bool, mode: str, port: int, pid: int, args: list[str],
                timeout: float) -> dict:
    """Run one load-generator measurement and return its JSON result."""
    argv = [str(loadgen), mode, "--port", str(port), "--pid", str(pid), *args]
    if pin:
        argv = ["taskset", "-c", str(LOADGEN_CPU), *argv]
    proc = _spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"load generator timed out after {timeout:.0f} s"}
    finally:
        _kill_group(proc)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": f"load generator printed nothing (rc {proc.returncode}): {_tail(err)}"}
    result = json.loads(lines[-1])
    if err.strip() and "error" in result:
        result["stderr"] = _tail(err)
    return result


def run_idle(loadgen: Path, pin: bool, srv: RunningServer, conns: int, timeout: float) -> dict:
    """Hold `conns` connections and read the server's RSS growth per connection."""
    pid = srv.proc.pid
    wait_quiet(pid)
    before = proc_rss_kib(pid)
    argv = [str(loadgen), "idle", "--port", str(srv.port), "--pid", str(pid),
            "--conns", str(conns), "--hold-max", str(timeout)]
    if pin:
        argv = ["taskset", "-c", str(LOADGEN_CPU), *argv]
    proc = _spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                  stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        first = ""
        while time.monotonic() < deadline:
            first = proc.stdout.readline()         # the load generator flushes each line
            if not first or first.startswith("{"):
                break
        holding = json.loads(first) if first.startswith("{") else {}
        if holding.get("event") != "holding":
            out, err = proc.communicate(timeout=30)
            result = holding or {"error": f"no holding line: {_tail(err)}"}
            return result if "error" in result else {"error": "unexpected loadgen output"}
        wait_quiet(pid)
        after = proc_rss_kib(pid)
        out, err = proc.communicate(input="done\n", timeout=60)
    finally:
        _kill_group(proc)
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {"error": _tail(err)}
    if "error" in result:
        return result
    held = result.get("still_open", conns)
    result.update(rss_before_kib=before, rss_after_kib=after,
                  kib_per_conn=round((after - before) / max(held, 1), 2))
    return result


# ------------------------------------------------------------------ the plan

@dataclass
class Plan:
    """What to measure and for how long."""

    modes: list[str]
    rooms: list[int]
    table_rooms: list[int]
    echo_conns: int
    echo_inflight: int
    echo_size: int
    fanout_window: int
    fanout_size: int
    idle_conns: int
    warmup: float
    duration: float
    drain: float
    deflate_rooms: list[int]
    deflate_size: int
    deflate_offer: str
    # rooms / chat / chat-orjson: room_count rooms of room_members (one of them the
    # publisher), room_window messages in flight per publisher, chat_size bytes of
    # chat content (rooms send fanout_size bytes).
    room_count: int = 2000
    room_members: int = 5
    room_window: int = 4
    chat_size: int = 64
    # fanout, rooms, chat, chat-orjson: clients speak the fastws.v1 subprotocol (loadgen
    # --v1; fastws only, bench/abtest.py --v1). Offsets need a server with history
    # (BENCH_HISTORY=N). echo, idle and fanout-deflate stay plain.
    v1: bool = False

    def timeout(self, conns: int) -> float:
        # Generous hang guard: setup of many connections + warm-up + window + drain.
        return 120 + conns / 50 + self.warmup + self.duration + self.drain


def measure_server(server: Server, plan: Plan, loadgen: Path, pin: bool, log_dir: Path) -> dict:
    """All modes for one server, each on a freshly started process."""
    out: dict[str, Any] = {"label": server.label}
    reason = server.check()
    if reason:
        return {**out, "status": "skipped", "reason": reason}
    out["version"] = server.version()
    # (mode, room, compression): compression is None outside fanout-deflate.
    runs: list[tuple[str, int | None, bool | None]] = []
    if "echo" in plan.modes:
        runs.append(("echo", None, None))
    if "fanout" in plan.modes:
        runs.extend(("fanout", room, None) for room in plan.rooms)
    if "idle" in plan.modes:
        runs.append(("idle", None, None))
    runs.extend((mode, None, None) for mode in GROUP_MODES if mode in plan.modes)
    if DEFLATE_MODE in plan.modes:
        runs.extend((DEFLATE_MODE, room, on) for room in plan.deflate_rooms
                    for on in (False, True))
    # A mode a server does not take part in is left out, not reported as an error:
    # its cells print as "–".
    runs = [run for run in runs if run[0] in server.modes]
    if not runs:
        return {**out, "status": "skipped",
                "reason": f"takes part in {', '.join(sorted(server.modes))} only"}
    for mode, room, compression in runs:
        tag = f"{mode} {room}" if room else mode
        if compression is not None:
            tag += " compression " + ("on" if compression else "off")
        if compression and not server.compression:
            result = {"error": "no permessage-deflate support in this server"}
            out.setdefault("fanout_deflate", {}).setdefault("on", {})[str(room)] = result
            _print_progress(server.name, tag, result)
            continue
        if mode == CHAT_ORJSON_MODE:
            if importlib.util.find_spec("orjson") is None:
                out[result_key(mode)] = result = {
                    "error": "orjson is not installed (pip install orjson, or the bench extra)"}
                _print_progress(server.name, tag, result)
                continue
            out["orjson_version"] = _dist_version("orjson")()
        env = {"BENCH_COMPRESSION": "1"} if compression else None
        if mode == CHAT_ORJSON_MODE:
            env = {"BENCH_JSON": "orjson"}
        print(f"compare: {server.name}: {tag} ...", file=sys.stderr, flush=True)
        srv = RunningServer(server, pin, log_dir, env=env)
        try:
            srv.wait_ready(paths=_ready_paths(mode))
        except ServerFailed as exc:
            srv.stop()
            if not any(result_key(m) in out for m in ALL_MODES):
                return {**out, "status": "skipped", "reason": f"did not start: {exc}"}
            result: dict = {"error": f"did not start: {exc}"}
        else:
            try:
                result = _measure_one(srv, mode, room, plan, loadgen, pin)
            except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as exc:
                result = {"error": f"harness error: {type(exc).__name__}: {exc}"}
            try:
                if "error" in result and srv.proc.poll() is not None:
                    result["server_log"] = srv.log_tail()
            finally:
                srv.stop()
        if mode == "fanout":
            out.setdefault("fanout", {})[str(room)] = result
        elif mode == DEFLATE_MODE:
            state = "on" if compression else "off"
            out.setdefault("fanout_deflate", {}).setdefault(state, {})[str(room)] = result
        else:
            out[result_key(mode)] = result
        _print_progress(server.name, tag, result)
    out["status"] = "ok"
    return out


def result_key(mode: str) -> str:
    """Where a mode's results sit in a server's JSON entry: the mode, '-' as '_'."""
    return mode.replace("-", "_")


def _ready_paths(mode: str) -> tuple[str, ...]:
    # The route the measurement needs, besides /echo and /fanout: a server that lacks it
    # fails here with a clear reason instead of timing out on the load generator's probe.
    prefix = GROUP_MODES.get(mode)
    if prefix is None:
        return ()
    return (prefix + "ready?user=ready",)


def _measure_one(srv: RunningServer, mode: str, room: int | None, plan: Plan, loadgen: Path,
                 pin: bool) -> dict:
    pid = srv.proc.pid
    wait_quiet(pid, settle=0.3, limit=5)
    timing = ["--warmup", str(plan.warmup), "--duration", str(plan.duration)]
    v1 = ["--v1"] if plan.v1 else []
    if mode == "echo":
        args = ["--conns", str(plan.echo_conns), "--inflight", str(plan.echo_inflight),
                "--size", str(plan.echo_size), *timing]
        result = run_loadgen(loadgen, pin, "echo", srv.port, pid, args,
                             plan.timeout(plan.echo_conns))
    elif mode == "fanout":
        args = ["--receivers", str(room), "--window", str(plan.fanout_window),
                "--size", str(plan.fanout_size), "--drain", str(plan.drain), *v1, *timing]
        result = run_loadgen(loadgen, pin, "fanout", srv.port, pid, args, plan.timeout(room))
    elif mode in GROUP_MODES:
        # Rooms of room_members: room_members - 1 receivers (loadgen --group K) and one
        # publisher, itself a member, whose messages the server sends to the others only.
        per_room = plan.room_members - 1
        receivers = plan.room_count * per_room
        chat = mode != ROOMS_MODE
        args = ["--receivers", str(receivers), "--group", str(per_room),
                "--path", GROUP_MODES[mode], "--window", str(plan.room_window),
                "--size", str(plan.chat_size if chat else plan.fanout_size),
                "--drain", str(plan.drain), *(["--chat"] if chat else []), *v1, *timing]
        result = run_loadgen(loadgen, pin, "fanout", srv.port, pid, args,
                             plan.timeout(receivers + plan.room_count))
    elif mode == DEFLATE_MODE:
        # Every client offers permessage-deflate (as browsers do) whether or not the
        # server has it on; messages are 1 KiB JSON texts, each byte checked.
        args = ["--receivers", str(room), "--window", str(plan.fanout_window),
                "--size", str(plan.deflate_size), "--drain", str(plan.drain),
                "--json", "--deflate", "--offer", plan.deflate_offer, *timing]
        result = run_loadgen(loadgen, pin, "fanout", srv.port, pid, args, plan.timeout(room))
    else:
        result = run_idle(loadgen, pin, srv, plan.idle_conns, plan.timeout(plan.idle_conns))
    if "duration_s" in result and result.get("server_cpu_s", -1) >= 0 and result["duration_s"]:
        result["server_cpu_pct"] = round(100 * result["server_cpu_s"] / result["duration_s"], 1)
    return result


def _print_progress(name: str, tag: str, r: dict) -> None:
    if "error" in r:
        msg = f"ERROR {r['error']}"
    elif "kib_per_conn" in r:
        msg = f"{r['kib_per_conn']} KiB/conn over {r['connections']} connections"
    else:
        msg = (f"{r['msg_per_s']:,.0f} msg/s, {r['server_cpu_us_per_msg']:.2f} server CPU us/msg"
               f", p99 {r['latency_us']['p99']:,.0f} us")
        if "lost" in r:
            msg += f", lost {r['lost']}"
        if r.get("json") or r.get("chat"):
            msg += (f", {r['wire_bytes_per_msg']:,.0f} B/msg on the wire, "
                    f"{r['compressed']:,} compressed, {r['corrupt']} corrupt")
        if r.get("v1"):
            msg += (f", fastws.v1: {r['v1_gaps']} gaps, {r['v1_epochs_changed']} epochs changed, "
                    f"{r['v1_unpositioned']:,} unpositioned")
    print(f"compare: {name}: {tag}: {msg}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------- report

def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "–"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}f}"


def _get(res: dict, *path: str) -> Any:
    for key in path:
        if not isinstance(res, dict) or key not in res:
            return None
        res = res[key]
    return res


def _ok(res: dict | None) -> dict | None:
    return res if isinstance(res, dict) and "error" not in res else None


def metrics(entry: dict, table_rooms: list[int]) -> dict[str, float | None]:
    """The summary figures of one server (None where not measured)."""
    echo = _ok(entry.get("echo"))
    m: dict[str, float | None] = {
        "echo_msg_s": echo["msg_per_s"] if echo else None,
        "echo_cpu": echo["server_cpu_us_per_msg"] if echo and echo["server_cpu_us_per_msg"] >= 0
        else None,
        "echo_p99": echo["latency_us"]["p99"] if echo else None,
    }
    for room in table_rooms:
        fan = _ok(_get(entry, "fanout", str(room)))
        m[f"fan{room}_cpu"] = (fan["server_cpu_us_per_msg"]
                               if fan and fan["server_cpu_us_per_msg"] >= 0 else None)
        m[f"fan{room}_lost"] = fan["lost"] if fan else None
    idle = _ok(entry.get("idle"))
    m["idle_kib"] = idle["kib_per_conn"] if idle else None
    return m


# Which way is better for each summary figure: msg/s up, the rest down.
HIGHER_IS_BETTER = {"echo_msg_s"}


def _room_label(room: int) -> str:
    return f"{room:,}"


def render_tables(data: dict, baseline: str) -> str:
    """Markdown: summary, ratios against the baseline, details, skipped servers."""
    servers = data["servers"]
    rooms = data["plan"]["table_rooms"]
    ran = [name for name, e in servers.items() if e.get("status") == "ok"]
    lines: list[str] = []
    head = ["server", "echo msg/s", "echo CPU µs/msg", "echo p99 µs"]
    for room in rooms:
        head += [f"fan-out {_room_label(room)}: CPU µs/msg", f"lost ({_room_label(room)})"]
    head.append(f"idle KiB/conn ({data['plan']['idle_conns']:,})")
    lines += [f"| {' | '.join(head)} |", f"|{' --- |' * len(head)}"]
    for name in ran:
        e = servers[name]
        m = metrics(e, rooms)
        row = [f"{e['label']} {e.get('version', '')}".strip(), _num(m["echo_msg_s"], 0),
               _num(m["echo_cpu"]), _num(m["echo_p99"], 0)]
        for room in rooms:
            lost = m[f"fan{room}_lost"]
            row += [_num(m[f"fan{room}_cpu"]), "–" if lost is None else f"{lost:,}"]
        row.append(_num(m["idle_kib"], 1))
        lines.append(f"| {' | '.join(row)} |")

    base = servers.get(baseline, {})
    lines.append("")
    if base.get("status") != "ok":
        why = base.get("reason", "not in this run")
        lines.append(f"Ratios against {baseline}: not available ({baseline} skipped: {why}).")
    else:
        bm = metrics(base, rooms)
        lines.append(f"Ratios against {baseline}: how many times better {baseline} is on each "
                     f"figure (peer ÷ {baseline} for costs and latency, {baseline} ÷ peer for "
                     f"msg/s); above 1× means {baseline} is ahead of that peer.")
        lines.append("")
        keys = ["echo_msg_s", "echo_cpu", "echo_p99"] + [f"fan{r}_cpu" for r in rooms] + \
               ["idle_kib"]
        rhead = ["peer", "echo msg/s", "echo CPU", "echo p99"] + \
                [f"fan-out {_room_label(r)} CPU" for r in rooms] + ["idle KiB/conn"]
        lines += [f"| {' | '.join(rhead)} |", f"|{' --- |' * len(rhead)}"]
        for name in ran:
            if name == baseline:
                continue
            m = metrics(servers[name], rooms)
            cells = []
            for k in keys:
                a, b = bm[k], m[k]
                if not a or not b:
                    cells.append("–")
                    continue
                ratio = a / b if k in HIGHER_IS_BETTER else b / a
                cells.append(f"{ratio:.2f}×")
            lines.append(f"| {servers[name]['label']} | {' | '.join(cells)} |")

    # Detail tables only for modes that ran (the floor server, e.g., runs idle alone).
    if any(servers[name].get("fanout") for name in ran):
        lines += ["", "Fan-out detail (1 publisher, "
                  f"{data['plan']['fanout_window']} × {data['plan']['fanout_size']} B in flight):",
                  "", "| server | receivers | delivered msg/s | server CPU µs/msg | server CPU % | "
                  "p50 ms | p99 ms | lost | loadgen CPU % |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in ran:
        for room, r in sorted(servers[name].get("fanout", {}).items(), key=lambda kv: int(kv[0])):
            label = servers[name]["label"]
            if "error" in r:
                lines.append(f"| {label} | {int(room):,} | error: {r['error']} | | | | | | |")
                continue
            lines.append(
                f"| {label} | {int(room):,} | {_num(r['msg_per_s'], 0)} | "
                f"{_num(r['server_cpu_us_per_msg'])} | {_num(r.get('server_cpu_pct'), 0)} | "
                f"{r['latency_us']['p50'] / 1000:.2f} | {r['latency_us']['p99'] / 1000:.2f} | "
                f"{r['lost']:,} | {_num(r['loadgen_cpu_pct'], 0)} |")
    p = data["plan"]
    if any(servers[name].get("echo") for name in ran):
        lines += ["", f"Echo detail ({p['echo_conns']} connections × {p['echo_inflight']} in "
                  f"flight × {p['echo_size']} B):", "",
                  "| server | msg/s | p50 µs | p99 µs | server CPU µs/msg | server CPU % | "
                  "loadgen CPU % |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in ran:
        r = servers[name].get("echo")
        if r is None:
            continue
        label = servers[name]["label"]
        if "error" in r:
            lines.append(f"| {label} | error: {r['error']} | | | | | |")
            continue
        lines.append(f"| {label} | {_num(r['msg_per_s'], 0)} | {_num(r['latency_us']['p50'], 0)} "
                     f"| {_num(r['latency_us']['p99'], 0)} | {_num(r['server_cpu_us_per_msg'])} | "
                     f"{_num(r.get('server_cpu_pct'), 0)} | {_num(r['loadgen_cpu_pct'], 0)} |")
    idle_rows = [(n, servers[n].get("idle")) for n in ran if servers[n].get("idle")]
    if idle_rows:
        lines += ["", "Idle detail:", "", "| server | connections | RSS before MiB | "
                  "RSS after MiB | KiB/conn |", "| --- | --- | --- | --- | --- |"]
        for name, r in idle_rows:
            label = servers[name]["label"]
            if "error" in r:
                lines.append(f"| {label} | error: {r['error']} | | | |")
                continue
            lines.append(f"| {label} | {r['connections']:,} | {r['rss_before_kib'] / 1024:.1f} | "
                         f"{r['rss_after_kib'] / 1024:.1f} | {r['kib_per_conn']:.1f} |")
    lines += _skipped_lines(servers)
    return "\n".join(lines)


def group_metrics(entry: dict, mode: str) -> dict[str, float | None]:
    """The figures of one server in a many-rooms mode (None where not measured)."""
    r = _ok(entry.get(result_key(mode)))
    if not r:
        return {"cpu": None, "msg_s": None, "p99": None, "lost": None, "corrupt": None}
    return {"cpu": r["server_cpu_us_per_msg"] if r["server_cpu_us_per_msg"] >= 0 else None,
            "msg_s": r["msg_per_s"], "p99": r["latency_us"]["p99"], "lost": r["lost"],
            "corrupt": r.get("corrupt")}


def _times(base: float | None, peer: float | None, higher_is_better: bool = False) -> str:
    # "How many times better the baseline is", as in the summary's ratio table.
    if not base or not peer:
        return "–"
    return f"{(base / peer if higher_is_better else peer / base):.2f}×"


def _skipped_lines(servers: dict) -> list[str]:
    skipped = [e for e in servers.values() if e.get("status") != "ok"]
    if not skipped:
        return []
    return ["", "Skipped:", ""] + [f"- {e['label']}: {e.get('reason', '?')}" for e in skipped]


def render_groups(data: dict, baseline: str, skipped_too: bool = False) -> str:
    """Markdown for the many-rooms modes: one table for rooms, one for the JSON chat
    (its orjson variant as an extra row), each with ratios against the baseline."""
    plan = data["plan"]
    servers = data["servers"]
    ran = [name for name, e in servers.items() if e.get("status") == "ok"]
    members = plan["room_members"]
    rooms_of = (f"{plan['room_count']:,} rooms of {members} ({members - 1} receivers and "
                f"1 publisher each, {plan['room_count'] * members:,} sockets), "
                f"{plan['room_window']} messages in flight per publisher")
    tables = [
        ((ROOMS_MODE,), False,
         f"Many rooms: {rooms_of}, {plan['fanout_size']} B binary messages on `/room/<name>`, "
         "each sent to the room's other members:"),
        ((CHAT_MODE, CHAT_ORJSON_MODE), True,
         f"JSON chat: {rooms_of}; the publisher sends `{{\"type\":\"message\",\"content\":"
         f"\"<{plan['chat_size']} B>\"}}` to `/chat/<room>?user=<name>` and the server broadcasts "
         "`{\"user\", \"message\", \"timestamp\"}` to the others: stdlib json in the Python "
         "servers (fastws through its JSON events), JSON.parse/stringify in Node and Bun; "
         "the `+ orjson` row is fastws with `websocket(dumps=orjson.dumps, loads=orjson.loads)`:"),
    ]
    lines: list[str] = []
    for modes, chat, title in tables:
        if not any(mode in plan["modes"] for mode in modes):
            continue
        base = group_metrics(servers.get(baseline, {}), modes[0])
        head = ["server", "delivered msg/s", "server CPU µs/msg", f"CPU vs {baseline}",
                f"msg/s vs {baseline}", "server CPU %", "p50 ms", "p99 ms", "lost"]
        head += ["corrupt"] if chat else []
        head += ["loadgen CPU %"]
        if lines:
            lines.append("")
        lines += [title, "", f"| {' | '.join(head)} |", f"|{' --- |' * len(head)}"]
        for name in ran:
            entry = servers[name]
            for mode in modes:
                r = entry.get(result_key(mode))
                if r is None:
                    continue                     # not a mode this server takes part in
                label = f"{entry['label']} {entry.get('version', '')}".strip()
                if mode == CHAT_ORJSON_MODE:
                    label += f" + orjson {entry.get('orjson_version', '')}".rstrip()
                if "error" in r:
                    lines.append(f"| {label} | error: {r['error']} |" + " |" * (len(head) - 2))
                    continue
                m = group_metrics(entry, mode)
                row = [label, _num(r["msg_per_s"], 0), _num(m["cpu"]),
                       _times(base["cpu"], m["cpu"]), _times(base["msg_s"], m["msg_s"], True),
                       _num(r.get("server_cpu_pct"), 0), f"{r['latency_us']['p50'] / 1000:.2f}",
                       f"{r['latency_us']['p99'] / 1000:.2f}", f"{r['lost']:,}"]
                row += [f"{r.get('corrupt', 0):,}"] if chat else []
                row += [_num(r["loadgen_cpu_pct"], 0)]
                lines.append(f"| {' | '.join(row)} |")
    if lines:
        lines += ["", f"\"vs {baseline}\": how many times better {baseline} is (peer ÷ {baseline} "
                  f"for CPU, {baseline} ÷ peer for msg/s); above 1× means {baseline} is ahead."]
    if skipped_too:
        lines += _skipped_lines(servers)
    return "\n".join(lines)


def render_deflate(data: dict, skipped_too: bool = False) -> str:
    """Markdown for the fanout-deflate mode: each server with compression off and on."""
    plan = data["plan"]
    servers = data["servers"]
    lines = [(f"Compression: fan-out of {plan['deflate_size']:,} B JSON chat messages, "
              f"{plan['fanout_window']} in flight, every client offering "
              f"`{plan['deflate_offer']}`:"), "",
             ("| server | compression | receivers | server CPU µs/msg | wire B/msg | compressed "
              "| delivered msg/s | server CPU % | p50 ms | p99 ms | lost | corrupt "
              "| loadgen CPU % | extension agreed |"),
             "|" + " --- |" * 14]
    figures: dict[tuple[str, str, int], dict] = {}
    for name, entry in servers.items():
        if entry.get("status") != "ok" or "fanout_deflate" not in entry:
            continue
        for state in ("off", "on"):
            for room, r in sorted(entry["fanout_deflate"].get(state, {}).items(),
                                  key=lambda kv: int(kv[0])):
                label = entry["label"]
                if "error" in r:
                    lines.append(f"| {label} | {state} | {int(room):,} | error: {r['error']} |"
                                 + " |" * 10)
                    continue
                figures[(name, state, int(room))] = r
                share = 100 * r["compressed"] / r["messages"] if r["messages"] else 0
                lines.append(
                    f"| {label} | {state} | {int(room):,} | {_num(r['server_cpu_us_per_msg'])} | "
                    f"{_num(r['wire_bytes_per_msg'], 0)} | {share:.0f} % | "
                    f"{_num(r['msg_per_s'], 0)} | {_num(r.get('server_cpu_pct'), 0)} | "
                    f"{r['latency_us']['p50'] / 1000:.2f} | {r['latency_us']['p99'] / 1000:.2f} | "
                    f"{r['lost']:,} | {r['corrupt']:,} | {_num(r['loadgen_cpu_pct'], 0)} | "
                    f"{r.get('extension') or '–'} |")
    # The three comparisons the benchmark is for, where both sides ran.
    notes = []
    for room in plan["deflate_rooms"]:
        on = figures.get(("fastws", "on", room))
        for other, what in ((("fastws", "off", room), "fastws with compression off"),
                            (("websockets", "on", room), "websockets with compression on")):
            peer = figures.get(other)
            if not on or not peer:
                continue
            cpu = peer["server_cpu_us_per_msg"] / on["server_cpu_us_per_msg"] \
                if on["server_cpu_us_per_msg"] > 0 else float("nan")
            wire = peer["wire_bytes_per_msg"] / on["wire_bytes_per_msg"] \
                if on["wire_bytes_per_msg"] > 0 else float("nan")
            notes.append(f"- {room:,} receivers: {what} spends {cpu:.2f}× the server CPU "
                         f"and {wire:.2f}× the bytes per delivered message of fastws with "
                         "compression on.")
    if notes:
        lines += [""] + notes
    if skipped_too:
        lines += _skipped_lines(servers)
    return "\n".join(lines)


def _label_2_and_5(value: float, _pos: int) -> str:
    # Label minor log ticks at 2 and 5 per decade only, so they do not collide.
    if value <= 0:
        return ""
    mantissa = value / 10 ** math.floor(math.log10(value))
    return f"{value:g}" if round(mantissa) in (2, 5) else ""


def write_chart(data: dict, path: Path) -> str | None:
    """Fan-out server CPU per delivered message against room size; None or why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib, or the bench extra)"
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    plotted = 0
    p_rooms: set[int] = set()
    for name, entry in data["servers"].items():
        points = sorted((int(room), r["server_cpu_us_per_msg"])
                        for room, r in entry.get("fanout", {}).items()
                        if "error" not in r and r.get("server_cpu_us_per_msg", -1) > 0)
        if not points:
            continue
        xs, ys = zip(*points)
        p_rooms.update(xs)
        style = dict(linewidth=3, color="black") if name == "fastws" else dict(linewidth=1.5)
        ax.plot(xs, ys, marker="o", label=entry["label"], **style)
        plotted += 1
    if not plotted:
        plt.close(fig)
        return "no fan-out results to plot"
    ax.set_xscale("log")
    ax.set_yscale("log")
    # Plain numbers on both log axes, ticks at the measured room sizes.
    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    ax.set_xticks(sorted(p_rooms))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(_label_2_and_5))
    ax.set_xlabel("receivers in the room")
    ax.set_ylabel("server CPU µs per delivered message (log)")
    p = data["plan"]
    ax.set_title(f"Fan-out cost, 1 publisher, {p['fanout_window']} × {p['fanout_size']} B "
                 f"in flight ({data['date'][:10]})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------- main

MODES_HELP = """modes (--modes, comma-separated):
  echo            64 connections x 4 in flight x 32 B on /echo: msg/s, CPU, latency
  fanout          one room of R receivers (--rooms) and one publisher on /fanout
  idle            10,000 open idle connections: server RSS growth per connection
  rooms           many small rooms: --room-count rooms of --room-members on
                  /room/<name> (default 2,000 of 5: 4 receivers + 1 publisher each,
                  10,000 sockets), --room-window binary messages in flight per
                  publisher; delivered msg/s, server CPU per delivered message,
                  p50/p99, lost
  chat            the seed's chat example in the same rooms, on /chat/<room>:
                  {"type":"message","content":...} in, {"user","message","timestamp"}
                  broadcast to the room's others; every reply checked (corrupt)
  chat-orjson     chat with fastws using orjson (BENCH_JSON=orjson); fastws only,
                  reported as an extra row of the chat table
  fanout-deflate  1 KiB JSON fan-out with permessage-deflate off and on

Servers take part in the modes they can run; the others print as "-". The floor
server (bare uvloop protocol) runs idle only."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [s.name for s in SERVERS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=MODES_HELP,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--servers", default=",".join(names),
                    help=f"comma-separated subset of: {', '.join(names)} (default: all)")
    ap.add_argument("--modes", default=DEFAULT_MODES,
                    help=f"subset of {','.join(ALL_MODES)} (default: {DEFAULT_MODES}; see below)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: short phases, rooms of 50 and 200, 1,000 idle connections, "
                         "200 small rooms")
    ap.add_argument("--rooms", help="fan-out room sizes (default 100,1000,5000; quick 50,200)")
    ap.add_argument("--table-rooms", default="1000,5000",
                    help="rooms in the summary table (default 1000,5000, else the two largest run)")
    ap.add_argument("--echo", default="64x4x32", help="echo CONNSxINFLIGHTxBYTES (default 64x4x32)")
    ap.add_argument("--fanout-window", type=int, default=16, help="publisher messages in flight (default 16)")
    ap.add_argument("--fanout-size", type=int, default=64, help="fan-out message bytes, at least 16 (default 64)")
    ap.add_argument("--idle", type=int, help="idle connections (default 10000; quick 1000)")
    ap.add_argument("--warmup", type=float, help="seconds before measuring (default 2; quick 0.5)")
    ap.add_argument("--duration", type=float, help="measured seconds (default 8; quick 1.5)")
    ap.add_argument("--deflate-rooms", help="fanout-deflate room sizes (default 1000; quick 200)")
    ap.add_argument("--deflate-size", type=int, default=1024,
                    help="fanout-deflate JSON message bytes, at least 192 (default 1024)")
    ap.add_argument("--deflate-offer", default=BROWSER_OFFER,
                    help=f"Sec-WebSocket-Extensions the clients send (default {BROWSER_OFFER!r}, "
                         "what browsers offer)")
    ap.add_argument("--room-count", type=int,
                    help="rooms, chat: how many rooms (default 2000; quick 200)")
    ap.add_argument("--room-members", type=int, default=5,
                    help="rooms, chat: members per room, the publisher included (default 5)")
    ap.add_argument("--room-window", type=int, default=4,
                    help="rooms, chat: messages in flight per publisher (default 4)")
    ap.add_argument("--chat-size", type=int, default=64,
                    help="chat: bytes of each message's content, 32 to 65536 (default 64)")
    ap.add_argument("--baseline", default="fastws", help="server the ratios compare against (default fastws)")
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    ap.add_argument("--out", default=str(RESULTS), help="directory for the JSON and PNG (default bench/results)")
    ap.add_argument("--lock-wait", type=float, default=1200,
                    help="seconds to wait for another comparison on this machine (default 1200)")
    args = ap.parse_args(argv)
    unknown = set(args.servers.split(",")) - set(names)
    if unknown:
        ap.error(f"unknown server(s): {', '.join(sorted(unknown))}")
    bad_modes = set(args.modes.split(",")) - set(ALL_MODES)
    if bad_modes:
        ap.error(f"unknown mode(s): {', '.join(sorted(bad_modes))}")
    if args.room_members < 2:
        ap.error("--room-members: at least 2 (a publisher and a receiver)")
    if not 32 <= args.chat_size <= 65536:
        ap.error("--chat-size: 32 to 65536 bytes")
    rooms = args.room_count or (200 if args.quick else 2000)
    if rooms < 1 or args.room_window < 1 or rooms * args.room_window > MAX_IN_FLIGHT:
        ap.error(f"--room-count x --room-window: 1 to {MAX_IN_FLIGHT:,} messages in flight "
                 "(the load generator's limit)")
    return args


def make_plan(args: argparse.Namespace) -> Plan:
    """Resolve defaults (full or --quick) into one Plan."""
    quick = args.quick
    rooms = [int(r) for r in (args.rooms or ("50,200" if quick else "100,1000,5000")).split(",")]
    wanted = [int(r) for r in args.table_rooms.split(",")]
    table_rooms = wanted if all(r in rooms for r in wanted) else sorted(rooms)[-2:]
    try:
        conns, inflight, size = (int(x) for x in args.echo.lower().split("x"))
    except ValueError:
        raise SystemExit("--echo wants CONNSxINFLIGHTxBYTES, e.g. 64x4x32")
    return Plan(
        modes=args.modes.split(","), rooms=rooms, table_rooms=table_rooms,
        echo_conns=conns, echo_inflight=inflight, echo_size=size,
        fanout_window=args.fanout_window, fanout_size=max(args.fanout_size, 16),
        idle_conns=args.idle or (1000 if quick else 10000),
        warmup=args.warmup if args.warmup is not None else (0.5 if quick else 2.0),
        duration=args.duration if args.duration is not None else (1.5 if quick else 8.0),
        drain=2.0 if quick else 5.0,
        deflate_rooms=[int(r) for r in (args.deflate_rooms or ("200" if quick else "1000"))
                       .split(",")],
        deflate_size=max(args.deflate_size, 192),
        deflate_offer=args.deflate_offer,
        room_count=args.room_count or (200 if quick else 2000),
        room_members=args.room_members,
        room_window=args.room_window,
        chat_size=args.chat_size,
    )


LOCK_PATH = Path(tempfile.gettempdir()) / "fastws-compare.lock"


def take_machine_lock(wait_s: float) -> Any:
    """Hold a machine-wide lock: two comparisons pinned to the same cores spoil each other."""
    handle = open(LOCK_PATH, "w")
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit(f"compare: another comparison still holds {LOCK_PATH}")
            if not told:
                print(f"compare: another comparison is running; waiting up to {wait_s:.0f} s",
                      file=sys.stderr, flush=True)
                told = True
            time.sleep(1)


def save_results(out_dir: str | Path, kind: str, stamp: _dt.datetime, data: dict) -> Path:
    """Write one bench script's results as ``<out_dir>/<kind>-<date>-<time>.json``
    (with the date and, when given, the arguments) and print where."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{kind}-{stamp.strftime('%Y-%m-%d-%H%M%S')}.json"
    path.write_text(json.dumps({"date": stamp.isoformat(timespec="seconds"), **data},
                               indent=2) + "\n")
    print(f"\nJSON: {path}")
    return path


@contextlib.contextmanager
def pinned_session(lock_wait: float = 1200) -> Iterator[tuple[bool, Path]]:
    """For the other bench scripts: hold the machine lock, lift the descriptor
    limit, pin this process to the load generator's core; yields (pin, loadgen)."""
    with take_machine_lock(lock_wait):
        _raise_nofile()
        pin = bool(shutil.which("taskset")) and {SERVER_CPU, LOADGEN_CPU} <= os.sched_getaffinity(0)
        if pin:
            os.sched_setaffinity(0, {LOADGEN_CPU})
        yield pin, build_loadgen()


def main(argv: list[str] | None = None) -> int:
    """Run the comparison; print the tables; write JSON and PNG. Returns the exit code."""
    args = parse_args(argv)
    plan = make_plan(args)
    with take_machine_lock(args.lock_wait):
        return run(args, plan)


def run(args: argparse.Namespace, plan: Plan) -> int:
    """The comparison itself, with the machine lock held."""
    atexit.register(_kill_all)
    signal.signal(signal.SIGTERM, _on_terminate)
    _raise_nofile()
    cpus = os.sched_getaffinity(0)
    pin = not args.no_pin and bool(shutil.which("taskset")) and {SERVER_CPU, LOADGEN_CPU} <= cpus
    if pin:
        # Keep this script's own polling off the server's core.
        os.sched_setaffinity(0, {LOADGEN_CPU})
    else:
        print("compare: not pinning (taskset missing, --no-pin, or fewer than 2 CPUs)",
              file=sys.stderr)
    loadgen = build_loadgen()
    chosen = [s for s in SERVERS if s.name in args.servers.split(",")]
    stamp = _dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    data: dict[str, Any] = {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": {**machine_facts(), "pinned": pin},
        "plan": plan.__dict__, "servers": {},
    }
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fastws-compare-") as log_dir:
        for server in chosen:
            try:
                entry = measure_server(server, plan, loadgen, pin, Path(log_dir))
            except Exception as exc:  # one broken peer must not end the comparison
                entry = {"label": server.label, "status": "skipped",
                         "reason": f"harness error: {type(exc).__name__}: {exc}"}
            data["servers"][server.name] = entry
            if entry.get("status") != "ok":
                print(f"compare: {server.name}: skipped: {entry.get('reason')}", file=sys.stderr)
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"compare-{stamp}.json"
    png_path = out_dir / f"compare-{stamp}.png"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    main_modes = {"echo", "fanout", "idle"} & set(plan.modes)
    group_modes = set(GROUP_MODES) & set(plan.modes)
    print(f"## Server comparison ({data['date']}, {data['elapsed_s']:.0f} s)\n")
    if main_modes:
        print(render_tables(data, args.baseline))
    # The skipped servers are listed once, under the first section printed.
    if group_modes:
        if main_modes:
            print()
        print(render_groups(data, args.baseline, skipped_too=not main_modes))
    if DEFLATE_MODE in plan.modes:
        if main_modes or group_modes:
            print()
        print(render_deflate(data, skipped_too=not (main_modes or group_modes)))
    chart_error = write_chart(data, png_path) if "fanout" in plan.modes else "no fan-out run"
    print(f"\nJSON: {json_path}")
    print(f"chart: {png_path}" if chart_error is None else f"chart: not written ({chart_error})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
