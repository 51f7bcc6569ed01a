"""The ``fastws.v1`` protocol over loopback with the ``websockets`` client
speaking it by hand (docs/protocol.md): the welcome, typed room messages with
positions, joins and leaves, recovery and each way it can fail, bad position
lists, 1013 instead of a skip, paced replays, coexistence with an app's own
subprotocols, and plain clients served as before."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from typing import Any

import pytest

from fastws import create_app, websocket
from tests.conftest import serving
from tests.integration.clients import closed_with, recv, recv_json, wait_for, ws_connect

V1 = "fastws.v1"


def positions(items: Any) -> str:
    raw = items if isinstance(items, bytes) else json.dumps(items).encode()
    return "fastws.v1.positions." + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def chat_app(**options: Any) -> Any:
    settings = {"history_size": 100, "ping_interval": None}
    settings.update(options)
    app = create_app()
    app.use(websocket(**settings))
    heard: list[tuple[Any, ...]] = []
    app.heard = heard           # what the handlers heard, for the tests
    app.seen = []               # the sockets, in the order they came

    @app.ws("/chat/:room")
    def chat(ws, ctx):
        room = ctx.params["room"]
        ws.on("recovered", lambda r, ok, missed: heard.append(("recovered", r, ok, missed)))
        ws.on("message", lambda data: ws.broadcast(room, data))
        ws.join(room)
        heard.append(("subprotocol", ws.subprotocol, ws.v1))
        app.seen.append(ws)

    @app.ws("/rooms")
    def rooms(ws, ctx):
        for room in ctx.get_query("join", "").split(","):
            if room:
                ws.join(room)
        ws.on("leave", lambda room: ws.leave(room))

    @app.ws("/last-word/:room")
    def last_word(ws, ctx):
        ws.join(ctx.params["room"])

        def say(data):
            ws.broadcast(ctx.params["room"], data)
            ws.close(1000, "said")
        ws.on("message", say)

    @app.ws("/late/:room")
    def late(ws, ctx):
        # The guide's order: join first, then the handler for its outcome.
        ws.join(ctx.params["room"])
        ws.on("recovered", lambda r, ok, missed: heard.append(("late", r, ok, missed)))

    @app.ws("/flap/:room")
    def flap(ws, ctx):
        # Leave and join again while the first join's replay is under way.
        room = ctx.params["room"]
        ws.join(room)
        ws.leave(room)
        ws.join(room)

    @app.ws("/odd")
    def odd(ws, ctx):
        try:
            ws.join(("a", "tuple"))
        except TypeError as exc:
            ws.send(f"refused: {exc}")
        ws.join(7)

    @app.ws("/greet/:room")
    def greet(ws, ctx):
        ws.join(ctx.params["room"])
        ws.send("x" * 8192)         # a direct message right after a long replay is queued

    return app


def connect_v1(srv: Any, path: str, *extra: str, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """A fastws.v1 client and its welcome."""
    ws = ws_connect(srv.url(path), subprotocols=[V1, *extra], **kwargs)
    welcome = recv_json(ws)
    assert welcome["type"] == "fastws.welcome"
    return ws, welcome


def epoch_of(srv: Any, path: str) -> str:
    """The epoch a fastws.v1 client is told when it joins (then it leaves)."""
    ws, _ = connect_v1(srv, path)
    epoch = recv_json(ws)["epoch"]
    ws.close()
    return epoch


def publish(srv: Any, room: str, *items: Any) -> None:
    for item in items:
        srv.call(srv.app.broadcast, room, item)


def test_welcome_join_and_typed_room_messages_with_positions():
    app = chat_app(ping_interval=5)
    with serving(app) as srv:
        ws, welcome = connect_v1(srv, "/chat/lobby")
        assert ws.subprotocol == V1
        assert welcome == {"type": "fastws.welcome", "version": 1, "heartbeat": 5.0}
        joined = recv_json(ws)
        assert joined["type"] == "fastws.joined" and joined["room"] == "lobby"
        assert joined["offset"] == 0 and "recovered" not in joined
        epoch = joined["epoch"]
        publish(srv, "lobby", {"n": 1}, "text", b"\x00\xff", [1, 2], 'say "hi"\n')
        got = [recv_json(ws) for _ in range(5)]
        assert [m["offset"] for m in got] == [1, 2, 3, 4, 5]
        assert {m["epoch"] for m in got} == {epoch}
        assert got[0]["data"] == {"n": 1}
        assert got[1]["text"] == "text"
        assert base64.b64decode(got[2]["bytes"]) == b"\x00\xff"
        assert got[3]["data"] == [1, 2]
        assert got[4]["text"] == 'say "hi"\n'
        ws.close()


def test_a_plain_client_in_the_same_room_gets_plain_messages():
    app = chat_app()
    with serving(app) as srv:
        v1, _ = connect_v1(srv, "/chat/lobby")
        recv_json(v1)
        plain = ws_connect(srv.url("/chat/lobby"))
        wait_for(lambda: srv.call(app.room_size, "lobby") == 2, what="both joined")
        publish(srv, "lobby", {"n": 1}, "hi", b"\x01")
        assert [recv(plain) for _ in range(3)] == ['{"n":1}', "hi", b"\x01"]
        assert [recv_json(v1)["offset"] for _ in range(3)] == [1, 2, 3]
        assert plain.subprotocol is None
        plain.close()
        v1.close()


def test_a_sender_is_told_the_offset_of_its_own_broadcast():
    app = chat_app()
    with serving(app) as srv:
        a, _ = connect_v1(srv, "/chat/lobby")
        recv_json(a)
        b, _ = connect_v1(srv, "/chat/lobby")
        recv_json(b)
        a.send("from a")
        sent = recv_json(a)
        assert sent["type"] == "fastws.sent" and sent["offset"] == 1
        got = recv_json(b)
        assert got["text"] == "from a" and got["offset"] == 1 and got["epoch"] == sent["epoch"]
        a.close()
        b.close()


def test_a_sender_is_told_once_per_room_before_the_next_message_it_gets():
    """Notices wait (docs/protocol.md): three messages that arrive together
    get one ``fastws.sent``, with the last one's offset, written by the sweep
    when nothing else goes to the sender; a room message for the sender comes
    after the notice of what it sent before."""
    app = chat_app()
    with serving(app) as srv:
        a, _ = connect_v1(srv, "/chat/lobby")
        epoch = recv_json(a)["epoch"]
        b, _ = connect_v1(srv, "/chat/lobby")
        recv_json(b)
        with a.send_context():          # one write: the server reads all three at once
            for i in range(3):
                a.protocol.send_text(f"a{i}".encode())
        assert [recv_json(b)["offset"] for _ in range(3)] == [1, 2, 3]
        assert recv_json(a) == {"type": "fastws.sent", "room": "lobby", "epoch": epoch, "offset": 3}
        a.send("a3")
        assert recv_json(b)["offset"] == 4
        b.send("from b")
        assert recv_json(b) == {"type": "fastws.sent", "room": "lobby", "epoch": epoch, "offset": 5}
        assert recv_json(a) == {"type": "fastws.sent", "room": "lobby", "epoch": epoch, "offset": 4}
        got = recv_json(a)
        assert (got["type"], got["text"], got["offset"]) == ("fastws.message", "from b", 5)
        a.close()
        b.close()


def test_a_sender_closed_right_after_its_broadcast_is_told_its_offset_first():
    """A notice owed goes out before the close frame (a deploy's 1012 too), so
    the sender does not get its own message back when it recovers."""
    app = chat_app()
    with serving(app) as srv:
        ws, _ = connect_v1(srv, "/last-word/lobby")
        epoch = recv_json(ws)["epoch"]
        ws.send("goodbye")
        assert recv_json(ws) == {"type": "fastws.sent", "room": "lobby", "epoch": epoch, "offset": 1}
        assert closed_with(ws) == (1000, "said")


def test_recovery_replays_exactly_what_was_missed_then_live():
    app = chat_app()
    with serving(app) as srv:
        ws, _ = connect_v1(srv, "/chat/lobby")
        epoch = recv_json(ws)["epoch"]
        publish(srv, "lobby", *({"n": i} for i in range(1, 6)))
        assert [recv_json(ws)["offset"] for _ in range(5)] == [1, 2, 3, 4, 5]
        ws.close()
        publish(srv, "lobby", *({"n": i} for i in range(6, 9)))
        back, _ = connect_v1(srv, "/chat/lobby", positions([["lobby", epoch, 5]]))
        replay = [recv_json(back) for _ in range(3)]
        assert [m["data"]["n"] for m in replay] == [6, 7, 8]
        joined = recv_json(back)
        assert joined == {"type": "fastws.joined", "room": "lobby", "epoch": epoch, "offset": 8,
                          "recovered": True, "missed": 3}
        publish(srv, "lobby", {"n": 9})
        assert recv_json(back)["offset"] == 9
        wait_for(lambda: ("recovered", "lobby", True, 3) in app.heard, what="the app heard it")
        back.close()


def test_nothing_missed_is_recovered_with_zero():
    app = chat_app()
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        back, _ = connect_v1(srv, "/chat/lobby", positions([["lobby", epoch, 0]]))
        joined = recv_json(back)
        assert joined["recovered"] is True and joined["missed"] == 0
        back.close()


@pytest.mark.parametrize("case, reason", [
    ("too far behind", "too old"),
    ("other epoch", "epoch changed"),
    ("negative", "bad position"),
    ("future", "bad position"),
    ("epoch not a string", "bad position"),
    ("past 2**53", "bad position"),
])
def test_a_position_that_cannot_be_served_is_told_and_nothing_replayed(case, reason):
    app = chat_app(history_size=10)
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", *({"n": i} for i in range(1, 21)))     # 1-10 evicted
        stated = {"too far behind": ["lobby", epoch, 5], "other epoch": ["lobby", "0bad", 15],
                  "negative": ["lobby", epoch, -1], "future": ["lobby", epoch, 21],
                  "epoch not a string": ["lobby", 7, 15],
                  "past 2**53": ["lobby", epoch, 2**64]}[case]
        back, _ = connect_v1(srv, "/chat/lobby", positions([stated]))
        joined = recv_json(back)
        assert joined["type"] == "fastws.joined", joined        # nothing replayed before it
        assert joined["recovered"] is False and joined["missed"] == 0
        assert joined["reason"] == reason
        assert joined["epoch"] == epoch and joined["offset"] == 20     # where live starts
        publish(srv, "lobby", {"n": 21})
        assert recv_json(back)["offset"] == 21
        wait_for(lambda: ("recovered", "lobby", False, 0) in app.heard, what="the app heard it")
        back.close()


def test_history_older_than_its_ttl_is_not_recovered():
    app = chat_app(history_ttl=0.2)
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", {"n": 1}, {"n": 2})
        time.sleep(0.5)
        back, _ = connect_v1(srv, "/chat/lobby", positions([["lobby", epoch, 1]]))
        joined = recv_json(back)
        assert joined["recovered"] is False and joined["reason"] in ("too old", "epoch changed")
        back.close()


def test_a_restarted_server_has_a_new_epoch():
    with serving(chat_app()) as srv:
        ws, _ = connect_v1(srv, "/chat/lobby")
        epoch = recv_json(ws)["epoch"]
        publish(srv, "lobby", {"n": 1})
        recv_json(ws)
        ws.close()
    with serving(chat_app()) as srv:
        back, _ = connect_v1(srv, "/chat/lobby", positions([["lobby", epoch, 1]]))
        joined = recv_json(back)
        assert joined["recovered"] is False and joined["reason"] == "epoch changed"
        assert joined["epoch"] != epoch
        back.close()


@pytest.mark.parametrize("token, said", [
    ("fastws.v1.positions.!!!not-base64!!!", "malformed"),
    (positions(b"not json"), "malformed"),
    (positions({"lobby": 1}), "malformed"),
    (positions([["lobby", "e", 1]] * 400), "too large"),
    (positions(b"[" * 2000 + b"]" * 2000), "malformed"),      # deeper than the JSON parser goes
])
def test_an_unreadable_position_list_is_said_and_every_join_is_not_recovered(token, said):
    app = chat_app()
    with serving(app) as srv:
        ws, welcome = connect_v1(srv, "/chat/lobby", token)
        assert welcome["positions"] == said
        joined = recv_json(ws)
        assert joined["recovered"] is False and joined["reason"] == "not read"
        ws.send("still served")
        assert recv_json(ws)["type"] == "fastws.sent"
        ws.close()


def test_rooms_past_the_64th_are_not_read_and_unknown_rooms_are_ignored():
    app = chat_app()
    with serving(app) as srv:
        epoch = epoch_of(srv, "/rooms?join=r64")
        stated = [[f"r{i}", epoch, 0] for i in range(64)] + [["r64", epoch, 0]]
        ws, welcome = connect_v1(srv, "/rooms?join=r0,r64", positions(stated))
        assert "positions" not in welcome
        a, b = recv_json(ws), recv_json(ws)
        assert a["room"] == "r0" and a["recovered"] is False and a["reason"] == "epoch changed"
        assert b["room"] == "r64" and b["recovered"] is False and b["reason"] == "not read"
        ws.close()


def test_a_position_for_a_room_the_handler_does_not_join_replays_nothing():
    app = chat_app()
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/secret")
        publish(srv, "secret", {"n": 1}, {"n": 2})
        ws, _ = connect_v1(srv, "/chat/lobby", positions([["secret", epoch, 0]]))
        joined = recv_json(ws)
        assert joined["room"] == "lobby" and "recovered" not in joined
        with pytest.raises(TimeoutError):
            recv(ws, timeout=0.3)
        ws.close()


def test_leave_is_told_and_a_client_cannot_raise_recovered():
    app = chat_app()
    with serving(app) as srv:
        ws, _ = connect_v1(srv, "/rooms?join=a,b")
        assert [recv_json(ws)["room"] for _ in range(2)] == ["a", "b"]
        ws.send(json.dumps({"type": "leave", "data": "a"}))
        assert recv_json(ws) == {"type": "fastws.left", "room": "a"}
        ws.close()
        chat, _ = connect_v1(srv, "/chat/lobby")
        recv_json(chat)
        chat.send(json.dumps({"type": "recovered", "data": 1}))
        assert recv_json(chat)["type"] == "fastws.sent"      # a message like any other
        assert not any(h[0] == "recovered" for h in app.heard)
        chat.close()


def test_fastws_v1_coexists_with_the_apps_own_subprotocols():
    app = chat_app(subprotocols=["chat.v2", "chat.v1"])
    with serving(app) as srv:
        ws, _ = connect_v1(srv, "/chat/lobby", "fastws.v1+chat.v1", "fastws.v1+chat.v2")
        assert ws.subprotocol == "fastws.v1+chat.v2"
        recv_json(ws)
        ws.close()
        plain = ws_connect(srv.url("/chat/lobby"), subprotocols=["chat.v1"])
        assert plain.subprotocol == "chat.v1"
        plain.close()
        wait_for(lambda: ("subprotocol", "chat.v1", False) in app.heard, what="the plain one")
        assert ("subprotocol", "chat.v2", True) in app.heard
    with pytest.raises(ValueError, match="fastws"):
        websocket(subprotocols=["fastws.v1"])


def test_a_slow_v1_member_is_closed_with_1013_where_a_plain_one_is_skipped():
    app = chat_app(backpressure="skip", max_backpressure=64 * 1024)
    with serving(app) as srv:
        # Neither reads: their buffers fill.
        v1 = socket.socket()
        plain = socket.socket()
        for s in (v1, plain):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
        v1.sendall(_upgrade("/chat/lobby", V1))
        plain.sendall(_upgrade("/chat/lobby", None))
        wait_for(lambda: srv.call(app.room_size, "lobby") == 2, what="both joined")
        chunk = "x" * 65536

        def state() -> list[tuple[bool, int, int]]:
            return srv.call(lambda: [(ws.v1, ws.skipped, int(ws.ready_state)) for ws in app.seen])

        # Until both kernels' buffers are full and the server's own queue is over the limit.
        for _ in range(2000):
            srv.call(app.broadcast, "lobby", chunk)
            left = state()
            v1_open = [st == 1 for v, _, st in left if v]
            plain_skipped = [sk > 0 for v, sk, _ in left if not v]
            if v1_open == [False] and plain_skipped == [True]:
                break
        assert [state >= 2 for v, _, state in left if v] == [True]          # closing or closed
        assert [(skipped > 0, state) for v, skipped, state in left if not v] == [(True, 1)]
        # What the v1 client finally reads ends with a 1013 close frame.
        v1.settimeout(10)
        data = b""
        while True:
            chunk_in = v1.recv(1 << 20)
            if not chunk_in:
                break
            data += chunk_in
        assert b"\x88\x0f\x03\xf5slow consumer" in data[-64:]
        v1.close()
        plain.close()


def _upgrade(path: str, protocol: str | None) -> bytes:
    head = (f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
    if protocol:
        head += f"Sec-WebSocket-Protocol: {protocol}\r\n"
    return (head + "\r\n").encode()


def test_a_long_replay_is_paced_by_drain_and_never_closes():
    # 1,000 missed messages of 1 KiB against a 64 KiB max_backpressure: without
    # pacing the replay alone would be 16 times the limit.
    app = chat_app(history_size=2000, max_backpressure=64 * 1024, compression=None)
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", *({"n": i, "pad": "x" * 1000} for i in range(1, 1001)))
        back, _ = connect_v1(srv, "/chat/lobby", positions([["lobby", epoch, 0]]))
        # Live messages published while the replay is under way come after it, once.
        stop = threading.Event()

        def more() -> None:
            for i in range(1001, 1101):
                srv.call(srv.app.broadcast, "lobby", {"n": i})
                if stop.is_set():
                    return
        t = threading.Thread(target=more)
        t.start()
        got, joined = [], None
        while len(got) < 1100:
            msg = recv_json(back)
            if msg["type"] == "fastws.joined":
                joined = msg
            else:
                got.append(msg["data"]["n"])
        t.join()
        assert got == list(range(1, 1101))
        assert joined["recovered"] is True and joined["missed"] >= 1000
        assert got.index(1000) < joined["missed"]
        back.close()


def test_a_handler_that_registers_recovered_after_join_still_hears_it():
    app = chat_app()
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", {"n": 1})
        back, _ = connect_v1(srv, "/late/lobby", positions([["lobby", epoch, 0]]))
        recv_json(back)
        assert recv_json(back)["recovered"] is True
        wait_for(lambda: ("late", "lobby", True, 1) in app.heard, what="the late handler")
        back.close()


def test_leaving_and_joining_again_during_a_replay_sends_nothing_twice():
    app = chat_app(history_size=500, max_backpressure=8192, compression=None)
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", *({"n": i, "pad": "p" * 100} for i in range(1, 201)))
        back, _ = connect_v1(srv, "/flap/lobby", positions([["lobby", epoch, 0]]))
        publish(srv, "lobby", {"n": 201})
        offsets, joined = [], []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and 201 not in offsets:
            msg = recv_json(back)
            if msg["type"] == "fastws.message":
                offsets.append(msg["offset"])
            elif msg["type"] == "fastws.joined":
                joined.append(msg)
        with pytest.raises(TimeoutError):
            while True:                 # nothing more: no second replay, no second 201
                msg = recv_json(back, timeout=0.5)
                assert msg["type"] != "fastws.message", msg
                joined.append(msg)
        assert len(offsets) == len(set(offsets)) and offsets[-1] == 201
        assert offsets == sorted(offsets)
        assert [j.get("recovered") for j in joined if j["type"] == "fastws.joined"] == [None]
        back.close()


def test_a_v1_client_cannot_be_joined_to_a_room_the_protocol_cannot_name():
    app = chat_app()
    with serving(app) as srv:
        ws, _ = connect_v1(srv, "/odd")
        assert recv(ws).startswith("refused: a fastws.v1 client's rooms are str, or int")
        joined = recv_json(ws)
        assert joined["type"] == "fastws.joined" and joined["room"] == 7
        publish(srv, 7, "to seven")
        assert recv_json(ws)["text"] == "to seven"
        ws.close()


def test_a_replay_of_many_small_messages_is_paced_by_their_size_on_the_wire():
    # 1,000 one-character messages weigh some 100 KB as fastws.v1 frames against
    # a 64 KiB max_backpressure: counted by payload alone they went as one
    # batch, and the direct message after the join tripped the slow-consumer close.
    app = chat_app(history_size=2000, max_backpressure=64 * 1024, compression=None)
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", *("m" for _ in range(1000)))
        back, _ = connect_v1(srv, "/greet/lobby", positions([["lobby", epoch, 0]]))
        got, joined, direct = 0, None, None
        while joined is None or direct is None:
            msg = recv(back)
            if msg.startswith("x"):
                direct = msg
                continue
            msg = json.loads(msg)
            if msg["type"] == "fastws.message":
                got += 1
            elif msg["type"] == "fastws.joined":
                joined = msg
        assert got == 1000 and joined["recovered"] is True and joined["missed"] == 1000
        back.close()


@pytest.mark.skipif(not hasattr(asyncio, "eager_task_factory"), reason="eager tasks are new in 3.12")
def test_a_paced_replay_under_an_eager_task_factory_still_ends_in_the_room():
    # An eager factory runs the replay's first steps inside ws.join: the room
    # must be the socket's already, or the replay thinks it was left.
    app = chat_app(history_size=1000, max_backpressure=16 * 1024, compression=None)
    def eager(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task:
        # uvloop 0.23 passes eager_start, which asyncio.eager_task_factory
        # refuses on 3.13.0 (every task then fails): the same factory, spelled out.
        kwargs.pop("eager_start", None)
        return asyncio.Task(coro, loop=loop, eager_start=True, **kwargs)
    app.on_startup(lambda: asyncio.get_running_loop().set_task_factory(eager))
    with serving(app) as srv:
        epoch = epoch_of(srv, "/chat/lobby")
        publish(srv, "lobby", *({"n": i, "pad": "p" * 200} for i in range(1, 501)))
        back, _ = connect_v1(srv, "/chat/lobby", positions([["lobby", epoch, 0]]))
        got = []
        while True:
            msg = recv_json(back)
            if msg["type"] == "fastws.joined":
                break
            got.append(msg["data"]["n"])
        assert got == list(range(1, 501)) and msg["recovered"] is True
        publish(srv, "lobby", {"n": 501})
        assert recv_json(back)["data"]["n"] == 501
        back.close()
