"""The Redis Cluster backplane (issue 25): a room's channel and history in its
slot on one master with sharded pub/sub; a master killed, its replica taking
over (the nodes follow it, traffic resumes, the app is told, a client that
saw the last message before the kill is never given a reused offset); a
room's slot resharded (``redis-cli --cluster reshard``) while publishing:
every publish followed to the new master, in order. The contract tests
(``test_backplane``, ``test_recovery``, ``test_workers``) also run on a
cluster of three masters with replicas (the "cluster" engine of the fixtures)."""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from fastws.cluster.options import BackplaneOptions
from fastws.cluster.redis_cluster import cluster_seeds, key_slot, room_slot
from fastws.cluster.relay import cluster_name
from tests.conftest import serving
from tests.integration.clients import closed_with, recv_json, wait_for, ws_connect
from tests.recovery.test_protocol import connect_v1, positions

from .conftest import OwnRedisCluster
from .recovery_app import make_app
from .test_recovery import joined_position, post

pytestmark = pytest.mark.timeout(180)


def live(srv, app, room: str) -> bool:
    """Whether the node's subscription to ``room`` is confirmed now (for
    wait_for: a room between masters answers with an error meanwhile)."""
    try:
        srv.call(lambda: app.cluster.joined(room))
        return True
    except Exception:
        return False


@pytest.fixture
def own_cluster(tmp_path: Path):
    c = OwnRedisCluster(tmp_path)
    c.start()
    try:
        yield c
    finally:
        c.stop()


def test_urls_names_and_slots():
    seeds = cluster_seeds("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001")
    assert [(s.host, s.port, s.password) for s in seeds] == [("10.0.0.1", 7000, "s3cret"),
                                                             ("10.0.0.2", 7001, "s3cret")]
    assert all("s3cret" not in s.safe for s in seeds)
    assert BackplaneOptions("redis+cluster://h:7000").engine == "redis-cluster"
    with pytest.raises(ValueError, match="only database 0"):
        BackplaneOptions("redis+cluster://h:7000/2")
    with pytest.raises(ValueError, match="hash tags"):
        BackplaneOptions("redis+cluster://h:7000", prefix="a{b}")
    # Redis's own slots (CLUSTER KEYSLOT): CRC16-XMODEM mod 16384.
    assert (key_slot("foo"), key_slot("user1000"), key_slot("")) == (12182, 3443, 0)
    # A room's name is its keys' hash tag; names that cannot be a tag are
    # tagged by their hash and still never share a name with another room.
    assert cluster_name("lobby") == "{lobby}" and room_slot("lobby") == key_slot("lobby")
    odd = [cluster_name(r) for r in ("", "a}b", "}", "=x")]
    assert len(set(odd)) == 4 and cluster_name("a}b").endswith("}:a}b")


def test_a_room_lives_in_its_slot_on_one_master_with_sharded_pubsub(redis_cluster, prefix):
    a_app = make_app(redis_cluster.url, prefix, ping_interval=None)
    b_app = make_app(redis_cluster.url, prefix, ping_interval=None)
    rooms = ["lobby", "a}b"]
    with serving(a_app) as a, serving(b_app) as b:
        assert a.call(lambda: a_app.cluster.stats())["instances"] == 3
        for room in rooms:
            path = f"/feed/{room.replace('}', '%7D')}"
            va, _ = connect_v1(a, path)
            joined_position(va)
            pb = ws_connect(b.url(path))
            master = redis_cluster.master_of(room)
            channel = f"{prefix}:r:{cluster_name(room)}"
            wait_for(lambda: master.client.call("PUBSUB", "SHARDNUMSUB", channel)[1] == 2,
                     what=f"{room!r} subscribed on its master by both nodes")
            # Sharded pub/sub: nothing on the classic channels of any node.
            assert master.client.call("PUBSUB", "NUMSUB", channel)[1] == 0
            status, body = post(a.port, f"/publish/{room.replace('}', '%7D')}", b"1")
            assert status == 200 and body["offset"] == 1
            assert recv_json(pb) == {"n": 1}
            assert recv_json(va)["data"] == {"n": 1}
            # Its history stream and hash are on the same master, in the same slot.
            stream = f"{prefix}:h:{cluster_name(room)}"
            assert master.client.call("XLEN", stream) == 1
            assert master.client.call("CLUSTER", "KEYSLOT", stream) == room_slot(room) == \
                master.client.call("CLUSTER", "KEYSLOT", channel)
            wait_for(lambda: a.call(lambda: a_app.cluster.room_size(room)) == 2,
                     what="presence from the room's master")
            va.close()
            pb.close()
        assert a.call(lambda: a_app.cluster.stats())["redirects"] == 0


def _master_rooms(cluster: OwnRedisCluster, stem: str) -> dict[int, str]:
    """One room name per master (by port)."""
    out: dict[int, str] = {}
    for i in range(2000):
        room = f"{stem}{i}"
        out.setdefault(cluster.master_of(room).port, room)
        if len(out) == cluster.masters:
            return out
    raise RuntimeError("no room found on some master")


def test_a_killed_master_fails_over_and_no_offset_is_reused(own_cluster, prefix):
    """A master is killed right after a publish: its replica takes over
    (asynchronous replication: it may lack the last writes), the nodes follow
    it, the app hears lost then restored, traffic resumes; the room's epoch
    changes, so the client that saw offset 1 is told it cannot recover rather
    than given another message numbered 1 or a partial replay."""
    events: list[str] = []
    a_app = make_app(own_cluster.url, prefix, ping_interval=None)
    a_app.cluster.on("lost", lambda: events.append("lost"))
    a_app.cluster.on("restored", lambda: events.append("restored"))
    b_app = make_app(own_cluster.url, prefix, ping_interval=None)
    rooms = _master_rooms(own_cluster, "r")
    victim = own_cluster.servers[0]
    room = rooms[victim.port]
    other = next(r for p, r in rooms.items() if p != victim.port)
    with serving(a_app) as a, serving(b_app) as b:
        va, _ = connect_v1(a, f"/feed/{room}")
        epoch, _ = joined_position(va)
        pb, po = ws_connect(b.url(f"/feed/{room}")), ws_connect(b.url(f"/feed/{other}"))
        for r in (room, other):
            wait_for(lambda r=r: live(b, b_app, r), what="joined")
        assert post(a.port, f"/publish/{room}", b"1")[1]["offset"] == 1
        victim.stop()
        assert recv_json(va)["offset"] == 1 and recv_json(pb) == {"n": 1}
        # Its fastws.v1 member is closed to recover; the other masters' rooms go on.
        assert closed_with(va) == (1013, "backplane lost: reconnect to recover")
        # (Until the replica is promoted the cluster may say CLUSTERDOWN: 503, not published.)
        wait_for(lambda: post(a.port, f"/publish/{other}", b"2")[0] == 200, timeout=30,
                 what="a publish to another master's room")
        assert recv_json(po) == {"n": 2}
        wait_for(lambda: own_cluster.master_of(room) is not victim, timeout=30,
                 what="the replica promoted")
        wait_for(lambda: a.call(lambda: a_app.cluster.connected), timeout=30,
                 what="a follows the replica")
        wait_for(lambda: b.call(lambda: b_app.cluster.connected), timeout=30,
                 what="b follows the replica")
        assert events == ["lost", "restored"]
        stats = a.call(lambda: a_app.cluster.stats())
        assert stats["topology_changes"] >= 1 and stats["instances"] == 3
        wait_for(lambda: live(b, b_app, room), timeout=30, what="resubscribed")
        status, body = post(a.port, f"/publish/{room}", b"3")
        assert status == 200 and (body["epoch"] != epoch, body["offset"]) == (True, 1)
        assert recv_json(pb) == {"n": 3}
        back, _ = connect_v1(a, f"/feed/{room}", positions([[room, epoch, 1]]))
        joined = recv_json(back)
        assert (joined["recovered"], joined["reason"]) == (False, "epoch changed")
        assert (joined["epoch"], joined["offset"]) == (body["epoch"], 1)
        for ws in (back, pb, po):
            ws.close()


def _reshard(cluster: OwnRedisCluster, source, target, slots: int) -> None:
    cli = shutil.which("redis-cli")
    ids = {r.port: r.client.call("CLUSTER", "MYID").decode() for r in (source, target)}
    out = subprocess.run([cli, "--cluster", "reshard", f"127.0.0.1:{source.port}",
                          "--cluster-from", ids[source.port], "--cluster-to", ids[target.port],
                          "--cluster-slots", str(slots), "--cluster-yes",
                          "--cluster-pipeline", "1"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]


def test_a_slot_resharded_while_publishing_is_followed_in_order(own_cluster, prefix):
    """A room's slot moves to another master (``redis-cli --cluster reshard``)
    while one node publishes to it without pause: each publish the old master
    answers MOVED is sent again to the new one, after those still in flight
    (nothing is dropped, the order holds), and the other node, told by the
    old master that the slot left, subscribes on the new one and receives
    what follows. A room with history numbers on the new master: a new epoch."""
    source, target = own_cluster.servers[0], own_cluster.servers[1]
    lo = min(int(r[0]) for r in source.client.call("CLUSTER", "SLOTS")
             if int(r[2][1]) == source.port)
    room = next(f"m{i}" for i in range(100_000) if lo <= room_slot(f"m{i}") < lo + 20)
    kept = next(f"h{i}" for i in range(100_000) if lo <= room_slot(f"h{i}") < lo + 20)
    only_h = {"history_rooms": lambda r: r.startswith("h")}
    a_app = make_app(own_cluster.url, prefix, ping_interval=None, **only_h)
    b_app = make_app(own_cluster.url, prefix, ping_interval=None, **only_h)
    with serving(a_app) as a, serving(b_app) as b:
        sender, pb = ws_connect(a.url(f"/feed/{room}")), ws_connect(b.url(f"/feed/{room}"))
        pa = ws_connect(a.url(f"/feed/{room}"))        # local: paces the sender
        b.call(lambda: b_app.cluster.joined(room))
        got: list[int] = []
        done = threading.Event()

        def receive() -> None:
            while not done.is_set() or got[-1:] != [total - 1]:
                try:
                    got.append(int(pb.recv(timeout=10)))
                except TimeoutError:
                    return

        answers: list[tuple[int, dict]] = []

        def publish_kept() -> None:
            # A room with history in a moving slot: its script meets ASK,
            # TRYAGAIN and MOVED; each message is numbered once, in order.
            n = 0
            while not done.is_set():
                answers.append(post(a.port, f"/publish/{kept}", str(n).encode()))
                n += 1

        total = 0
        reader = threading.Thread(target=receive, daemon=True)
        reader.start()
        keeper = threading.Thread(target=publish_kept, daemon=True)
        keeper.start()
        mover = threading.Thread(target=_reshard, args=(own_cluster, source, target, 20))
        mover.start()
        while mover.is_alive() or total < 200:
            sender.send(str(total))
            assert int(pa.recv(timeout=10)) == total
            total += 1
        mover.join()
        assert own_cluster.master_of(room) is target
        # Past the move, b is subscribed on the new master: the tail arrives.
        wait_for(lambda: live(b, b_app, room), timeout=30, what="b moved")
        for _ in range(50):
            sender.send(str(total))
            assert int(pa.recv(timeout=10)) == total
            total += 1
        # The publishing node follows too: what b sends reaches a's members.
        wait_for(lambda: live(a, a_app, room), timeout=30, what="a moved")
        pb.send("from b")
        assert pa.recv(timeout=10) == "from b"
        done.set()
        reader.join(30)
        keeper.join(30)
        stats_a = a.call(lambda: a_app.cluster.stats())
        # It learned of the move from a MOVED or from the old master's sunsubscribe.
        assert stats_a["redirects"] + stats_a["topology_changes"] >= 1, stats_a
        assert stats_a["dropped_moved"] == 0 and stats_a["dropped_outage"] == 0, stats_a
        assert len(answers) > 5 and all(status == 200 for status, _ in answers), answers
        positions_seen = [(body["epoch"], body["offset"]) for _, body in answers]
        epochs = list(dict.fromkeys(e for e, _ in positions_seen))
        assert len(epochs) == 2, epochs        # the move starts a new one on the new master
        for epoch in epochs:
            offsets = [o for e, o in positions_seen if e == epoch]
            assert offsets == list(range(offsets[0], offsets[0] + len(offsets))), offsets
        # In order and never twice; the tail, published after b followed the
        # move, all there. (Between the move and b's new subscription, at most
        # once: a few may miss b, as on any link change.)
        assert got == sorted(set(got)), got
        assert got[-50:] == list(range(total - 50, total))
        for ws in (sender, pa, pb):
            ws.close()
