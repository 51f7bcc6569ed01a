"""New users get in while the server is busy: upgrades keep completing while
more than 1,024 established connections echo flat out (the case in which libuv
keeps polling and a loop's ready queue waits).

No wall-clock bound: the test counts how many upgrades a client completes per
thousand echo round trips the load generator gets, and asks for a generous
fraction of what fastws does (the server it replaced managed about 0.1), for a
plain upgrade, one over TLS, and one behind an async guard. The last two wait
once for the loop's ready queue (a TLS transport's connection_made, the
guard's task), which libuv serves after its poll phase: they are answered in
batches, one per loop iteration, so the clients here come several at once.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ..integration.rawws import handshake_request, new_key, read_head
from .procs import ServerProcess, build_loadgen

BUSY = 1100                     # established connections: over libuv's 1,024 events per poll
ECHO_SECONDS = 4.0
AT_LEAST_PER_1000_ECHOES = 0.3


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_loadgen(tmp_path_factory.mktemp("loadgen"))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    d = tmp_path_factory.mktemp("certs")
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return d / "cert.pem", d / "key.pem", client


class Upgrader:
    """THREADS clients opening, upgrading and closing connections in a loop
    (as new users arrive: many at once); the time of each 101."""

    THREADS = 8

    def __init__(self, port: int, path: str, tls: ssl.SSLContext | None = None) -> None:
        self.port, self.path, self.tls = port, path, tls
        self.done: list[float] = []      # monotonic time of each 101
        self.failed = 0
        self.stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.THREADS)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def join(self, timeout: float) -> None:
        for t in self._threads:
            t.join(timeout)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                raw = socket.create_connection(("127.0.0.1", self.port), timeout=30)
                sock = self.tls.wrap_socket(raw, server_hostname="127.0.0.1") if self.tls else raw
                with sock:
                    sock.sendall(handshake_request(self.path, key=new_key()))
                    head = read_head(sock)
                if head.startswith(b"HTTP/1.1 101"):
                    self.done.append(time.monotonic())
                else:
                    self.failed += 1
            except OSError:
                self.failed += 1


def echo_under_churn(loadgen: Path, server: ServerProcess, port: int, upgrader: Upgrader):
    argv = [str(loadgen), "echo", "--port", str(port), "--conns", str(BUSY), "--inflight", "2",
            "--size", "32", "--warmup", "1", "--duration", str(ECHO_SECONDS)]
    started = time.monotonic()
    upgrader.start()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    upgrader.stop.set()
    upgrader.join(60)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in result, result
    window_start = started + result["setup_s"] + 1.0
    in_window = [t for t in upgrader.done if window_start <= t <= window_start + result["duration_s"]]
    return result, len(in_window)


@pytest.mark.parametrize("kind", ["plain", "tls", "async guard"])
def test_upgrades_complete_while_established_connections_are_busy(kind, loadgen, certs, tmp_path):
    cert, key, client_tls = certs
    options = {"ping_interval": None}
    if kind == "tls":
        options["tls"] = {"certfile": str(cert), "keyfile": str(key)}
    with ServerProcess("accept", tmp_path / "server.log", **options) as server:
        if kind == "tls":
            deadline = time.monotonic() + 30
            while '"ports"' not in server.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            ports = json.loads(next(line for line in server.log().splitlines()
                                    if line.startswith('{"ports"')))["ports"]
            echo_port, upgrader = ports["plain"], Upgrader(ports["tls"], "/echo", client_tls)
        else:
            echo_port = server.port
            upgrader = Upgrader(server.port, "/guarded" if kind == "async guard" else "/echo")
        result, upgrades = echo_under_churn(loadgen, server, echo_port, upgrader)
    per_1000 = upgrades / (result["messages"] / 1000)
    print(f"\n{kind}: {upgrades} upgrades while {result['messages']:,} echoes came back "
          f"({per_1000:.2f} per 1,000); {upgrader.failed} failed")
    assert upgrader.failed == 0
    assert per_1000 >= AT_LEAST_PER_1000_ECHOES, per_1000
