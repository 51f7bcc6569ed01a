"""Several worker processes on one port: ``fastws module:app --workers N`` or
``app.run(workers=N)``.

The supervisor (this module, in the process the user started) binds the
listening sockets once and starts N workers, each the user's own command
again (``sys.orig_argv``) with the sockets' descriptors passed down and
``FASTWS_WORKER_FDS`` in its environment; ``app.run`` in a worker sees it and
serves those sockets instead of supervising. Every worker accepts from the same
sockets (at most 128 connections per wake-up each, so one worker does not take a
whole burst). The sockets live in the supervisor, so the port keeps accepting
(the kernel queues connections in the backlog) while workers come and go.

- A worker that dies is replaced. A worker that dies before it was ready is
  retried with backoff (0.5 s, doubling); after ``START_ATTEMPTS`` such failures
  in a row, or at once if no worker has ever started, the supervisor exits 1
  (the worker's own error is on stderr, which workers share).
- SIGTERM or SIGINT: every worker gets SIGTERM (each closes its WebSockets with
  1001 after flushing what was sent); the supervisor waits for them and exits 0.
- SIGHUP: a rolling restart. One at a time, a new worker is started (importing
  the app afresh, so a deploy's new code is served), and once it is ready its
  predecessor gets SIGHUP: it stops accepting and drains its WebSockets with
  1012 service restart over ``drain_window``.

A worker tells the supervisor it is ready by writing one byte to the pipe named
by ``FASTWS_WORKER_READY``. Each worker also holds the read end of a lifeline
pipe (``FASTWS_SUPERVISOR_FD``) whose write end only the supervisor has: when
the supervisor is gone, however it went (SIGKILL included), the pipe reads EOF
and the worker shuts down as on SIGTERM, so no worker outlives its supervisor.
"""

from __future__ import annotations

import logging
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

__all__ = ["supervise", "worker_sockets", "worker_ready", "supervisor_lifeline", "START_FAILED",
           "START_ATTEMPTS"]

log = logging.getLogger("fastws.workers")

#: A worker's exit status when it could not start (bind, backplane, import).
START_FAILED = 3
#: Consecutive failures to start after which the supervisor gives up.
START_ATTEMPTS = 5


def worker_sockets() -> list[socket.socket] | None:
    """In a worker: the listening sockets its supervisor passed down; None
    when this process is not a worker."""
    fds = os.environ.get("FASTWS_WORKER_FDS")
    if not fds:
        return None
    socks = []
    for fd in fds.split(","):
        sock = socket.socket(fileno=int(fd))
        sock.setblocking(False)
        socks.append(sock)
    return socks


def worker_ready() -> None:
    """In a worker: tell the supervisor that this worker serves now."""
    fd = os.environ.pop("FASTWS_WORKER_READY", None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"r")
        os.close(int(fd))
    except OSError:
        pass


def supervisor_lifeline() -> int | None:
    """In a worker: the descriptor that reads EOF once the supervisor is gone
    (None when this process is not a worker)."""
    fd = os.environ.get("FASTWS_SUPERVISOR_FD")
    return int(fd) if fd else None


@dataclass
class _Worker:
    slot: int
    proc: subprocess.Popen
    ready_fd: int
    ready: bool = False
    retiring: bool = False      # replaced by a rolling restart: its exit is expected
    started: float = field(default_factory=time.monotonic)


class Supervisor:
    """Starts, watches, replaces and stops the workers (see the module doc)."""

    def __init__(self, argv: list[str], socks: list[socket.socket], n: int,
                 stop_timeout: float, announce: str | None = None) -> None:
        self.argv = argv
        self.announce = announce
        self.socks = socks
        self.n = n
        self.stop_timeout = stop_timeout
        self.workers: dict[int, _Worker] = {}       # pid -> worker
        self.sel = selectors.DefaultSelector()
        self.ever_ready = False
        self.failures = 0
        self.stopping = False
        self.rolling: list[int] = []                # slots still to replace
        self.replacing: dict[int, int] = {}         # slot -> pid of the predecessor
        self._signals: list[int] = []
        self._retry_at: dict[int, float] = {}       # slot -> when to start it again
        # The lifeline: workers read EOF here when this process is gone. Only
        # the read end is passed down (a worker holding the write end would
        # keep every lifeline open).
        self._lifeline, self._lifeline_w = os.pipe()

    def _spawn(self, slot: int) -> _Worker:
        r, w = os.pipe()
        env = dict(os.environ)
        env["FASTWS_WORKER_FDS"] = ",".join(str(s.fileno()) for s in self.socks)
        env["FASTWS_WORKER_READY"] = str(w)
        env["FASTWS_WORKER_ID"] = str(slot)
        env["FASTWS_SUPERVISOR_FD"] = str(self._lifeline)
        proc = subprocess.Popen(self.argv, env=env,
                                pass_fds=[s.fileno() for s in self.socks] + [w, self._lifeline])
        os.close(w)
        worker = _Worker(slot, proc, r)
        self.workers[proc.pid] = worker
        self.sel.register(r, selectors.EVENT_READ, worker)
        log.info("worker %d started (pid %d)", slot, proc.pid)
        return worker

    def _on_signal(self, signum: int, frame) -> None:
        self._signals.append(signum)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        for slot in range(self.n):
            self._spawn(slot)
        while True:
            for key, _ in self.sel.select(timeout=0.1):
                self._ready(key.data)
            while self._signals:
                sig = self._signals.pop(0)
                if sig == signal.SIGHUP and not self.stopping:
                    self._start_rolling()
                elif sig in (signal.SIGTERM, signal.SIGINT):
                    return self._stop_all()
            status = self._reap()
            if status is not None:
                self._stop_all()
                return status
            now = time.monotonic()
            for slot, at in list(self._retry_at.items()):
                if now >= at:
                    del self._retry_at[slot]
                    self._spawn(slot)
            self._next_rolling()

    def _close_ready(self, worker: _Worker) -> None:
        # Once: the descriptor's number is soon another worker's pipe.
        if worker.ready_fd >= 0:
            self.sel.unregister(worker.ready_fd)
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    def _ready(self, worker: _Worker) -> None:
        try:
            data = os.read(worker.ready_fd, 16)
        except OSError:
            data = b""
        self._close_ready(worker)
        if not data:
            return      # it exited before it was ready; _reap decides
        worker.ready = True
        self.ever_ready = True
        self.failures = 0
        log.info("worker %d ready (pid %d)", worker.slot, worker.proc.pid)
        if self.announce is not None and sum(w.ready for w in self.workers.values()) >= self.n:
            logging.getLogger("fastws").info("%s", self.announce)
            self.announce = None
        old = self.replacing.pop(worker.slot, None)
        if old is not None and old in self.workers:
            self.workers[old].retiring = True
            self._kill(old, signal.SIGHUP)          # drain with 1012

    def _reap(self) -> int | None:
        """Collect exited workers; restart them; the exit status to stop with, if any."""
        for pid, worker in list(self.workers.items()):
            code = worker.proc.poll()
            if code is None:
                continue
            del self.workers[pid]
            self._close_ready(worker)
            if worker.retiring or self.stopping:
                log.info("worker %d (pid %d) exited with %s after its replacement took over",
                         worker.slot, pid, code)
                continue
            if not worker.ready:
                self.failures += 1
                log.error("worker %d (pid %d) exited with status %s before it was ready",
                          worker.slot, pid, code)
                if not self.ever_ready or self.failures >= START_ATTEMPTS:
                    log.error("workers cannot start (see the worker's error above); giving up")
                    return 1
                self.replacing.pop(worker.slot, None)
                self._retry_at[worker.slot] = time.monotonic() + 0.5 * 2 ** (self.failures - 1)
                continue
            log.warning("worker %d (pid %d) died with status %s; starting a new one",
                        worker.slot, pid, code)
            self._spawn(worker.slot)
        return None

    def _start_rolling(self) -> None:
        log.info("SIGHUP: replacing %d worker(s) one at a time", len(self.workers))
        self.rolling = sorted({w.slot for w in self.workers.values() if not w.retiring})

    def _next_rolling(self) -> None:
        if self.replacing or not self.rolling or self._retry_at:
            return
        slot = self.rolling.pop(0)
        current = [pid for pid, w in self.workers.items() if w.slot == slot and not w.retiring]
        if not current:
            return
        self.replacing[slot] = current[0]
        self._spawn(slot)

    def _kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _stop_all(self) -> int:
        self.stopping = True
        log.info("stopping %d worker(s)", len(self.workers))
        for pid in list(self.workers):
            self._kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while self.workers and time.monotonic() < deadline:
            for pid, worker in list(self.workers.items()):
                if worker.proc.poll() is not None:
                    del self.workers[pid]
            time.sleep(0.05)
        for pid, worker in list(self.workers.items()):
            log.warning("worker %d (pid %d) did not stop in %.0fs; killing it",
                        worker.slot, pid, self.stop_timeout)
            worker.proc.kill()
            worker.proc.wait()
        for s in self.socks:
            s.close()
        return 0


def supervise(n: int, socks: list[socket.socket], stop_timeout: float,
              argv: list[str] | None = None, watch: list[str] | None = None,
              announce: str | None = None) -> int:
    """Run ``n`` workers on ``socks`` until SIGTERM/SIGINT; the exit status.
    With ``watch`` (directories), a change to a file in them replaces the
    workers as SIGHUP does (``--reload``). ``announce`` is logged once, when
    every worker has become ready for the first time."""
    if argv is None:
        argv = list(getattr(sys, "orig_argv", [sys.executable] + sys.argv))
        argv[0] = sys.executable
    for s in socks:
        os.set_inheritable(s.fileno(), True)
    # Workers share their metrics through files here (fastws.metrics).
    metrics_dir = tempfile.mkdtemp(prefix="fastws-metrics-")
    os.environ["FASTWS_METRICS_DIR"] = metrics_dir
    supervisor = Supervisor(argv, socks, n, stop_timeout, announce)
    try:
        return _supervise(supervisor, watch)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)


def _supervise(supervisor: Supervisor, watch: list[str] | None) -> int:
    """Run ``supervisor``; with ``watch``, a thread turns file changes into SIGHUPs."""
    if watch:
        try:
            import watchfiles
        except ImportError:
            log.error("--reload needs watchfiles: pip install watchfiles (or 'fastws[dev]')")
            return 1
        stop = threading.Event()

        def watcher() -> None:
            for changes in watchfiles.watch(*watch, stop_event=stop, debounce=200,
                                            watch_filter=watchfiles.PythonFilter()):
                log.info("reload: %s changed", ", ".join(sorted({os.path.relpath(p) for _, p in changes}))[:200])
                supervisor._signals.append(signal.SIGHUP)

        threading.Thread(target=watcher, name="fastws-reload", daemon=True).start()
        try:
            return supervisor.run()
        finally:
            stop.set()
    return supervisor.run()
