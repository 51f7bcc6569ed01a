"""``fastws module:app --workers N``: N processes on one port, rooms spanning them
through the backplane, a supervisor that replaces, stops and rolls them."""

from __future__ import annotations

import os
import shutil
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
import urllib.request
from pathlib import Path

import pytest
from .conftest import Node
from .test_backplane import close_code, eventually, member, nothing_more

pytestmark = pytest.mark.timeout(180)


def children(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return {int(p) for p in f.read().split()}
    except OSError:
        return set()


def worker_of(ws) -> tuple[str, int]:
    ws.send("w")
    _, slot, pid = ws.recv(timeout=10).split()
    return slot, int(pid)


def members_on_each_worker(node: Node, room: str, want: int = 2, tries: int = 20) -> dict[str, list]:
    """Open members of ``room`` until every one of ``want`` workers has one.

    Workers share one listening socket and the kernel wakes them all; on a
    quiet machine the same one may win every accept, so members come in bursts
    of several at once, as real clients do."""
    by_slot: dict[str, list] = {}
    for _ in range(tries):
        with ThreadPoolExecutor(8) as pool:
            burst = list(pool.map(lambda _: member(node, room), range(8)))
        for ws in burst:
            slot, _ = worker_of(ws)
            by_slot.setdefault(slot, []).append(ws)
        if len(by_slot) == want:
            return by_slot
    raise AssertionError(f"connections reached only workers {sorted(by_slot)}")


def test_workers_without_a_backplane_refuse_to_start_unless_told(tmp_path):
    env = {"FASTWS_BACKPLANE": ""}
    node = Node(tmp_path / "refused.log", env, workers=2)
    node.start(wait=False)
    try:
        assert node.proc.wait(30) != 0
        log = node.log()
        assert "split every room" in log and "--backplane" in log, log
    finally:
        node.kill()
    with Node(tmp_path / "split.log", env, workers=2, extra=("--allow-split-rooms",)) as node:
        eventually(lambda: len(children(node.proc.pid)) == 2, "two workers")
        with urllib.request.urlopen(node.url("/version", "http"), timeout=10) as resp:
            assert resp.read() == b"1"


def test_two_workers_share_rooms_and_a_killed_worker_is_replaced(tmp_path, backplane_url, prefix):
    env = {"FASTWS_BACKPLANE": backplane_url, "CLUSTER_PREFIX": prefix}
    with Node(tmp_path / "workers.log", env, workers=2) as node:
        eventually(lambda: len(children(node.proc.pid)) == 2, "two workers")
        by_slot = members_on_each_worker(node, "room")
        w0, w1 = by_slot["0"][0], by_slot["1"][0]
        w0.send("b room hello from 0")
        assert w1.recv(timeout=10) == "hello from 0"
        extra1 = [ws for ws in by_slot["1"][1:]]
        for ws in by_slot["0"][1:]:
            assert ws.recv(timeout=10) == "hello from 0"
        for ws in extra1:
            assert ws.recv(timeout=10) == "hello from 0"

        _, pid0 = worker_of(w0)
        os.kill(pid0, signal.SIGKILL)
        eventually(lambda: len(children(node.proc.pid)) == 2 and pid0 not in children(node.proc.pid),
                   "the killed worker was replaced")
        # Replaced is not yet serving: a busy machine may take seconds to import
        # the app, and until then every connection reaches worker 1.
        eventually(lambda: node.log().count("worker 0 ready") == 2, "the replacement to be ready")
        # worker 1's clients noticed nothing
        peer = member(node, "room")
        while worker_of(peer)[0] != "1":
            peer.close()
            peer = member(node, "room")
        w1.send("b room still here")
        assert peer.recv(timeout=10) == "still here"
        # and the replacement serves the room too
        new0 = members_on_each_worker(node, "room")["0"][0]
        w1.send("b room to the new one")
        assert new0.recv(timeout=10) == "to the new one"

        # SIGTERM: every client gets 1001, the supervisor exits 0
        clients = [w1, peer, new0]
        node.proc.send_signal(signal.SIGTERM)
        assert [close_code(ws) for ws in clients] == [1001] * len(clients)
        assert node.proc.wait(30) == 0
        assert not children(node.proc.pid)


def test_sighup_rolls_the_workers_without_refusing_anyone_and_serves_the_new_code(
        tmp_path, backplane_url, prefix):
    # The app lives in a folder of the test's own, so the test can change it.
    src = Path(__file__).with_name("app.py")
    appdir = tmp_path / "deploy"
    appdir.mkdir()
    shutil.copy(src, appdir / "deployed_app.py")
    env = {"FASTWS_BACKPLANE": backplane_url, "CLUSTER_PREFIX": prefix,
           "PYTHONPATH": os.pathsep.join([str(appdir), os.environ.get("PYTHONPATH", "")])}
    with Node(tmp_path / "roll.log", env, workers=2, app="deployed_app:app", cwd=appdir) as node:
        eventually(lambda: len(children(node.proc.pid)) == 2, "two workers")
        old = children(node.proc.pid)
        by_slot = members_on_each_worker(node, "room")
        held = [by_slot["0"][0], by_slot["1"][0]]

        failures: list[str] = []
        served: list[bytes] = []
        stop = threading.Event()

        def knock() -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(node.url("/version", "http"), timeout=10) as resp:
                        served.append(resp.read())
                except Exception as exc:            # any refusal or reset is a failure
                    failures.append(repr(exc))

        threads = [threading.Thread(target=knock, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        eventually(lambda: len(served) > 20, "requests served before the restart")

        text = (appdir / "deployed_app.py").read_text().replace('VERSION = "1"', 'VERSION = "2"')
        (appdir / "deployed_app.py").write_text(text)
        node.proc.send_signal(signal.SIGHUP)

        # the old workers drain their WebSockets with 1012 service restart
        assert [close_code(ws) for ws in held] == [1012, 1012]
        eventually(lambda: len(children(node.proc.pid)) == 2 and not (children(node.proc.pid) & old),
                   "both workers replaced", 60)
        mark = len(served)
        eventually(lambda: len(served) > mark + 20, "requests served after the restart")
        stop.set()
        for t in threads:
            t.join(20)
        assert failures == [], failures[:5]
        assert set(served[mark:]) == {b"2"}, set(served[mark:])
        # rooms still span the new workers
        by_slot = members_on_each_worker(node, "room")
        by_slot["0"][0].send("b room after the deploy")
        assert by_slot["1"][0].recv(timeout=10) == "after the deploy"
        nothing_more(by_slot["0"][0], 0.2)


def test_workers_that_cannot_start_make_the_supervisor_exit_non_zero(tmp_path):
    from .conftest import free_port
    env = {"FASTWS_BACKPLANE": f"redis://127.0.0.1:{free_port()}/0"}
    node = Node(tmp_path / "dying.log", env, workers=2)
    node.start(wait=False)
    try:
        assert node.proc.wait(60) == 1
        log = node.log()
        assert "cannot connect to redis://127.0.0.1:" in log, log     # the worker's error
        assert "giving up" in log, log
        assert not children(node.proc.pid)
    finally:
        node.kill()


def test_workers_do_not_outlive_a_killed_supervisor(tmp_path):
    """SIGKILL gives the supervisor no chance to stop its workers: they notice
    on their own (the lifeline pipe reads EOF) and exit, freeing the port."""
    env = {"FASTWS_BACKPLANE": ""}
    node = Node(tmp_path / "orphans.log", env, workers=2, extra=("--allow-split-rooms",))
    node.start()
    try:
        eventually(lambda: len(children(node.proc.pid)) == 2, "two workers")
        workers = children(node.proc.pid)
        node.proc.kill()
        node.proc.wait(10)

        def running(pid: int) -> bool:
            try:
                with open(f"/proc/{pid}/stat") as f:
                    return f.read().rpartition(")")[2].split()[0] != "Z"
            except OSError:
                return False
        eventually(lambda: not any(map(running, workers)), "the workers to exit after their supervisor")
        assert "the supervisor is gone" in node.log()
    finally:
        node.kill()
