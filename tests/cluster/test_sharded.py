"""Rooms sharded over several Redis instances (issue 25): the jump hash's
spread, each room on its own instance, one instance down stopping only its
rooms, a node given another instance list found and counted, and a room that
moves between instances starting a new epoch. The contract tests
(``test_backplane``, ``test_recovery``, ``test_workers``) also run on two
sharded instances (the ``history_url`` fixture's "sharded" engine)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from fastws import BackplaneError
from fastws.cluster.sharded import jump_hash, shard_of
from tests.conftest import serving
from tests.integration.clients import closed_with, recv_json, wait_for, ws_connect
from tests.recovery.test_protocol import connect_v1, positions

from .conftest import OwnRedis
from .recovery_app import make_app
from .test_recovery import joined_position, post

pytestmark = pytest.mark.timeout(120)


def room_on(shard: int, shards: int, stem: str) -> str:
    """A room name that lives on instance ``shard`` of ``shards``."""
    return next(f"{stem}{i}" for i in range(1000) if shard_of(f"{stem}{i}", shards) == shard)


@pytest.fixture
def two(tmp_path: Path):
    servers = [OwnRedis(tmp_path / f"r{i}") for i in range(2)]
    for r in servers:
        r.tmp.mkdir()
        r.start()
    try:
        yield servers
    finally:
        for r in servers:
            r.stop()


def test_the_jump_hash_spreads_rooms_evenly_and_moves_few_when_an_instance_is_added():
    rooms = [f"room-{i}" for i in range(10_000)]
    load = Counter(shard_of(r, 4) for r in rooms)
    assert sorted(load) == [0, 1, 2, 3]
    assert max(load.values()) <= 1.2 * (len(rooms) / 4), load
    # A fifth instance takes about a fifth of the rooms, every one of them
    # from the others: no room moves between the first four.
    moved = [r for r in rooms if shard_of(r, 5) != shard_of(r, 4)]
    assert all(shard_of(r, 5) == 4 for r in moved)
    assert 0.15 < len(moved) / len(rooms) < 0.25, len(moved)
    # The vectors other implementations test against (dgryski/go-jump's):
    # given the same key, every implementation picks the same bucket.
    assert [jump_hash(k, n) for k, n in ((1, 1), (42, 57), (0xDEAD10CC, 1), (0xDEAD10CC, 666),
                                         (256, 1024))] == [0, 43, 0, 361, 520]


def test_each_room_lives_on_its_instance_and_one_down_stops_only_its_rooms(two, prefix):
    url = ",".join(r.url for r in two)
    ra, rb = room_on(0, 2, "a"), room_on(1, 2, "b")
    events: list[str] = []
    a_app = make_app(url, prefix, ping_interval=None)
    a_app.cluster.on("lost", lambda: events.append("lost"))
    a_app.cluster.on("restored", lambda: events.append("restored"))
    b_app = make_app(url, prefix, ping_interval=None)
    with serving(a_app) as a, serving(b_app) as b:
        va, _ = connect_v1(a, f"/feed/{ra}")
        vb, _ = connect_v1(a, f"/feed/{rb}")
        joined_position(va)
        joined_position(vb)
        pa, pb = ws_connect(b.url(f"/feed/{ra}")), ws_connect(b.url(f"/feed/{rb}"))
        wait_for(lambda: b.call(lambda: len(b_app.rooms())) == 2, what="b's members joined")
        # Each room's channel and history are on its instance, and only there.
        for i, room in ((0, ra), (1, rb)):
            other = two[1 - i].client
            wait_for(lambda: two[i].client.call("PUBSUB", "NUMSUB", f"{prefix}:r:{room}")[1] == 2,
                     what=f"{room} subscribed on instance {i}")
            assert other.call("PUBSUB", "NUMSUB", f"{prefix}:r:{room}")[1] == 0
        assert post(a.port, f"/publish/{ra}", b"1")[0] == 200
        assert post(a.port, f"/publish/{rb}", b"1")[0] == 200
        assert recv_json(pa) == {"n": 1} and recv_json(pb) == {"n": 1}
        assert two[0].client.call("XLEN", f"{prefix}:h:{ra}") == 1
        assert two[1].client.call("XLEN", f"{prefix}:h:{rb}") == 1
        assert two[0].client.call("EXISTS", f"{prefix}:h:{rb}") == 0
        recv_json(va), recv_json(vb)

        two[1].stop()
        wait_for(lambda: not a.call(lambda: a_app.cluster.connected), what="instance 1 seen down")
        assert events == ["lost"]
        stats = a.call(lambda: a_app.cluster.stats())
        assert (stats["instances"], stats["instances_up"]) == (2, 1)
        # The down instance's room: its v1 member is closed to recover later;
        # publishing to it is refused. The other room does not notice.
        assert closed_with(vb) == (1013, "backplane lost: reconnect to recover")
        status, body = post(a.port, f"/publish/{rb}", b"2")
        assert status == 503 and "not reachable" in body["error"]
        for n in (2, 3):
            assert post(a.port, f"/publish/{ra}", str(n).encode())[0] == 200
            assert recv_json(pa) == {"n": n}
            assert recv_json(va)["data"] == {"n": n}
        # Presence: the up instance's rooms answer, the down one's say so.
        wait_for(lambda: a.call(lambda: a_app.cluster.room_size(ra)) == 2, what="ra's size")
        with pytest.raises(BackplaneError, match="not reachable"):
            a.call(lambda: a_app.cluster.room_size(rb))
        assert ra in a.call(lambda: a_app.cluster.rooms())

        two[1].start()      # empty: its rooms start new epochs
        wait_for(lambda: a.call(lambda: a_app.cluster.connected), timeout=20, what="instance 1 back")
        assert events == ["lost", "restored"]
        # b's own link to instance 1 comes back on its own backoff.
        wait_for(lambda: b.call(lambda: b_app.cluster.connected), timeout=20, what="b back")
        b.call(lambda: b_app.cluster.joined(rb))
        assert post(a.port, f"/publish/{rb}", b"4")[0] == 200
        assert recv_json(pb) == {"n": 4}
        for ws in (va, pa, pb):
            ws.close()


def test_a_node_given_another_instance_list_is_logged_and_counted(two, prefix, caplog):
    caplog.set_level(logging.ERROR, "fastws.backplane")
    a_app = make_app(",".join(r.url for r in two), prefix, ping_interval=None)
    b_app = make_app(",".join(r.url for r in reversed(two)), prefix, ping_interval=None)
    c_app = make_app(",".join(r.url for r in two), prefix, ping_interval=None)
    with serving(a_app) as a, serving(b_app), serving(c_app) as c:
        wait_for(lambda: a.call(lambda: a_app.cluster.stats())["ring_mismatches"] >= 1,
                 timeout=20, what="a finds b's list differs")
        b_id = b_app.cluster.node_id
        assert any(b_id in r.getMessage() and "other Redis instances" in r.getMessage()
                   for r in caplog.records)
        wait_for(lambda: c.call(lambda: c_app.cluster.stats())["ring_mismatches"] == 1,
                 timeout=20, what="c finds b's list differs")
        # Once per node, however many instances it is seen on; and the two
        # nodes that agree never count each other.
        assert a.call(lambda: a_app.cluster.stats())["ring_mismatches"] == 1
        mismatched = [r for r in caplog.records if "other Redis instances" in r.getMessage()]
        assert not any(a_app.cluster.node_id in r.getMessage() and c_app.cluster.node_id
                       in r.getMessage() for r in mismatched)
        assert not any("redis://" in r.getMessage() for r in caplog.records)


def test_a_room_that_moves_to_another_instance_starts_a_new_epoch(two, prefix):
    """One instance, then two (the room moves to the new one), then one again
    (it moves back): each move is a new epoch, so a client that stopped in the
    first is told ``recovered: false`` rather than handed the first epoch's
    tail without what the second instance numbered meanwhile."""
    room = room_on(1, 2, "moving")
    epochs = []
    for urls in ([two[0].url], [two[0].url, two[1].url], [two[0].url]):
        app = make_app(",".join(urls), prefix, ping_interval=None)
        with serving(app) as a:
            for n in (1, 2):
                status, body = post(a.port, f"/publish/{room}", str(n).encode())
                assert status == 200
            epochs.append((body["epoch"], body["offset"]))
            if len(epochs) == 3:
                ws, _ = connect_v1(a, f"/feed/{room}", positions([[room, epochs[0][0], 2]]))
                joined = recv_json(ws)
                assert (joined["recovered"], joined["reason"]) == (False, "epoch changed")
                ws.close()
    assert [o for _, o in epochs] == [2, 2, 2]
    assert len({e for e, _ in epochs}) == 3, epochs
    assert two[1].client.call("XLEN", f"{prefix}:h:{room}") == 2
