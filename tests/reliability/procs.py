"""Servers in child processes and the C load generator.

Tests that measure the server alone (its RSS) or signal it run it as a child:
``python -m tests.reliability.apps NAME OPTIONS_JSON``. The child listens on a
port the kernel picks; we find it in /proc, so nothing depends on log text.
Every wait here is bounded; every child is killed on the way out.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
LOADGEN_SRC = ROOT / "bench" / "loadgen.c"

__all__ = ["ROOT", "ServerProcess", "rss_kib", "hwm_kib", "listening_port",
           "raise_nofile_limit", "build_loadgen"]


def _status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise LookupError(f"{name} not in /proc/{pid}/status")


def rss_kib(pid: int) -> int:
    """Resident set size of ``pid`` now, in KiB."""
    return _status_field(pid, "VmRSS")


def hwm_kib(pid: int) -> int:
    """Peak resident set size of ``pid`` since it started, in KiB."""
    return _status_field(pid, "VmHWM")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue                 # closed between listdir and readlink
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening_port(pid: int) -> int | None:
    """The TCP port ``pid`` listens on at 127.0.0.1, or None (not yet)."""
    inodes = _socket_inodes(pid)
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state == "0A" and inode in inodes:          # 0A: LISTEN
                return int(local.split(":")[1], 16)
    return None


def raise_nofile_limit() -> int:
    """Lift the soft descriptor limit to the hard one; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class ServerProcess:
    """A fastws app from ``tests/reliability/apps.py`` running in a child process.

    Use as a context manager; ``stop()`` sends SIGTERM and returns the exit
    code; leaving the block kills whatever is left. The child's stdout and
    stderr go to ``log_path``.
    """

    def __init__(self, name: str, log_path: Path, **options: Any) -> None:
        self.name = name
        self.log_path = log_path
        self.options = options
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    def __enter__(self) -> ServerProcess:
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.apps", self.name, json.dumps(self.options)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log()}")
            port = listening_port(self.proc.pid)
            if port:
                self.port = port
                return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"server {self.name} did not listen within 30 s:\n{self.log()}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        """The child's resident set size now, in KiB."""
        return rss_kib(self.pid)

    def hwm_kib(self) -> int:
        """The child's peak resident set size so far, in KiB."""
        return hwm_kib(self.pid)

    def url(self, path: str, scheme: str = "ws") -> str:
        """A URL on the child's port."""
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stats(self, query: str = "") -> dict[str, Any]:
        """GET /stats (with ``query``, e.g. "gc=1"): what the app counted
        (each app in apps.py serves one)."""
        path = f"/stats?{query}" if query else "/stats"
        with urllib.request.urlopen(self.url(path, "http"), timeout=30) as resp:
            return json.loads(resp.read())

    def log(self) -> str:
        """What the child printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Signal the child and wait for it to exit; its exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout)


def build_loadgen(out_dir: Path) -> Path:
    """Compile bench/loadgen.c with the system C compiler into ``out_dir``."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) to build bench/loadgen.c")
    exe = out_dir / "loadgen"
    subprocess.run([cc, "-O2", "-o", str(exe), str(LOADGEN_SRC)], check=True, timeout=120)
    return exe
