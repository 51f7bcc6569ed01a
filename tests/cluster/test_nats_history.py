"""Room history on NATS JetStream (issue 25) against nats-server processes of
the tests' own: several nodes numbering one room at once (each offset once,
every node in the same order), a message JetStream stored but no node
announced (a node killed between the acknowledgement and the announcement:
read back from the stream), a NATS restart with file storage (the epoch and
the offsets go on), a room purged from the stream (a new epoch), the stream
deleted under the nodes (made again), an acknowledgement or a store lost on
the way (a proxy that reads the protocol drops it: looked up in the stream),
and a server without JetStream (refused at start). The recovery tests (``test_recovery``)
run on NATS too (the ``history_url`` fixture's "nats")."""

from __future__ import annotations

import base64
import json
import socket
import threading
from typing import Any

import pytest

from fastws import BackplaneError, backplane, create_app, websocket
from fastws.cluster.nats_link import subject_token
from tests.conftest import serving
from tests.integration.clients import recv_json, wait_for
from tests.recovery.test_protocol import connect_v1, positions

from .conftest import OwnNats
from .recovery_app import make_app
from .test_recovery import joined_position, post

pytestmark = pytest.mark.timeout(120)


class RawJetStream:
    """JetStream's API over a raw socket: what a test does to the stream
    behind fastws's back (another client's publish, a purge)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""
        self._line()                                    # INFO
        self.sock.sendall(b'CONNECT {"verbose":false,"headers":true}\r\nSUB _t.reply 1\r\n')

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("nats-server closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self.buf += self.sock.recv(65536)
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def request(self, subject: str, body: Any, headers: dict[str, str] | None = None) -> dict:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if headers:
            hb = ("NATS/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
                  + "\r\n").encode()
            self.sock.sendall(b"HPUB %s _t.reply %d %d\r\n%s%s\r\n" % (
                subject.encode(), len(hb), len(hb) + len(data), hb, data))
        else:
            self.sock.sendall(b"PUB %s _t.reply %d\r\n%s\r\n" % (subject.encode(), len(data), data))
        while True:
            line = self._line()
            if line == b"PING":
                self.sock.sendall(b"PONG\r\n")
            elif line.startswith(b"MSG "):
                return json.loads(self._read(int(line.split()[-1])))
            elif line.startswith(b"-ERR"):
                raise AssertionError(line)

    def stream_of(self, prefix: str) -> tuple[str, str]:
        """The history stream of ``prefix`` and its subjects' prefix."""
        names = self.request("$JS.API.STREAM.NAMES", {"subject": f"{prefix}.h.>"})["streams"]
        assert len(names) == 1, names
        info = self.request(f"$JS.API.STREAM.INFO.{names[0]}", b"")
        return names[0], info["config"]["subjects"][0][:-1]

    def last(self, stream: str, subject: str) -> tuple[int, bytes]:
        m = self.request(f"$JS.API.STREAM.MSG.GET.{stream}", {"last_by_subj": subject})["message"]
        return m["seq"], base64.b64decode(m["data"])

    def close(self) -> None:
        self.sock.close()


def test_history_on_a_nats_without_jetstream_is_refused_at_start(tmp_path, prefix):
    bare = OwnNats(tmp_path, jetstream=False)
    bare.start()
    try:
        app = create_app()
        app.use(websocket(history_size=10))
        app.use(backplane(bare.url, prefix=prefix, connect_timeout=2))
        with pytest.raises(BackplaneError, match="needs JetStream"):
            with serving(app):
                pass
    finally:
        bare.stop()


def test_three_nodes_numbering_one_room_at_once_give_each_offset_once(nats, prefix):
    """Three nodes publish 40 messages each to one room at the same time:
    JetStream refuses a node that numbers a message another took first, and
    it numbers again; every node's fastws.v1 member gets all 120, offsets 1
    to 120, in the same order, each publisher's in its own order."""
    apps = [make_app(nats.url, prefix, ping_interval=None) for _ in range(3)]
    with serving(apps[0]) as a, serving(apps[1]) as b, serving(apps[2]) as c:
        servers = (a, b, c)
        clients = []
        for s in servers:
            ws, _ = connect_v1(s, "/feed/busy")
            epoch, offset = joined_position(ws)
            assert offset == 0
            clients.append(ws)
        answers: list[tuple[int, int, int]] = []

        def publish(k: int) -> None:
            for i in range(40):
                status, body = post(servers[k].port, "/publish/busy", str(k * 1000 + i).encode())
                assert status == 200, body
                answers.append((k, i, body["offset"]))

        threads = [threading.Thread(target=publish, args=(k,)) for k in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seen = []
        for ws in clients:
            got = [recv_json(ws) for _ in range(120)]
            assert [m["offset"] for m in got] == list(range(1, 121))
            assert {m["epoch"] for m in got} == {epoch}
            seen.append([m["data"]["n"] for m in got])
            ws.close()
        assert seen[0] == seen[1] == seen[2]
        for k in range(3):
            mine = [n for n in seen[0] if n // 1000 == k]
            assert mine == [k * 1000 + i for i in range(40)]
        # What app.publish answered is where each message is.
        assert sorted(o for _, _, o in answers) == list(range(1, 121))
        for k, i, o in answers:
            assert seen[0][o - 1] == k * 1000 + i
        assert a.call(lambda: apps[0].cluster.stats())["history_stored"] >= 40


def test_a_message_stored_but_never_announced_is_read_back_in_its_place(nats, prefix):
    """A node killed between JetStream's acknowledgement and its announcement
    leaves a message that is in the stream and never came live. (Here a raw
    client stores it, as that node did.) The next message's position shows
    the gap: every node reads the missing one back and delivers both in order."""
    a_app, b_app = (make_app(nats.url, prefix, ping_interval=None) for _ in range(2))
    raw = RawJetStream(nats.port)
    try:
        with serving(a_app) as a, serving(b_app) as b:
            on_a, _ = connect_v1(a, "/feed/gap")
            epoch, _ = joined_position(on_a)
            on_b, _ = connect_v1(b, "/feed/gap")
            joined_position(on_b)
            assert post(b.port, "/publish/gap", b"1")[0] == 200
            stream, subjects = raw.stream_of(prefix)
            subject = subjects + subject_token("gap")
            seq, data = raw.last(stream, subject)
            assert data.startswith(f"{epoch}:1:".encode())
            # As fastws stores it: <epoch>:<last offset>:<prev seq>:<count>:, then
            # each message as <kind>:<size>:<payload> (kind 3: JSON).
            ack = raw.request(subject, f"{epoch}:2:{seq}:1:3:7:".encode() + b'{"n":2}',
                              {"Nats-Expected-Last-Subject-Sequence": str(seq)})
            assert "error" not in ack, ack
            assert post(b.port, "/publish/gap", b"3")[1]["offset"] == 3
            for ws in (on_a, on_b):
                got = [recv_json(ws) for _ in range(3)]
                assert [(m["offset"], m["data"]["n"]) for m in got] == [(1, 1), (2, 2), (3, 3)]
                ws.close()
            assert a.call(lambda: a_app.cluster.stats())["history_gaps_filled"] >= 1
    finally:
        raw.close()


def test_history_on_jetstream_survives_a_nats_restart(own_nats, prefix):
    """File storage: after NATS restarts, the room's epoch and offsets go on,
    and a client recovers what it missed across the restart."""
    app = make_app(own_nats.url, prefix, ping_interval=None)
    with serving(app) as a:
        ws, _ = connect_v1(a, "/feed/lobby")
        epoch, _ = joined_position(ws)
        for n in (1, 2, 3):
            post(a.port, "/publish/lobby", str(n).encode())
        assert [recv_json(ws)["offset"] for _ in range(3)] == [1, 2, 3]
        ws.close()
        own_nats.stop()
        own_nats.start()
        wait_for(lambda: a.call(lambda: app.cluster.connected), timeout=20, what="reconnected")
        for n in (4, 5):
            status, body = post(a.port, "/publish/lobby", str(n).encode())
            assert (status, body["epoch"]) == (200, epoch), body
        back, _ = connect_v1(a, "/feed/lobby", positions([["lobby", epoch, 3]]))
        replay = [recv_json(back) for _ in range(3)]
        assert [(m.get("offset"), m["type"]) for m in replay[:2]] == \
            [(4, "fastws.message"), (5, "fastws.message")]
        assert replay[2]["recovered"] is True and replay[2]["epoch"] == epoch
        back.close()


def test_a_room_purged_from_the_stream_starts_a_new_epoch(nats, prefix):
    """The room's messages are gone from the stream (purged; expired alike):
    a join is told a new epoch at 0 and the next message is its offset 1,
    never a reused one."""
    app = make_app(nats.url, prefix, ping_interval=None)
    raw = RawJetStream(nats.port)
    try:
        with serving(app) as a:
            ws, _ = connect_v1(a, "/feed/lobby")
            epoch, _ = joined_position(ws)
            for n in (1, 2):
                post(a.port, "/publish/lobby", str(n).encode())
            assert [recv_json(ws)["offset"] for _ in range(2)] == [1, 2]
            stream, subjects = raw.stream_of(prefix)
            purged = raw.request(f"$JS.API.STREAM.PURGE.{stream}",
                                 {"filter": subjects + "lobby"})
            assert purged.get("success"), purged
            # A join first: the node knew the room at offset 2, the stream
            # has nothing: a new epoch, at 0.
            late, _ = connect_v1(a, "/feed/lobby")
            epoch2, offset = joined_position(late)
            assert epoch2 != epoch and offset == 0
            assert post(a.port, "/publish/lobby", b"3")[1] == {"epoch": epoch2, "offset": 1}
            assert recv_json(late)["offset"] == 1
            late.close()
            live = recv_json(ws)
            assert (live["epoch"], live["offset"], live["data"]) == (epoch2, 1, {"n": 3})
            ws.close()
            back, _ = connect_v1(a, "/feed/lobby", positions([["lobby", epoch, 2]]))
            joined = recv_json(back)
            assert (joined["recovered"], joined["reason"]) == (False, "epoch changed")
            back.close()
    finally:
        raw.close()


def test_a_stream_deleted_under_the_nodes_is_made_again_with_a_new_epoch(nats, prefix):
    """Someone deletes the history stream while the node runs: the next
    message finds nobody answering on its subject, the node creates the
    stream again and the room starts a new epoch; nothing is refused."""
    app = make_app(nats.url, prefix, ping_interval=None)
    raw = RawJetStream(nats.port)
    try:
        with serving(app) as a:
            ws, _ = connect_v1(a, "/feed/lobby")
            epoch, _ = joined_position(ws)
            post(a.port, "/publish/lobby", b"1")
            assert recv_json(ws)["offset"] == 1
            stream, _ = raw.stream_of(prefix)
            assert raw.request(f"$JS.API.STREAM.DELETE.{stream}", b"").get("success")
            status, body = post(a.port, "/publish/lobby", b"2")
            assert status == 200 and body["epoch"] != epoch and body["offset"] == 1, body
            live = recv_json(ws)
            assert (live["epoch"], live["offset"], live["data"]) == (body["epoch"], 1, {"n": 2})
            assert raw.stream_of(prefix)[0] == stream
            ws.close()
    finally:
        raw.close()


class JetStreamFilter:
    """A NATS proxy that reads the protocol both ways and, on demand, drops
    the next message JetStream would store (``drop_store``: it never gets
    there) or the next acknowledgement of one (``drop_ack``: stored, but the
    node never hears so). Everything else passes as it came."""

    def __init__(self, port: int, prefix: str) -> None:
        self.target = port
        self.store_subject = f"{prefix}.h.".encode()
        self.inbox = f"{prefix}.i.".encode()
        self.drop_store = self.drop_ack = False
        self.dropped: list[str] = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.port = self.listener.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [client, server]
            threading.Thread(target=self._pump, args=(client, server, self._to_server),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self._to_client),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, keep) -> None:
        buf = b""
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf += data
                out = []
                while b"\r\n" in buf:
                    line, rest = buf.split(b"\r\n", 1)
                    words = line.split()
                    # A command with a payload: its size is the last word.
                    sized = words and words[0] in (b"PUB", b"HPUB", b"MSG", b"HMSG")
                    if sized:
                        n = int(words[-1])
                        if len(rest) < n + 2:
                            break
                        whole, buf = line + b"\r\n" + rest[:n + 2], rest[n + 2:]
                        if keep(words, rest[:n]):
                            out.append(whole)
                    else:
                        out.append(line + b"\r\n")
                        buf = rest
                if out:
                    dst.sendall(b"".join(out))
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _to_server(self, words: list[bytes], payload: bytes) -> bool:
        if self.drop_store and words[0] == b"HPUB" and words[1].startswith(self.store_subject):
            self.drop_store = False
            self.dropped.append("store")
            return False
        return True

    def _to_client(self, words: list[bytes], payload: bytes) -> bool:
        if self.drop_ack and words[0] == b"MSG" and words[1].startswith(self.inbox) and \
                payload.startswith(b'{"stream"'):
            self.drop_ack = False
            self.dropped.append("ack")
            return False
        return True

    def close(self) -> None:
        self.listener.close()
        for s in self.socks:
            s.close()


def test_a_store_or_an_acknowledgement_lost_on_the_way_is_looked_up(nats, prefix):
    """JetStream's answer never comes: the node looks the message up in the
    stream. Stored (the acknowledgement was lost): confirmed and delivered
    once. Not stored (the publish was lost): refused, and the room's next
    message takes the offset, so clients see no gap."""
    proxy = JetStreamFilter(nats.port, prefix)
    app = create_app()
    app.use(websocket(history_size=100))
    app.use(backplane(proxy.url, prefix=prefix, connect_timeout=1.0))

    @app.ws("/feed/:room")
    def feed(ws, ctx):
        ws.join(ctx.params["room"])

    @app.post("/publish/:room")
    async def publish(ctx):
        try:
            epoch, offset = await app.publish(ctx.params["room"], (await ctx.body()).decode())
            return {"epoch": epoch, "offset": offset}
        except BackplaneError as exc:
            return ctx.json({"error": str(exc)}, status=503)

    try:
        with serving(app) as a:
            ws, _ = connect_v1(a, "/feed/lobby")
            epoch, _ = joined_position(ws)
            proxy.drop_ack = True
            assert post(a.port, "/publish/lobby", b"kept") == (200, {"epoch": epoch, "offset": 1})
            proxy.drop_store = True
            status, body = post(a.port, "/publish/lobby", b"lost")
            assert status == 503 and "did not store it" in body["error"], body
            assert post(a.port, "/publish/lobby", b"next") == (200, {"epoch": epoch, "offset": 2})
            got = [recv_json(ws) for _ in range(2)]
            assert [(m["offset"], m["text"]) for m in got] == [(1, "kept"), (2, "next")]
            assert proxy.dropped == ["ack", "store"]
            stats = a.call(lambda: app.cluster.stats())
            assert (stats["history_stored"], stats["history_failed"]) == (2, 1)
            ws.close()
    finally:
        proxy.close()
