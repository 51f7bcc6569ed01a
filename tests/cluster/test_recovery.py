"""Recovery with the history in Redis (issue 24): two nodes on one backplane,
a client that reconnects to the other node and recovers from Redis; the
sender's skip and ``fastws.sent`` across the round trip; ``app.history`` from
any node; Redis restarted empty (a new epoch, ``recovered: false``); Redis down
while publishing (refused, said, nothing delivered); the proxy scenario with
the Python client moving to another node."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import serving
from tests.integration.clients import closed_with, recv_json, wait_for, ws_connect
from tests.recovery.harness import Observed, Publisher, check_exactly_once, cut_and_recover
from tests.recovery.proxy import FaultProxy
from tests.recovery.test_protocol import connect_v1, positions
from tests.recovery.test_python_client import PythonClient

from .conftest import Node
from .recovery_app import make_app
from .test_backplane import eventually
from .test_workers import children


def post(port: int, path: str, body: bytes) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as resp:
        return json.loads(resp.read())


def joined_position(ws: Any) -> tuple[str, int]:
    msg = recv_json(ws)
    assert msg["type"] == "fastws.joined", msg
    return msg["epoch"], msg["offset"]


def test_a_client_recovers_on_another_node_from_redis(history_url, prefix):
    a_app = make_app(history_url, prefix, ping_interval=None)
    b_app = make_app(history_url, prefix, ping_interval=None)
    with serving(a_app) as a, serving(b_app) as b:
        ws, _ = connect_v1(a, "/feed/lobby")
        epoch, offset = joined_position(ws)
        assert offset == 0
        for n in range(1, 6):
            assert post(b.port, "/publish/lobby", str(n).encode())[0] == 200
        got = [recv_json(ws) for _ in range(5)]
        assert [(m["data"]["n"], m["offset"], m["epoch"]) for m in got] == \
            [(n, n, epoch) for n in range(1, 6)]
        ws.close()
        for n in range(6, 11):
            post(a.port, "/publish/lobby", str(n).encode())
        # Every node reads the same history.
        wait_for(lambda: len(get(b.port, "/history/lobby")) == 10, what="history on b")
        assert get(a.port, "/history/lobby") == get(b.port, "/history/lobby")
        back, _ = connect_v1(b, "/feed/lobby", positions([["lobby", epoch, 5]]))
        replay = [recv_json(back) for _ in range(5)]
        assert [(m["data"]["n"], m["offset"]) for m in replay] == [(n, n) for n in range(6, 11)]
        assert recv_json(back) == {"type": "fastws.joined", "room": "lobby", "epoch": epoch,
                                   "offset": 10, "recovered": True, "missed": 5}
        post(a.port, "/publish/lobby", b"11")
        live = recv_json(back)
        assert (live["data"]["n"], live["offset"]) == (11, 11)
        back.close()


def test_a_large_replay_from_redis_is_paced_and_live_messages_follow_it(history_url, prefix):
    """1,000 missed messages of 4 KiB (4 MiB, four times max_backpressure) to a
    client that reads slowly, while more are published: paced by the socket's
    drain, never a close; every message once, in order, then live ones."""
    app = make_app(history_url, prefix, ping_interval=None, max_backpressure=1 << 20)
    with serving(app) as a:
        ws, _ = connect_v1(a, "/feed/big")
        epoch, start = joined_position(ws)
        ws.close()
        sender, _ = connect_v1(a, "/feed/big")
        joined_position(sender)
        with sender.send_context():
            for i in range(1000):
                sender.protocol.send_text(f"{i:04d}".encode() + b"x" * 4092)
        wait_for(lambda: (get(a.port, "/history/big") or [[0, 0]])[-1][1] == start + 1000,
                 what="all 1,000 stored")
        # A small receive buffer: the kernel does not absorb the replay for it.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        raw.connect(("127.0.0.1", a.port))
        back = ws_connect(a.url("/feed/big"), sock=raw, max_queue=4,
                          subprotocols=["fastws.v1", positions([["big", epoch, start]])])
        assert json.loads(back.recv(timeout=10))["type"] == "fastws.welcome"
        def publish_live() -> None:
            for n in range(20):
                post(a.port, "/publish/big", str(n).encode())
                time.sleep(0.05)
        live = threading.Thread(target=publish_live)
        live.start()
        time.sleep(0.5)                 # the replay fills the socket meanwhile
        offsets, joined = [], None
        while len(offsets) < 1020:
            msg = recv_json(back)
            if msg["type"] == "fastws.joined":
                joined = msg
            elif msg["type"] == "fastws.message":
                offsets.append(msg["offset"])
        live.join()
        # Live messages published before the history was read are replayed too.
        assert joined["recovered"] is True and 1000 <= joined["missed"] <= 1020, joined
        assert offsets == list(range(start + 1, start + 1021))
        back.close()
        sender.close()


def test_a_forged_offset_past_what_json_counts_is_a_bad_position(history_url, prefix):
    with serving(make_app(history_url, prefix, ping_interval=None)) as a:
        ws, _ = connect_v1(a, "/feed/forged")
        epoch, _ = joined_position(ws)
        ws.close()
        back, _ = connect_v1(a, "/feed/forged", positions([["forged", epoch, 2**64]]))
        joined = recv_json(back)
        assert (joined["recovered"], joined["reason"]) == (False, "bad position")
        back.close()


def test_a_join_to_a_room_with_history_in_redis_is_told_its_position(history_url, prefix):
    """A client that states no position joins a room whose stream holds
    messages: it is told the room's position (so a quiet room is recoverable),
    without the entries being read."""
    with serving(make_app(history_url, prefix, ping_interval=None)) as a:
        for n in range(1, 6):
            assert post(a.port, "/publish/full", str(n).encode())[0] == 200
        ws, _ = connect_v1(a, "/feed/full")
        joined = recv_json(ws)
        assert joined["type"] == "fastws.joined" and joined["offset"] == 5 and joined["epoch"], joined
        assert "recovered" not in joined
        post(a.port, "/publish/full", b"6")
        assert recv_json(ws)["offset"] == 6
        ws.close()


def test_the_sender_is_skipped_and_told_its_offset_across_the_round_trip(history_url, prefix):
    with serving(make_app(history_url, prefix, ping_interval=None)) as a:
        sender, _ = connect_v1(a, "/feed/room")
        epoch, _ = joined_position(sender)
        other, _ = connect_v1(a, "/feed/room")
        joined_position(other)
        sender.send("hello")
        assert recv_json(sender) == {"type": "fastws.sent", "room": "room", "epoch": epoch,
                                     "offset": 1}
        got = recv_json(other)
        assert (got["text"], got["offset"]) == ("hello", 1)
        sender.close()
        other.close()


def test_redis_restarted_empty_is_a_new_epoch(own_redis, prefix):
    app = make_app(own_redis.url, prefix, ping_interval=None)
    with serving(app) as a:
        ws, _ = connect_v1(a, "/feed/lobby")
        epoch, _ = joined_position(ws)
        post(a.port, "/publish/lobby", b"1")
        assert recv_json(ws)["offset"] == 1
        ws.close()
        own_redis.stop()
        own_redis.start()
        wait_for(lambda: a.call(lambda: app.cluster.connected), timeout=20, what="reconnected")
        assert post(a.port, "/publish/lobby", b"2")[0] == 200
        back, _ = connect_v1(a, "/feed/lobby", positions([["lobby", epoch, 1]]))
        joined = recv_json(back)
        assert joined["recovered"] is False and joined["reason"] == "epoch changed"
        assert joined["epoch"] != epoch and joined["offset"] == 1     # offsets restart: a new epoch
        back.close()


def test_redis_restarted_from_an_older_snapshot_never_reuses_an_offset(own_redis, prefix):
    """Redis saved at offset 3, took 4 to 6, died and came back from the
    snapshot: the room's hash says offset 3 again, but it was written by
    another Redis run, so the next message starts a new epoch rather than
    numbering a second message 4; a client that stopped at 6 is told
    ``recovered: false``, and one that stopped at 2 too (the old epoch is not
    served from the restored stream)."""
    app = make_app(own_redis.url, prefix, ping_interval=None)
    with serving(app) as a:
        ws, _ = connect_v1(a, "/feed/lobby")
        epoch, _ = joined_position(ws)
        for n in (1, 2, 3):
            post(a.port, "/publish/lobby", str(n).encode())
        assert own_redis.client.call("SAVE") == b"OK"
        for n in (4, 5, 6):
            post(a.port, "/publish/lobby", str(n).encode())
        assert [recv_json(ws)["offset"] for _ in range(6)] == [1, 2, 3, 4, 5, 6]
        ws.close()
        own_redis.stop()
        own_redis.start()               # loads dump.rdb from its --dir: offset 3
        assert own_redis.client.call("HGET", f"{prefix}:hm:lobby", "o") == b"3"
        wait_for(lambda: a.call(lambda: app.cluster.connected), timeout=20, what="reconnected")
        epoch2, offset = post(a.port, "/publish/lobby", b"7")[1].values()
        assert (epoch2 != epoch, offset) == (True, 1)
        for stated in (6, 2):
            back, _ = connect_v1(a, "/feed/lobby", positions([["lobby", epoch, stated]]))
            joined = recv_json(back)
            assert (joined["recovered"], joined["reason"]) == (False, "epoch changed")
            assert (joined["epoch"], joined["offset"]) == (epoch2, 1)
            back.close()


def test_redis_down_while_publishing_is_refused_and_said(own_redis, prefix):
    """The node loses Redis: its fastws.v1 members are closed with 1013 (what
    other nodes publish meanwhile would never reach them; they come back and
    recover, or are told they cannot); a plain member stays. A publish is
    refused with 503 and delivered nowhere, not even here."""
    app = make_app(own_redis.url, prefix, ping_interval=None)
    with serving(app) as a:
        ws, _ = connect_v1(a, "/feed/lobby")
        joined_position(ws)
        plain = ws_connect(a.url("/feed/lobby"))
        own_redis.stop()
        wait_for(lambda: not a.call(lambda: app.cluster.connected), what="Redis seen down")
        assert closed_with(ws) == (1013, "backplane lost: reconnect to recover")
        # Joining while Redis is down: closed too, so its client keeps its position.
        late, _ = connect_v1(a, "/feed/lobby")
        assert closed_with(late) == (1013, "history unavailable: reconnect to recover")
        status, body = post(a.port, "/publish/lobby", b"1")
        assert status == 503 and "not reachable" in body["error"] and "published nowhere" in body["error"]
        with pytest.raises(TimeoutError):
            plain.recv(timeout=0.3)     # nothing was delivered, even here
        own_redis.start()
        wait_for(lambda: a.call(lambda: app.cluster.connected), timeout=20, what="reconnected")
        back, _ = connect_v1(a, "/feed/lobby")
        joined_position(back)
        assert post(a.port, "/publish/lobby", b"2")[0] == 200
        assert recv_json(back)["data"] == {"n": 2}
        assert json.loads(plain.recv(timeout=5)) == {"n": 2}
        back.close()
        plain.close()


@pytest.mark.parametrize("cut", ["reset", "stall"])
def test_the_python_client_moves_to_another_node_and_recovers(history_url, prefix, cut):
    a_app, b_app = make_app(history_url, prefix), make_app(history_url, prefix)
    with serving(a_app) as a, serving(b_app) as b:
        proxy = FaultProxy(a.port)
        observed = Observed()
        client = PythonClient(proxy.url("/feed/lobby"), observed)
        publisher = None
        try:
            observed.wait(lambda: observed.opens == 1, "the first connection")
            publisher = Publisher(b.port, "lobby")

            class ToB:
                """The proxy, but the client comes back to the other node."""

                def reset(self) -> None:
                    proxy.reset()

                def stall(self) -> None:
                    proxy.stall()

                def restore(self) -> None:
                    proxy.restore(target=b.port)

            cut_and_recover(observed, ToB(), publisher, cut)
            check_exactly_once(observed)
        finally:
            if publisher is not None:
                publisher.close()
            client.close()
            proxy.close()


class SteadyPublisher:
    """POSTs 1, 2, 3... to ``/publish/lobby`` on ``port`` from a thread, one
    after another, until stopped; remembers which were answered 200 and which
    were not (a connection cut by a restart, 503)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: list[int] = []
        self.failed: list[int] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            try:
                status, _ = post(self.port, "/publish/lobby", str(n).encode())
            except OSError:
                status = 0
            (self.answered if status == 200 else self.failed).append(n)
            time.sleep(0.002)

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(30)


def check_every_answered_message_once(observed: Observed, publisher: SteadyPublisher) -> None:
    """Every message answered 200 from the client's first one on reached it
    once, in order; the only others are ones whose answer was lost (a cut
    connection: Redis may have stored them all the same); offsets contiguous
    within each epoch. Before its first message the client is new and states no
    position: one published through another worker while its node was still
    subscribing to the room is not its to have (seen once on NATS)."""
    with observed.lock:
        numbers = [m[0] for m in observed.messages]
        assert numbers, "the client received nothing"
        if numbers != sorted(set(numbers)):
            at = next(i for i, (a, b) in enumerate(zip(numbers, numbers[1:])) if b <= a)
            raise AssertionError(f"a duplicate or a message out of order at {at}: "
                                 f"{observed.messages[max(0, at - 3):at + 4]}, "
                                 f"closes {observed.closes}, outcomes {observed.outcomes}")
        missing = {n for n in publisher.answered if n >= numbers[0]} - set(numbers)
        assert not missing, f"answered 200 but never received: {sorted(missing)[:10]}"
        assert set(numbers) - set(publisher.answered) <= set(publisher.failed)
        for (_, e1, o1), (_, e2, o2) in zip(observed.messages, observed.messages[1:]):
            assert e1 != e2 or o2 == o1 + 1, f"a gap in the offsets: {o1} then {o2}"
        assert all(ok for _, ok, _ in observed.outcomes), observed.outcomes


def wait_all_answered(clients: list[tuple[Any, Observed]], publisher: SteadyPublisher) -> None:
    last = max(publisher.answered)
    for _, observed in clients:
        observed.wait(lambda o=observed: any(m[0] == last for m in o.messages),
                      "the last answered message", 60)
    time.sleep(0.3)                 # a duplicate would arrive now


def publishing_to_connected(clients: list[tuple[Any, Observed]], port: int) -> SteadyPublisher:
    """Once every client is connected, a publisher on ``port`` that has had
    100 messages answered."""
    for _, obs in clients:
        obs.wait(lambda o=obs: o.opens == 1, "the first connection")
    publisher = SteadyPublisher(port)
    try:
        eventually(lambda: len(publisher.answered) > 100, "publishing", 30)
    except BaseException:
        publisher.stop()
        raise
    return publisher


def test_a_rolling_restart_loses_nothing(tmp_path, history_url, prefix):
    env = {"FASTWS_BACKPLANE": history_url, "CLUSTER_PREFIX": prefix}
    with Node(tmp_path / "roll.log", env, workers=2, app="tests.cluster.recovery_app:app") as node:
        clients = [(PythonClient(node.url("/feed/lobby"), obs), obs)
                   for obs in (Observed() for _ in range(4))]
        publisher = None
        try:
            publisher = publishing_to_connected(clients, node.port)
            old = children(node.proc.pid)
            node.proc.send_signal(signal.SIGHUP)
            eventually(lambda: len(children(node.proc.pid)) == 2
                       and not (children(node.proc.pid) & old), "both workers replaced", 60)
            mark = len(publisher.answered)
            eventually(lambda: len(publisher.answered) > mark + 100, "publishing after the deploy", 30)
            publisher.stop()
            wait_all_answered(clients, publisher)
            for _, obs in clients:
                assert 1012 in obs.closes and obs.opens >= 2, (obs.closes, obs.opens)
                try:
                    check_every_answered_message_once(obs, publisher)
                except AssertionError:
                    print(node.log()[-20000:])
                    raise
        finally:
            if publisher is not None:
                publisher.stop()
            for client, _ in clients:
                client.close()


def test_a_killed_node_s_clients_recover_on_another(tmp_path, history_url, prefix):
    env = {"FASTWS_BACKPLANE": history_url, "CLUSTER_PREFIX": prefix}
    app = "tests.cluster.recovery_app:app"
    with Node(tmp_path / "a.log", env, app=app) as a, Node(tmp_path / "b.log", env, app=app) as b:
        proxy = FaultProxy(a.port)
        clients = [(PythonClient(proxy.url("/feed/lobby"), obs), obs)
                   for obs in (Observed() for _ in range(3))]
        publisher = None
        try:
            publisher = publishing_to_connected(clients, b.port)
            proxy.restore(target=b.port)        # where they will come back
            a.proc.send_signal(signal.SIGKILL)
            for _, obs in clients:
                obs.wait(lambda o=obs: o.opens == 2 and o.outcomes, "back on the other node", 30)
            mark = len(publisher.answered)
            eventually(lambda: len(publisher.answered) > mark + 100, "publishing after", 30)
            publisher.stop()
            wait_all_answered(clients, publisher)
            for _, obs in clients:
                check_every_answered_message_once(obs, publisher)
        finally:
            if publisher is not None:
                publisher.stop()
            for client, _ in clients:
                client.close()
            proxy.close()


def test_a_room_history_rooms_leaves_out_crosses_as_a_plain_room(history_url, prefix):
    """With history in Redis for some rooms only, the others are broadcast as
    without history (it once raised: the Redis store has no in-memory append)."""
    only_h = {"history_rooms": lambda r: r.startswith("h")}
    a_app = make_app(history_url, prefix, ping_interval=None, **only_h)
    b_app = make_app(history_url, prefix, ping_interval=None, **only_h)
    with serving(a_app) as a, serving(b_app) as b:
        sender, local = ws_connect(a.url("/feed/plain")), ws_connect(a.url("/feed/plain"))
        remote = ws_connect(b.url("/feed/plain"))
        b.call(lambda: b_app.cluster.joined("plain"))
        sender.send("hello")
        assert local.recv(timeout=10) == "hello" and remote.recv(timeout=10) == "hello"
        assert a.call(lambda: a_app.history("plain")) == []
        for ws in (sender, local, remote):
            ws.close()
