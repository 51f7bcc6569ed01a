"""Fixtures for tests that cross processes: Redis, fastws nodes, a TCP proxy.

The shared Redis on 127.0.0.1:6379 serves tests that only read and write;
each test gets a key prefix of its own. Tests that kill or restart Redis start
their own ``redis-server`` on a free port (``own_redis``). Without a reachable
Redis these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ..integration.clients import free_port
from ..reliability.procs import ROOT, listening_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"


def redis_ping(port: int, host: str = "127.0.0.1", timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
            return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
    except OSError:
        return False


def need_redis(ok: bool, what: str) -> None:
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{what} is not reachable; under CI=true the Redis tests must run")
        pytest.skip(f"{what} is not reachable")


class Redis:
    """A redis-cli-free client for test assertions (RESP by hand, blocking)."""

    def __init__(self, port: int) -> None:
        self.port = port

    def call(self, *args: str) -> object:
        import hiredis
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(hiredis.pack_command(args))
            reader = hiredis.Reader()
            while True:
                reply = reader.gets()
                if reply is not False:
                    return reply
                data = s.recv(65536)
                if not data:
                    raise ConnectionError("redis closed")
                reader.feed(data)


class Shards:
    """Two redis-servers of the session's own: the sharded backplane's instances."""

    def __init__(self, tmp: Path) -> None:
        self.servers = [OwnRedis(tmp / f"shard{i}") for i in range(2)]

    def start(self) -> None:
        for r in self.servers:
            r.tmp.mkdir(parents=True, exist_ok=True)
            r.start()

    @property
    def url(self) -> str:
        return ",".join(r.url for r in self.servers)

    def stop(self) -> None:
        for r in self.servers:
            r.stop()


@pytest.fixture(scope="session")
def shards(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shards]:
    s = Shards(tmp_path_factory.mktemp("shards"))
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(params=["one", "sharded"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """The backplane URL of each Redis engine the contract tests run on: the
    shared Redis alone, and two instances of the session's own sharding the rooms."""
    if request.param == "one":
        need_redis(redis_ping(6379), "the Redis server on 127.0.0.1:6379")
        return SHARED_REDIS
    return request.getfixturevalue("shards").url


@pytest.fixture
def redis_of(redis_url: str):
    """``redis_of(room)``: a client of the instance ``room`` lives on."""
    from fastws.cluster.sharded import shard_of

    urls = redis_url.split(",")

    def of(room: str) -> Redis:
        url = urls[shard_of(room, len(urls))] if len(urls) > 1 else urls[0]
        return Redis(int(url.rsplit(":", 1)[1].split("/")[0]))
    return of


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


class OwnRedis:
    """A redis-server of the test's own, on a free port; restartable."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = Redis(self.port)

    def start(self, *extra: str) -> None:
        exe = shutil.which("redis-server")
        need_redis(exe is not None, "redis-server")
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no", "--dir", str(self.tmp),
                                      *extra],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not redis_ping(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    r = OwnRedis(tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


class Node:
    """``fastws tests.cluster.app:app`` in a child process (one node, or the
    supervisor of ``workers`` of them)."""

    def __init__(self, log_path: Path, env: dict[str, str], workers: int = 1,
                 port: int = 0, extra: tuple[str, ...] = (), app: str = "tests.cluster.app:app",
                 cwd: Path = ROOT) -> None:
        self.log_path = log_path
        argv = [sys.executable, "-m", "fastws", app, "--port", str(port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        self.argv = argv + list(extra)
        self.env = {**os.environ, **env}
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.port = port

    def __enter__(self) -> Node:
        return self.start()

    def start(self, wait: bool = True) -> Node:
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=subprocess.STDOUT)
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            port = listening_port(self.proc.pid)
            if port:
                self.port = port
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"node did not listen within {timeout} s:\n{self.log()}")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if hasattr(self, "_log"):
            self._log.close()

    def log(self) -> str:
        try:
            self._log.flush()
        except (AttributeError, ValueError):
            pass
        return self.log_path.read_text(errors="replace")

    def url(self, path: str, scheme: str = "ws") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


class SilentProxy:
    """A TCP proxy to Redis that can stop forwarding without closing anything
    (a half-open link, as a dead NAT or a cut cable leaves one)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        self.accepted = 0
        self._stop = False
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._held += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        while not self._stop:
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            # While silent, bytes are read and thrown away: nobody hears anything.
            if self.forwarding.is_set():
                try:
                    dst.sendall(data)
                except OSError:
                    return

    def close(self) -> None:
        self._stop = True
        self.sock.close()
        for s in self._held:
            try:
                s.close()
            except OSError:
                pass
