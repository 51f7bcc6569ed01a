"""Fixtures for tests that cross processes: Redis, fastws nodes, a TCP proxy.

The shared Redis on 127.0.0.1:6379 serves tests that only read and write;
each test gets a key prefix of its own. Tests that kill or restart Redis start
their own ``redis-server`` on a free port (``own_redis``). Without a reachable
Redis these tests skip, except under CI=true, where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from ..integration.clients import free_port
from ..reliability.procs import ROOT, listening_port

SHARED_REDIS = "redis://127.0.0.1:6379/0"

#: The engines the contract tests run on, and whose own test modules run:
#: FASTWS_TEST_ENGINES (comma-separated) or all. .ci/run runs all of them on
#: the newest CPython and the plain Redis alone on the others: the engines are
#: the same Python code on every version, and CI time is bounded.
ENGINES = [e for e in os.environ.get("FASTWS_TEST_ENGINES",
                                     "one,sharded,cluster,nats").split(",") if e] or ["one"]
_ENGINE_MODULES = {"test_sharded.py": "sharded", "test_redis_cluster.py": "cluster",
                   "test_nats.py": "nats", "test_nats_history.py": "nats"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the test modules of engines not in ENGINES."""
    keep, drop = [], []
    for item in items:
        engine = _ENGINE_MODULES.get(item.path.name) if item.path.parent == Path(__file__).parent \
            else None
        (drop if engine is not None and engine not in ENGINES else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


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


@pytest.fixture(params=ENGINES)
def history_url(request: pytest.FixtureRequest) -> str:
    """The backplane URL of each engine the history tests run on: the shared
    Redis alone, two instances of the session's own sharding the rooms, a
    Redis Cluster of the session's own, and NATS with JetStream of the session's own."""
    if request.param == "nats":
        return request.getfixturevalue("nats").url
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url
    if request.param == "one":
        need_redis(redis_ping(6379), "the Redis server on 127.0.0.1:6379")
        return SHARED_REDIS
    return request.getfixturevalue("shards").url


class BrokerProcess:
    """A broker process of the test's own: started until it answers, killed at the end."""

    proc: subprocess.Popen | None = None

    def launch(self, argv: list[str], ready, what: str) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not ready():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{what} did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class OwnNats(BrokerProcess):
    """A nats-server of the test's own (JetStream on, file storage in ``tmp``,
    monitoring on for assertions, payloads up to 8 MiB), on free ports; restartable."""

    def __init__(self, tmp: Path, *extra_conf: str, jetstream: bool = True) -> None:
        self.port = free_port()
        self.http_port = free_port()
        self.tmp = tmp
        self.conf = tmp / "nats.conf"
        js = ["jetstream { store_dir: %s }" % json.dumps(str(tmp / "js"))] if jetstream else []
        self.conf.write_text("\n".join([
            "listen: 127.0.0.1:%d" % self.port, "http: 127.0.0.1:%d" % self.http_port,
            "max_payload: 8MB", *js, *extra_conf]) + "\n")
        self.proc: subprocess.Popen | None = None
        self.url = f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        exe = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists(
            "/usr/sbin/nats-server") else None)
        need_broker(exe is not None, "nats-server")
        self.launch([exe, "-c", str(self.conf)], lambda: nats_ping(self.port), "nats-server")

    def subscribers(self, subject: str) -> int:
        """Connections subscribed to ``subject`` (the monitoring endpoint's /connz)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/connz?subs=1",
                                    timeout=5) as resp:
            conns = json.loads(resp.read()).get("connections") or []
        return sum(1 for c in conns if subject in (c.get("subscriptions_list") or []))

    def publish(self, subject: str, data: bytes) -> None:
        """Publish raw bytes (a client of our own: junk tests need no library)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.recv(4096)        # INFO
            s.sendall(b'CONNECT {"verbose":false}\r\nPUB %s %d\r\n%s\r\nPING\r\n'
                      % (subject.encode(), len(data), data))
            got = b""
            while b"PONG" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("nats-server closed")
                got += chunk


def nats_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            return s.recv(4096).startswith(b"INFO")
    except OSError:
        return False


def need_broker(ok: bool, what: str) -> None:
    need_redis(ok, what)


@pytest.fixture(scope="session")
def nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnNats]:
    n = OwnNats(tmp_path_factory.mktemp("nats"))
    n.start()
    try:
        yield n
    finally:
        n.stop()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[OwnNats]:
    """A nats-server of the test's own, for tests that restart or stop it."""
    n = OwnNats(tmp_path)
    n.start()
    try:
        yield n
    finally:
        n.stop()


class Broker:
    """What a test asks of the broker behind a backplane URL, whichever engine."""

    def __init__(self, url: str, nats: OwnNats | None = None,
                 cluster: OwnRedisCluster | None = None) -> None:
        self.url = url
        self.nats = nats
        self.cluster = cluster

    def _redis_of(self, room: str) -> Redis:
        from fastws.cluster.sharded import shard_of
        urls = self.url.split(",")
        url = urls[shard_of(room, len(urls))] if len(urls) > 1 else urls[0]
        return Redis(int(url.rsplit(":", 1)[1].split("/")[0]))

    def subscribers(self, prefix: str, room: str) -> int:
        """How many nodes are subscribed to ``room``'s channel or subject."""
        if self.nats is not None:
            from fastws.cluster.nats_link import subject_token
            return self.nats.subscribers(f"{prefix}.r.{subject_token(room)}")
        if self.cluster is not None:
            from fastws.cluster.relay import cluster_name
            return self.cluster.master_of(room).client.call(
                "PUBSUB", "SHARDNUMSUB", f"{prefix}:r:{cluster_name(room)}")[1]
        return self._redis_of(room).call("PUBSUB", "NUMSUB", f"{prefix}:r:{room}")[1]

    def publish(self, prefix: str, room: str, data: bytes) -> None:
        """Put raw bytes on ``room``'s channel or subject, as a broken peer would."""
        if self.nats is not None:
            from fastws.cluster.nats_link import subject_token
            self.nats.publish(f"{prefix}.r.{subject_token(room)}", data)
        elif self.cluster is not None:
            from fastws.cluster.relay import cluster_name
            self.cluster.master_of(room).client.call(
                "SPUBLISH", f"{prefix}:r:{cluster_name(room)}", data)
        else:
            self._redis_of(room).call("PUBLISH", f"{prefix}:r:{room}", data)


@pytest.fixture(params=ENGINES)
def backplane_url(request: pytest.FixtureRequest) -> str:
    """The backplane URL of each engine the contract tests run on: the shared
    Redis alone, two Redis instances of the session's own sharding the rooms,
    a Redis Cluster of the session's own, and a NATS server of the session's own."""
    if request.param == "nats":
        return request.getfixturevalue("nats").url
    if request.param == "cluster":
        return request.getfixturevalue("redis_cluster").url
    if request.param == "one":
        need_redis(redis_ping(6379), "the Redis server on 127.0.0.1:6379")
        return SHARED_REDIS
    return request.getfixturevalue("shards").url


@pytest.fixture
def broker(backplane_url: str, request: pytest.FixtureRequest) -> Broker:
    """The broker behind ``backplane_url``."""
    nats = request.getfixturevalue("nats") if backplane_url.startswith("nats://") else None
    cluster = request.getfixturevalue("redis_cluster") \
        if backplane_url.startswith("redis+cluster://") else None
    return Broker(backplane_url, nats, cluster)


@pytest.fixture
def prefix() -> str:
    return "t" + uuid.uuid4().hex[:10]


class OwnRedis(BrokerProcess):
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
        self.launch([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.tmp), *extra],
                    lambda: redis_ping(self.port), "redis-server")


class OwnRedisCluster:
    """A Redis Cluster of the tests' own: three masters, each with a replica
    (``redis-server --cluster-enabled yes``, joined by ``redis-cli --cluster
    create``), a short node timeout so a failover takes about a second."""

    def __init__(self, tmp: Path, masters: int = 3) -> None:
        self.tmp = tmp
        self.servers = [OwnRedis(tmp / f"node{i}") for i in range(masters * 2)]
        for r in self.servers:
            # Each node's cluster bus listens on its port + 10000.
            r.port = _free_pair()
            r.url = f"redis://127.0.0.1:{r.port}/0"
            r.client = Redis(r.port)
        self.masters = masters

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        need_redis(cli is not None, "redis-cli")
        for r in self.servers:
            r.tmp.mkdir(parents=True, exist_ok=True)
            r.start("--cluster-enabled", "yes", "--cluster-config-file", str(r.tmp / "nodes.conf"),
                    "--cluster-node-timeout", "1000", "--protected-mode", "no")
        out = subprocess.run([cli, "--cluster", "create",
                              *[f"127.0.0.1:{r.port}" for r in self.servers],
                              "--cluster-replicas", "1", "--cluster-yes"],
                             capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{out.stdout}\n{out.stderr}")
        self.wait_ok()

    def wait_ok(self, timeout: float = 30) -> None:
        """Until every running node says cluster_state:ok, agrees on the
        masters, and every replica has synced with its master."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                live = [r for r in self.servers if r.proc is not None and r.proc.poll() is None]
                states = [r.client.call("CLUSTER", "INFO") for r in live]
                maps = {tuple(sorted((int(a[0]), int(a[2][1])) for a in r.client.call(
                    "CLUSTER", "SLOTS"))) for r in live}
                # A replica fails over only once it has synced (its data not too old).
                synced = all(b"master_link_status:down" not in r.client.call("INFO", "replication")
                             for r in live)
                if all(b"cluster_state:ok" in s for s in states) and len(maps) == 1 and synced:
                    return
            except (OSError, ConnectionError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not settle")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{r.port}" for r in self.servers[:3])

    def master_of(self, room: str) -> OwnRedis:
        """The redis-server serving ``room``'s slot now."""
        from fastws.cluster.redis_cluster import room_slot
        slot = room_slot(room)
        for r in self.servers:
            if r.proc is None or r.proc.poll() is not None:
                continue
            for first, last, master, *_ in r.client.call("CLUSTER", "SLOTS"):
                if first <= slot <= last:
                    port = int(master[1])
                    return next(s for s in self.servers if s.port == port)
        raise RuntimeError(f"no master serves room {room!r}")

    def stop(self) -> None:
        for r in self.servers:
            r.stop()


def _free_pair() -> int:
    """A free port whose port + 10000 is free too, both below the kernel's
    ephemeral range (32768 up), which outgoing connections take from."""
    import random
    for _ in range(200):
        port = random.randrange(12000, 22700)
        socks = []
        try:
            for p in (port, port + 10000):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port pair for a Redis Cluster node")


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedisCluster]:
    c = OwnRedisCluster(tmp_path_factory.mktemp("rcluster"))
    c.start()
    try:
        yield c
    finally:
        c.stop()


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
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()          # the broker is down: refused, as it would be
                continue
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
