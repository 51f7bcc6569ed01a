"""Rooms across processes on Redis: real fastws processes, real Redis, real clients.

Every wait is bounded; nothing sleeps and hopes: a join is awaited through the
app's ``joined ROOM`` answer (``app.cluster.joined``), presence through polling
``/size`` within the TTL it is documented to take.
"""

from __future__ import annotations

import json
import signal
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from ..integration.clients import wait_for, ws_connect

from .conftest import Node, OwnRedis, Redis, SilentProxy, free_port

pytestmark = pytest.mark.timeout(120)


def get(node: Node, path: str) -> dict:
    with urllib.request.urlopen(node.url(path, "http"), timeout=10) as resp:
        return json.loads(resp.read())


def post(node: Node, path: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(node.url(path, "http"), data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def eventually(check, what: str, timeout: float = 20.0):
    """Poll ``check`` (bounded): presence and reconnection take time by design."""
    return wait_for(check, timeout=timeout, what=what)


def close_code(ws, timeout: float = 30.0) -> int | None:
    """Read (and drop) what is still coming, then the close code the server sent."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            ws.recv(timeout=max(0.1, deadline - time.monotonic()))
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


def member(node: Node, room: str, **kw):
    kw.setdefault("compression", "deflate")     # used where the node has it on
    ws = ws_connect(node.url("/chat"), max_size=None, open_timeout=10, **kw)
    ws.send(f"j {room}")
    assert ws.recv(timeout=10) == f"joined {room}"
    return ws


def recv_all(ws, n: int, timeout: float = 20.0) -> list[str]:
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out.append(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
    return out


def nothing_more(ws, wait: float = 0.3) -> bool:
    try:
        extra = ws.recv(timeout=wait)
    except TimeoutError:
        return True
    raise AssertionError(f"unexpected message {extra[:80]!r}")


def nodes(stack: ExitStack, tmp_path: Path, url: str, prefix: str, n: int, **env: str) -> list[Node]:
    out = []
    for i in range(n):
        e = {"FASTWS_BACKPLANE": url, "CLUSTER_PREFIX": prefix, **env}
        if i == n - 1 and env.get("LAST_COMPRESSED"):
            e["CLUSTER_COMPRESSION"] = "1"
        out.append(stack.enter_context(Node(tmp_path / f"node{i}.log", e)))
    return out


def test_three_nodes_share_rooms_exactly_once_in_order(tmp_path, backplane_url, broker, prefix):
    with ExitStack() as stack:
        n0, n1, n2 = nodes(stack, tmp_path, backplane_url, prefix, 3, LAST_COMPRESSED="1")
        a0, b0 = member(n0, "room"), member(n0, "room")
        a1, b1 = member(n1, "room"), member(n1, "room")
        # node 2 has deflate on; its clients (websockets) negotiate it
        a2, b2 = member(n2, "room"), member(n2, "room")
        assert a2.protocol.extensions and not a0.protocol.extensions      # deflate on node 2 only
        for ws in (a0, a1, a2):
            stack.callback(ws.close)
        lonely = member(n0, "lonely")
        before = get(n2, "/stats")["cluster"]["received"]

        for i in range(50):
            a0.send(f"b room from0 {i}")          # ws.broadcast: everyone but a0
            a1.send(f"a room from1 {i}")          # ws.broadcast_all: a1 too
        for i in range(20):
            status, body = post(n2, "/publish?room=room", f"from2 {i}".encode())   # app.broadcast
            assert status == 200 and body["local"] == 2          # the local count
        for i in range(30):
            lonely.send(f"a lonely x {i}")        # only node 0 has members

        def by_sender(msgs):
            out: dict[str, list[int]] = {}
            for m in msgs:
                sender, seq = m.split(" ")
                out.setdefault(sender, []).append(int(seq))
            return out

        expect_all = {"from0": list(range(50)), "from1": list(range(50)), "from2": list(range(20))}
        for ws, name in ((b0, "b0"), (a2, "a2"), (b1, "b1"), (b2, "b2")):
            got = by_sender(recv_all(ws, 120))
            assert got == expect_all, (name, {k: len(v) for k, v in got.items()})
            nothing_more(ws, 0.2)
        got = by_sender(recv_all(a0, 70))
        assert got == {"from1": list(range(50)), "from2": list(range(20))}
        got = by_sender(recv_all(a1, 120))
        assert got == expect_all
        assert by_sender(recv_all(lonely, 30)) == {"x": list(range(30))}

        # node 2 received the room's traffic from nodes 0 and 1 and nothing of "lonely"
        stats2 = get(n2, "/stats")["cluster"]
        assert stats2["received"] - before == 100, stats2
        assert broker.subscribers(prefix, "room") == 3
        assert broker.subscribers(prefix, "lonely") == 1

        # a 1 MiB message crosses (the default max_message_size)
        big = "y" * ((1 << 20) - len("b room "))
        a0.send(f"b room {big}")
        for ws in (b0, a1, b1, a2, b2):
            assert ws.recv(timeout=20) == big
        # too large to cross: refused before any member, local ones included, gets it
        status, body = post(n0, "/publish?room=room&repeat=3", big.encode())
        assert status == 413 and "max_message_size" in body["refused"]
        for ws in (b0, a1, a2):
            nothing_more(ws, 0.3)
        lonely.close()
        b0.close(); b1.close(); b2.close()


def test_cluster_room_size_and_rooms_follow_joins_leaves_closes_and_a_killed_node(
        tmp_path, backplane_url, prefix):
    with ExitStack() as stack:
        n0, n1, n2 = nodes(stack, tmp_path, backplane_url, prefix, 3, CLUSTER_TTL="2")
        socks = [member(n0, "r1"), member(n0, "r1"), member(n1, "r1"), member(n2, "r1"),
                 member(n2, "r2")]

        def size(node, room):
            return get(node, f"/size?room={room}")["size"]

        eventually(lambda: all(size(n, "r1") == 4 for n in (n0, n1, n2)), "r1 has 4 members")
        assert size(n1, "r2") == 1
        assert get(n0, "/rooms")["rooms"] == ["r1", "r2"]
        assert len(get(n0, "/nodes")["nodes"]) == 3

        socks[0].send("l r1")
        assert socks[0].recv(timeout=10) == "left r1"
        socks[1].close()
        eventually(lambda: size(n1, "r1") == 2, "r1 down to 2 after a leave and a close")
        socks[4].close()
        eventually(lambda: get(n0, "/rooms")["rooms"] == ["r1"], "r2 gone everywhere")

        n1.proc.send_signal(signal.SIGKILL)        # its member of r1 vanishes with it
        n1.proc.wait(10)
        eventually(lambda: size(n0, "r1") == 1, "the killed node drops out within its TTL", 15)
        assert len(get(n0, "/nodes")["nodes"]) == 2
        for ws in socks:
            ws.close()


def test_join_leave_races_end_in_the_last_state(tmp_path, backplane_url, broker, prefix):
    with ExitStack() as stack:
        n0, n1 = nodes(stack, tmp_path, backplane_url, prefix, 2, )
        sender = member(n0, "race")
        racer = ws_connect(n1.url("/chat"), open_timeout=10)
        quitter = ws_connect(n1.url("/chat"), open_timeout=10)
        for _ in range(20):
            racer.send("j race")
            racer.send("l race")
            quitter.send("j gone")
            quitter.send("l gone")
        racer.send("j race")
        replies = recv_all(racer, 41)
        assert replies[-1] == "joined race"
        recv_all(quitter, 40)
        for i in range(10):
            sender.send(f"b race m {i}")
        assert recv_all(racer, 10) == [f"m {i}" for i in range(10)]
        nothing_more(racer)
        # "gone" has no member left anywhere: its channel goes after the linger
        eventually(lambda: broker.subscribers(prefix, "gone") == 0,
                   "node 1 unsubscribed from the empty room", 10)
        assert broker.subscribers(prefix, "race") == 2
        for ws in (sender, racer, quitter):
            ws.close()


def test_bad_envelopes_from_the_broker_are_dropped_and_counted(tmp_path, backplane_url, broker,
                                                                prefix):
    with ExitStack() as stack:
        n0, n1 = nodes(stack, tmp_path, backplane_url, prefix, 2, )
        a, b = member(n0, "r"), member(n1, "r")
        for junk in (b"", b"short", b"\x09" + b"x" * 20, b"\x01" + b"n" * 8 + b"\x07payload"):
            broker.publish(prefix, "r", junk)
        a.send("b r still fine")
        assert b.recv(timeout=10) == "still fine"
        nothing_more(b)
        stats = get(n1, "/stats")["cluster"]
        assert stats["bad_envelopes"] == 4, stats
        a.close(); b.close()


def _clients_of(redis: Redis) -> list[str]:
    listing = redis.call("CLIENT", "LIST").decode()
    return [line for line in listing.splitlines() if "cmd=client|list" not in line]


def test_redis_restart_and_pubsub_kill_resubscribe_and_tell_the_app(tmp_path, own_redis: OwnRedis,
                                                                   prefix):
    with ExitStack() as stack:
        n0, n1 = nodes(stack, tmp_path, own_redis.url, prefix, 2, )
        a, b = member(n0, "r"), member(n1, "r")
        local = member(n0, "r")
        channel = f"{prefix}:r:r"
        assert own_redis.client.call("PUBSUB", "NUMSUB", channel)[1] == 2
        assert len(_clients_of(own_redis.client)) == 6          # three links per node

        own_redis.stop()
        eventually(lambda: get(n0, "/stats")["events"] == ["lost"], "node 0 told of the loss")
        # local delivery does not depend on Redis; cross-node publishes are dropped and counted
        a.send("b r during")
        assert local.recv(timeout=10) == "during"
        assert get(n0, "/stats")["cluster"]["dropped_outage"] == 1
        own_redis.start()
        for n in (n0, n1):
            eventually(lambda: get(n, "/stats")["events"] == ["lost", "restored"],
                       "the node is told Redis is back", 20)
        eventually(lambda: own_redis.client.call("PUBSUB", "NUMSUB", channel)[1] == 2,
                   "both nodes resubscribed")
        a.send("b r after")
        assert b.recv(timeout=10) == "after"
        assert local.recv(timeout=10) == "after"
        nothing_more(b)          # "during" never crossed
        assert len(_clients_of(own_redis.client)) == 6          # nothing leaked

        # Redis cuts the subscribers (as its pub/sub output limit would)
        own_redis.client.call("CLIENT", "KILL", "TYPE", "pubsub")
        for n in (n0, n1):
            eventually(lambda: get(n, "/stats")["events"][-1] == "restored"
                       and get(n, "/stats")["events"].count("restored") == 2,
                       "the node reconnected after CLIENT KILL", 20)
        eventually(lambda: own_redis.client.call("PUBSUB", "NUMSUB", channel)[1] == 2,
                   "resubscribed after CLIENT KILL")
        b.send("b r again")
        assert a.recv(timeout=10) == "again"
        assert len(_clients_of(own_redis.client)) == 6
        for ws in (a, b, local):
            ws.close()


def test_a_silent_link_is_found_by_the_probe(tmp_path, own_redis: OwnRedis, prefix):
    proxy = SilentProxy(own_redis.port)
    try:
        with ExitStack() as stack:
            via_proxy = f"redis://127.0.0.1:{proxy.port}/0"
            (n0,) = nodes(stack, tmp_path, via_proxy, prefix, 1, CLUSTER_PROBE="0.3",
                          CLUSTER_PROBE_TIMEOUT="0.5")
            (n1,) = nodes(stack, tmp_path / "..", own_redis.url, prefix, 1)
            a, b = member(n0, "r"), member(n1, "r")
            b.send("b r before")
            assert a.recv(timeout=10) == "before"
            accepted = proxy.accepted
            proxy.forwarding.clear()                 # TCP stays up; nothing gets through
            eventually(lambda: "lost" in get(n0, "/stats")["events"], "the probe noticed", 10)
            proxy.forwarding.set()
            eventually(lambda: get(n0, "/stats")["events"][-1] == "restored", "reconnected", 20)
            assert proxy.accepted >= accepted + 2      # new links, not the dead ones
            eventually(lambda: own_redis.client.call("PUBSUB", "NUMSUB", f"{prefix}:r:r")[1] == 2,
                       "resubscribed")
            b.send("b r after")
            assert a.recv(timeout=10) == "after"
            a.close(); b.close()
    finally:
        proxy.close()


def test_unreachable_redis_stops_the_start_with_the_url_and_no_password(tmp_path):

    port = free_port()
    node = Node(tmp_path / "node.log",
                {"FASTWS_BACKPLANE": f"redis://user:s3cr3t@127.0.0.1:{port}/0"})
    node.start(wait=False)
    try:
        assert node.proc.wait(30) != 0
        log = node.log()
        assert f"redis://user:***@127.0.0.1:{port}/0" in log, log
        assert "s3cr3t" not in log
    finally:
        node.kill()


def test_a_password_url_works_and_a_wrong_one_is_refused_without_showing_it(tmp_path):
    r = OwnRedis(tmp_path)
    r.start("--requirepass", "hunter2")
    try:
        good = Node(tmp_path / "good.log", {"FASTWS_BACKPLANE": f"redis://:hunter2@127.0.0.1:{r.port}/0"})
        with good:
            ws = member(good, "r")
            ws.close()
            assert "hunter2" not in good.log()
        bad = Node(tmp_path / "bad.log", {"FASTWS_BACKPLANE": f"redis://:wrong-pw@127.0.0.1:{r.port}/0"})
        bad.start(wait=False)
        try:
            assert bad.proc.wait(30) != 0
            log = bad.log()
            assert "refused the credentials" in log and "wrong-pw" not in log, log
        finally:
            bad.kill()
    finally:
        r.stop()


def test_rediss_tls_url_works(tmp_path, prefix):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    r = OwnRedis(tmp_path)
    tls_port = r.port
    r.port = free_port()            # a plain port too, for the readiness ping and assertions
    r.client = Redis(r.port)
    r.start("--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "cert.pem"),
            "--tls-key-file", str(tmp_path / "key.pem"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
            "--tls-auth-clients", "no")
    try:
        url = f"rediss://127.0.0.1:{tls_port}/0?ssl_ca_certs={tmp_path / 'ca.pem'}"
        with ExitStack() as stack:
            n0, n1 = nodes(stack, tmp_path, url, prefix, 2)
            a, b = member(n0, "r"), member(n1, "r")
            a.send("b r over tls")
            assert b.recv(timeout=10) == "over tls"
            assert r.client.call("PUBSUB", "NUMSUB", f"{prefix}:r:r")[1] == 2
            a.close(); b.close()
    finally:
        r.stop()


def test_the_cluster_example_shares_a_room_between_two_nodes(tmp_path):
    import uuid
    room = "general-" + uuid.uuid4().hex[:8]
    with ExitStack() as stack:
        n0, n1 = (stack.enter_context(Node(tmp_path / f"ex{i}.log", {"FASTWS_BACKPLANE": "redis://127.0.0.1:6379/0"},
                                           app="examples.cluster:app")) for i in range(2))
        alice = stack.enter_context(ws_connect(n0.url(f"/chat/{room}?user=Alice")))
        bob = stack.enter_context(ws_connect(n1.url(f"/chat/{room}?user=Bob")))
        # Bob's node may not have Alice's node subscribed yet: he repeats himself
        # (bounded) until she hears him once; from then on it is live.
        def heard() -> bool:
            bob.send("hi")
            try:
                msg = alice.recv(timeout=0.2)
            except TimeoutError:
                return False
            return "hi" in msg or "Bob joined" in msg
        wait_for(heard, timeout=10, what="Alice hears Bob across nodes")
        info = get(n0, "/cluster")
        assert len(info["nodes"]) >= 2 and room in info["rooms"]
