"""Nodes and their broker on a real network (issue 25): each in its own
network namespace (``tests/cluster/netns.py``), 50 ms each way between a node
and the broker with 1 % of packets dropped, and a 10 s partition of one node
from the broker. Local rooms keep working through it, cross-node traffic
resumes after it, and a ``fastws.v1`` client of the cut node recovers what it
missed. Run for each engine: one Redis and NATS (sharded Redis is the same
relay per instance). In the slow set: each test waits out its partition."""

from __future__ import annotations

import shutil
import time
from contextlib import ExitStack

import pytest

from tests.integration.clients import recv_json, wait_for
from tests.recovery.test_protocol import connect_v1, positions

from .conftest import free_port
from .netns import Lab, iptables, need_netns, wait_port
from .test_backplane import eventually, get, member, nothing_more, post, recv_all

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PARTITION = 10.0


def broker_argv(engine: str, ip: str, port: int, tmp) -> list[str]:
    if engine == "nats":
        return [shutil.which("nats-server") or "/usr/sbin/nats-server", "-a", ip, "-p", str(port),
                "-js", "-sd", str(tmp / "js")]
    return [shutil.which("redis-server") or "redis-server", "--bind", ip, "--port", str(port),
            "--save", "", "--appendonly", "no", "--dir", str(tmp), "--protected-mode", "no"]


@pytest.fixture
def lab():
    need_netns()
    net = Lab(["broker", "a", "b"]).up()
    try:
        yield net
    finally:
        net.down()


def start_broker(lab: Lab, engine: str, tmp, delay: float) -> str:
    port = 4222 if engine == "nats" else 6379
    lab.spawn("broker", broker_argv(engine, lab.broker_ip["broker"], port, tmp), tmp / "broker.log")
    wait_port(lab.broker_ip["broker"], port)
    relay_port = lab.relay(free_port(), port, delay)
    scheme = "nats" if engine == "nats" else "redis"
    return f"{scheme}://{lab.gateway}:{relay_port}" + ("" if engine == "nats" else "/0")


@pytest.mark.parametrize("engine", ["redis", "nats"])
def test_50ms_and_1_percent_loss_between_nodes_and_the_broker(lab, tmp_path, prefix, engine):
    url = start_broker(lab, engine, tmp_path, 0.05)
    iptables()
    for host in ("a", "b"):
        lab.lose(host, 0.01)
    env = {"FASTWS_BACKPLANE": url, "CLUSTER_PREFIX": prefix, "CLUSTER_PROBE": "1",
           "CLUSTER_PROBE_TIMEOUT": "3"}
    with ExitStack() as stack:
        a_node = stack.enter_context(lab.node("a", tmp_path / "a.log", env))
        b_node = stack.enter_context(lab.node("b", tmp_path / "b.log", env))
        a, b = member(a_node, "r"), member(b_node, "r")
        local = member(a_node, "r")
        started = time.monotonic()
        for i in range(300):
            a.send(f"b r m{i}")
        # Exactly once and in order across the slow, lossy link (TCP resends).
        assert recv_all(b, 300, timeout=60) == [f"m{i}" for i in range(300)]
        assert recv_all(local, 300, timeout=10) == [f"m{i}" for i in range(300)]
        assert time.monotonic() - started >= 0.1       # the round trip through the relay is real
        nothing_more(b)
        assert get(a_node, "/stats")["events"] == []      # slow and lossy, never lost
        b.send("b r back")
        assert a.recv(timeout=20) == "back"


@pytest.mark.parametrize("engine", ["redis", "nats"])
def test_a_10s_partition_of_one_node_from_the_broker(lab, tmp_path, prefix, engine):
    url = start_broker(lab, engine, tmp_path, 0.0)
    env = {"FASTWS_BACKPLANE": url, "CLUSTER_PREFIX": prefix, "CLUSTER_PROBE": "0.5",
           "CLUSTER_PROBE_TIMEOUT": "1"}
    with ExitStack() as stack:
        a_node = stack.enter_context(lab.node("a", tmp_path / "a.log", env))
        b_node = stack.enter_context(lab.node("b", tmp_path / "b.log", env))
        a, b = member(a_node, "r"), member(b_node, "r")
        local = member(a_node, "r")
        a.send("b r before")
        assert b.recv(timeout=10) == "before" and local.recv(timeout=10) == "before"

        lab.partition("a", cut=True)
        cut_at = time.monotonic()
        eventually(lambda: get(a_node, "/stats")["events"] == ["lost"], "a sees the broker gone", 10)
        # Local rooms keep working; nothing crosses either way.
        a.send("b r during-a")
        assert local.recv(timeout=10) == "during-a"
        b.send("b r during-b")
        time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))
        lab.partition("a", cut=False)

        eventually(lambda: get(a_node, "/stats")["events"] == ["lost", "restored"],
                   "a is back on the broker", 30)
        a.send("j r")   # answered once the resubscription is live across the cluster
        assert a.recv(timeout=20) == "joined r"
        b.send("b r after")
        assert a.recv(timeout=20) == "after" and local.recv(timeout=10) == "after"
        nothing_more(a)      # "during-b" never reached a: at most once, as promised
        a.send("b r again")
        assert b.recv(timeout=20) == "again"      # not "during-a"
        assert get(a_node, "/stats")["cluster"]["dropped_outage"] >= 1


@pytest.mark.parametrize("engine", ["redis", "nats"])
def test_a_v1_client_of_the_cut_node_recovers_what_it_missed(lab, tmp_path, prefix, engine):
    """History in Redis or JetStream: the cut node closes its fastws.v1 member with 1013;
    what the other node publishes meanwhile is kept; once the partition
    heals the client comes back to the same node and is replayed exactly
    what it missed."""
    url = start_broker(lab, engine, tmp_path, 0.0)
    env = {"FASTWS_BACKPLANE": url, "CLUSTER_PREFIX": prefix, "HISTORY_SIZE": "100"}
    app = "tests.cluster.recovery_app:app"
    with ExitStack() as stack:
        a_node = stack.enter_context(lab.node("a", tmp_path / "a.log", env, app=app))
        b_node = stack.enter_context(lab.node("b", tmp_path / "b.log", env, app=app))
        v1, _ = connect_v1(a_node, "/feed/lobby")
        epoch = recv_v1(v1)["epoch"]
        assert post(b_node, "/publish/lobby", b"1")[0] == 200
        assert recv_v1(v1)["offset"] == 1

        lab.partition("a", cut=True)
        cut_at = time.monotonic()
        wait_for(lambda: gone(v1), timeout=10, what="the cut node closes its v1 member")
        assert v1.close_code == 1013 and v1.close_reason == "backplane lost: reconnect to recover"
        for n in (2, 3, 4):
            assert post(b_node, "/publish/lobby", str(n).encode())[0] == 200
        time.sleep(max(0.0, PARTITION - (time.monotonic() - cut_at)))
        lab.partition("a", cut=False)

        def recover():
            # Until a is back on Redis it closes a recovering join with 1013
            # (the client keeps its position and tries again).
            try:
                back, _ = connect_v1(a_node, "/feed/lobby", positions([["lobby", epoch, 1]]),
                                     open_timeout=5)
                got = [recv_v1(back) for _ in range(4)]
            except Exception:
                return None
            back.close()
            return got

        got = wait_for(recover, timeout=30, what="a recovers its v1 client after the partition")
        assert [(m["data"]["n"], m["offset"]) for m in got[:3]] == [(2, 2), (3, 3), (4, 4)]
        assert (got[3]["type"], got[3]["recovered"], got[3]["missed"]) == ("fastws.joined", True, 3)


def gone(ws) -> bool:
    """Read (heartbeats) until the connection is closed: True once it is."""
    try:
        ws.recv(timeout=0.2)
    except TimeoutError:
        return False
    except Exception:
        return True
    return False


def recv_v1(ws, timeout: float = 10.0) -> dict:
    """The next fastws.v1 message that is not a heartbeat."""
    while True:
        msg = recv_json(ws, timeout=timeout)
        if msg.get("type") != "fastws.heartbeat":
            return msg
