"""The demo page in a real browser: headless Chromium, driven by playwright-core
(tests/browser/demo_check.mjs), chats through ``python -m fastws.demo`` and
shows how many are in the room, across the cluster, live.

Three ways to serve it, each a real server in a process of its own:

- one process, the README's ``python -m fastws.demo`` (on a free port);
- two single-process nodes on two ports sharing a Redis backplane, the pages
  spread over both by hand: a join, a switch and a close on one node must
  change the count shown by pages on the other (deterministic);
- ``fastws fastws.demo:app --workers 2 --backplane ...``, the app unchanged:
  pages join in bursts until the access log shows they landed on both workers.

And the page recovering (it runs fastws-client, which reconnects by itself):

- its link cut by a ``FaultProxy`` (a reset) while another page chats: back,
  it says "reconnected, N missed messages recovered" with the right N and
  shows the lines it missed, once each;
- moved to another server (a restart, as the client sees it): it says
  "history lost, reloaded" and shows the new server's messages instead;
- the same with a backplane, where the history is the cluster's, in Redis.

The backplane runs use Redis database 7: the demo cannot be given a key prefix,
and a database of its own keeps its presence keys apart from other tests'
(database 0, a prefix each). Pub/sub channels span databases, so every room
name is unique to its test. Without Redis those skip, except under CI=true,
where they fail (tests/cluster/conftest.py's rule).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.cluster.conftest import need_redis, redis_ping
from tests.integration.clients import free_port
from tests.recovery.proxy import FaultProxy

from .conftest import BROWSER_DIR

pytestmark = pytest.mark.timeout(1200)     # the first run may install Chromium

ROOT = BROWSER_DIR.parents[1]
BACKPLANE = "redis://127.0.0.1:6379/7"
SERVE_TIMEOUT = 30
CHECK_TIMEOUT = 180
# Every access line names the process that wrote it: which worker took a socket.
LOG_CONFIG = {
    "version": 1,
    "formatters": {"pid": {"format": "%(process)d %(name)s: %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "formatter": "pid",
                         "stream": "ext://sys.stdout"}},
    "root": {"level": "INFO", "handlers": ["out"]},
}


class Server:
    """A command serving the demo, in a process group of its own (the workers
    of ``--workers`` too), its output in a file."""

    def __init__(self, argv: list[str], log_path: Path, port: int,
                 env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.port = port
        self.log_path = log_path
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FASTWS_")}
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env={**clean, **(env or {})},
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def wait_serving(self) -> None:
        """Until GET / answers the chat page (bounded)."""
        deadline = time.monotonic() + SERVE_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.argv} exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url(), timeout=2) as resp:
                    if resp.status == 200 and b"fastws chat" in resp.read():
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.argv} not serving after {SERVE_TIMEOUT} s:\n{self.log()}")

    def stop(self) -> None:
        """SIGTERM to the group (a graceful stop), SIGKILL if it lingers."""
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                # The workers are the supervisor's children: make sure of them too.
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def servers(tmp_path):
    """Start servers with ``servers(argv, port, env)``; all stopped at the end."""
    started: list[Server] = []

    def start(argv: list[str], port: int, env: dict[str, str] | None = None) -> Server:
        server = Server(argv, tmp_path / f"server{len(started)}.log", port, env)
        started.append(server)
        server.wait_serving()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def backplane_url() -> str:
    need_redis(redis_ping(6379), "the Redis server on 127.0.0.1:6379")
    return BACKPLANE


def room_names() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:10]
    return f"browser-{tag}", f"elsewhere-{tag}"


def run_check(node: str, chromium: Path, config: dict, logs: list[Server]) -> dict:
    """Run demo_check.mjs; its JSON result, or a failure with everything it saw."""
    config = {"chromium": str(chromium), "timeoutMs": 15000, **config}
    try:
        done = subprocess.run([node, str(BROWSER_DIR / "demo_check.mjs"), json.dumps(config)],
                              cwd=BROWSER_DIR, capture_output=True, text=True,
                              timeout=CHECK_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"demo_check.mjs still running after {CHECK_TIMEOUT} s:\n{exc.stdout}\n{exc.stderr}")
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        result = None
    if done.returncode != 0 or not result or not result.get("ok"):
        server_logs = "\n".join(f"--- {s.argv}\n{s.log()[-4000:]}" for s in logs)
        pytest.fail(f"demo_check.mjs failed (exit {done.returncode}):\n{done.stdout[-6000:]}\n"
                    f"{done.stderr[-4000:]}\n{server_logs}")
    return result


def check_steps(result: dict, n: int) -> None:
    """Every count every page showed is the one it had to show, and there
    were the steps there had to be."""
    for step in result["steps"]:
        assert step["got"] == step["want"], step
    switch, close = result["steps"][-2], result["steps"][-1]
    roles = result["roles"]
    assert switch["name"] == "switch" and close["name"] == "close"
    assert switch["want"][roles["switcher"]] == 1
    assert {u: c for u, c in switch["want"].items() if u != roles["switcher"]} == \
        {u: n - 1 for u in switch["want"] if u != roles["switcher"]}
    assert roles["closer"] not in close["want"] and roles["switcher"] not in close["want"]
    assert set(close["want"].values()) == {n - 2} and roles["watcher"] in close["want"]
    assert result["chat"]["from"] == roles["watcher"] and len(result["chat"]["seenBy"]) == n - 1


def test_one_process(node, chromium, servers):
    """The README's command: counts 1, 2, 3 as pages join, down as they go."""
    port = free_port()
    server = servers([sys.executable, "-m", "fastws.demo", "--port", str(port)], port)
    room, other = room_names()
    pages = [{"url": server.url(), "user": u} for u in ("alice", "bob", "carol")]
    result = run_check(node, chromium, {"mode": "sequential", "room": room, "other": other,
                                        "pages": pages}, [server])
    assert [s["name"] for s in result["steps"]] == ["join 1", "join 2", "join 3", "switch", "close"]
    assert [s["want"] for s in result["steps"][:3]] == [
        {"alice": 1}, {"alice": 2, "bob": 2}, {"alice": 3, "bob": 3, "carol": 3}]
    check_steps(result, 3)


def test_two_nodes_share_the_count(node, chromium, servers, backplane_url):
    """Pages on two nodes of one cluster: each join, switch and close on one
    node shows on the pages of the other."""
    env = {"FASTWS_BACKPLANE": backplane_url}
    a, b = free_port(), free_port()
    node_a = servers([sys.executable, "-m", "fastws", "fastws.demo:app", "--port", str(a)], a, env)
    node_b = servers([sys.executable, "-m", "fastws", "fastws.demo:app", "--port", str(b)], b, env)
    for s in (node_a, node_b):
        assert "connected to redis://127.0.0.1:6379/7" in s.log(), s.log()
    room, other = room_names()
    # alice on A, bob on B, carol on A: carol's join and switch (on A) must
    # reach bob (on B), and bob's close (on B) must reach alice (on A).
    pages = [{"url": node_a.url(), "user": "alice"}, {"url": node_b.url(), "user": "bob"},
             {"url": node_a.url(), "user": "carol"}]
    result = run_check(node, chromium, {"mode": "sequential", "room": room, "other": other,
                                        "pages": pages}, [node_a, node_b])
    assert result["roles"] == {"switcher": "carol", "closer": "bob", "watcher": "alice"}
    assert [s["want"] for s in result["steps"][:3]] == [
        {"alice": 1}, {"alice": 2, "bob": 2}, {"alice": 3, "bob": 3, "carol": 3}]
    check_steps(result, 3)


def test_two_workers_unchanged(node, chromium, servers, tmp_path, backplane_url):
    """``fastws fastws.demo:app --workers 2 --backplane URL``: pages on both
    workers all show the same count."""
    port = free_port()
    log_config = tmp_path / "log.json"
    log_config.write_text(json.dumps(LOG_CONFIG))
    server = servers([sys.executable, "-m", "fastws", "fastws.demo:app", "--workers", "2",
                      "--backplane", backplane_url, "--port", str(port),
                      "--access-log", "--log-config", str(log_config)], port)
    room, other = room_names()
    result = run_check(node, chromium, {"mode": "spread", "url": server.url(), "room": room,
                                        "other": other, "burst": 3, "maxBursts": 4,
                                        "log": str(server.log_path)}, [server])
    workers = {int(pid) for pid in re.findall(r"worker \d+ started \(pid (\d+)\)", server.log())}
    assert len(workers) == 2, server.log()
    pages = result["workers"]
    assert set(pages.values()) == workers, pages
    roles = result["roles"]
    # The switch and the close happened on the other worker than the page
    # that watched them.
    assert pages[roles["switcher"]] != pages[roles["watcher"]]
    check_steps(result, len(pages))


class Recovery:
    """demo_recover.mjs, run step by step: it prints ``{"at": STEP}`` lines,
    waits for a line from the test at each, and ends with its result."""

    def __init__(self, node: str, chromium: Path, config: dict, logs: list[Server]) -> None:
        config = {"chromium": str(chromium), "timeoutMs": 15000, **config}
        self.logs = logs
        self.stderr = tempfile.TemporaryFile("w+")      # read on failure only
        self.proc = subprocess.Popen([node, str(BROWSER_DIR / "demo_recover.mjs"), json.dumps(config)],
                                     cwd=BROWSER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _next(self) -> dict:
        try:
            line = self.lines.get(timeout=CHECK_TIMEOUT)
        except queue.Empty:
            self.fail(f"nothing from demo_recover.mjs for {CHECK_TIMEOUT} s")
        if line is None:
            self.fail("demo_recover.mjs ended early")
        self.seen.append(line)
        return json.loads(line)

    def at(self, step: str) -> None:
        """Wait until the driver reaches ``step`` (a failure with all it said
        if it fails first)."""
        said = self._next()
        if said.get("at") != step:
            self.fail(f"expected step {step!r}")

    def go(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def result(self) -> dict:
        result = self._next()
        if not result.get("ok"):
            self.fail("the check failed")
        self.proc.wait(30)
        return result

    def fail(self, why: str) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        rest = []
        while True:
            try:
                line = self.lines.get(timeout=5)     # the reader's last lines
            except queue.Empty:
                break
            if line is None:
                break
            rest.append(line)
        self.stderr.seek(0)
        server_logs = "\n".join(f"--- {s.argv}\n{s.log()[-4000:]}" for s in self.logs)
        pytest.fail(f"demo_recover.mjs: {why} (exit {self.proc.returncode}):\n"
                    f"{''.join(self.seen + rest)}\n{self.stderr.read()[-4000:]}\n{server_logs}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.stderr.close()



def cut_while_away(run: Recovery, proxy: FaultProxy) -> dict:
    """Alice's link reset once her page is ready, back once bob has sent what
    she is to miss; her page's account of it all."""
    try:
        run.at("ready")
        proxy.reset()
        run.go("cut")
        run.at("missed")
        proxy.restore()
        run.go("restored")
        return run.result()
    finally:
        run.close()
        proxy.close()

def test_the_page_recovers_what_it_missed_while_cut_off(node, chromium, servers):
    """alice's page reaches the demo through a proxy, bob's directly. The proxy
    resets alice's link; the server counts her out and bob says 3 lines; the
    link comes back. Her page reconnects by itself and recovers the 5 room
    messages she missed (her own "left" note, bob's count going to 1, bob's
    3 lines): it says so and shows each of bob's lines once, in order."""
    port = free_port()
    server = servers([sys.executable, "-m", "fastws.demo", "--port", str(port)], port)
    # The installed copy of the client is what the page imports.
    with urllib.request.urlopen(f"{server.url()}fastws-client.js", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/javascript")
        assert resp.read() == (ROOT / "clients" / "js" / "src" / "index.js").read_bytes()
    proxy = FaultProxy(port)
    room, _ = room_names()
    missed = [f"while alice is away {i}" for i in (1, 2, 3)]
    run = Recovery(node, chromium, {"mode": "reset", "room": room, "missed": len(missed),
                                    "proxied": f"http://127.0.0.1:{proxy.port}/",
                                    "direct": server.url()}, [server])
    result = cut_while_away(run, proxy)
    alice = result["alice"]
    assert result["missed"] == 2 + len(missed), alice
    note = alice.index(f"reconnected, {result['missed']} missed messages recovered")
    shown = [line.removeprefix("bob: ") for line in alice if line.startswith("bob: ")]
    assert shown == missed, alice
    # Recovered before the note, after the line said before the cut.
    assert alice.index("alice: before the cut") < alice.index(f"bob: {missed[0]}")
    assert alice.index(f"bob: {missed[-1]}") < note < alice.index("alice: back again")
    assert alice.count("alice: before the cut") == 1 and alice.count("alice left the room") == 1
    assert proxy.accepted >= 2


def test_with_a_backplane_the_page_recovers_on_its_node(node, chromium, servers, backplane_url):
    """The same cut on a node with a backplane, where the room's history is
    the cluster's (in Redis): the page recovers bob's lines, once each, in
    order. How many messages it missed is not fixed here: with a backplane
    the node counts the room again ``SETTLE`` seconds after a change, and
    may send that count again."""
    port = free_port()
    server = servers([sys.executable, "-m", "fastws", "fastws.demo:app", "--port", str(port)], port,
                     {"FASTWS_BACKPLANE": backplane_url})
    proxy = FaultProxy(port)
    room, _ = room_names()
    missed = [f"while alice is away {i}" for i in (1, 2)]
    run = Recovery(node, chromium, {"mode": "reset", "room": room, "missed": len(missed),
                                    "proxied": f"http://127.0.0.1:{proxy.port}/",
                                    "direct": server.url()}, [server])
    result = cut_while_away(run, proxy)
    alice = result["alice"]
    # Her own "left" note, the count going to 1, bob's lines, at least.
    assert result["missed"] >= 2 + len(missed), alice
    note = alice.index(f"reconnected, {result['missed']} missed messages recovered")
    assert [line.removeprefix("bob: ") for line in alice if line.startswith("bob: ")] == missed, alice
    assert alice.index(f"bob: {missed[-1]}") < note < alice.index("alice: back again"), alice


def test_the_page_reloads_when_the_history_is_lost(node, chromium, servers):
    """alice's page is on a first server, through a proxy; the proxy is pointed
    at a second server (bob is there, and has said something) and the first
    is stopped, as a restart would. alice's page cannot recover (another
    epoch): it says "history lost, reloaded" and shows the second server's
    messages instead of the first's, then chats on."""
    first, second = free_port(), free_port()
    server1 = servers([sys.executable, "-m", "fastws.demo", "--port", str(first)], first)
    server2 = servers([sys.executable, "-m", "fastws.demo", "--port", str(second)], second)
    proxy = FaultProxy(first)
    room, _ = room_names()
    run = Recovery(node, chromium, {"mode": "restart", "room": room,
                                    "proxied": f"http://127.0.0.1:{proxy.port}/",
                                    "direct": server2.url()}, [server1, server2])
    try:
        run.at("ready")
        proxy.restore(second)
        server1.stop()
        run.go("switched")
        result = run.result()
    finally:
        run.close()
        proxy.close()
    alice = result["alice"]
    assert "alice: said on the first server" not in alice, alice
    assert alice.count("history lost, reloaded") == 1, alice
    assert alice.count("bob: said on the second server") == 1, alice
    assert alice.index("bob: said on the second server") < alice.index("history lost, reloaded") \
        < alice.index("alice: said after the reload"), alice
