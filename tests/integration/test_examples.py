"""Every example in examples/, served for real and driven by `websockets`
clients over loopback: each client must receive exactly what the guide's
section promises, in order, and nothing else.

"Nothing else" is checked with a sentinel instead of a wait: after the
message under test, another client sends something the receiver is due to
get; per-connection ordering means the sentinel must be the next thing it
sees.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime

import pytest

from tests.conftest import serving
from tests.integration.clients import (client_frame, closed_with, http_request, raw_ws,
                                       read_frame, recv, recv_json, wait_for, ws_connect)

OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def test_echo(example, capsys):
    mod = example("echo")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/echo")) as ws:
            ws.send("hello")
            assert recv(ws) == "Echo: hello"
            ws.send("second")
            assert recv(ws) == "Echo: second"
        wait_for(lambda: "Connection closed" in capsys.readouterr().out, what="close print")


def test_chat(example):
    mod = example("chat")
    with serving(mod.app) as srv:
        alice = ws_connect(srv.url("/chat/general?user=Alice"))
        bob = ws_connect(srv.url("/chat/general?user=Bob"))
        assert recv(alice) == "Bob joined the room"
        anon = ws_connect(srv.url("/chat/general"))
        assert recv(alice) == "Anonymous joined the room"
        assert recv(bob) == "Anonymous joined the room"

        alice.send("hi all")
        for client in (bob, anon):
            msg = recv_json(client)
            assert set(msg) == {"user", "message", "timestamp"}
            assert msg["user"] == "Alice" and msg["message"] == "hi all"
            assert msg["timestamp"].endswith("Z")
            datetime.fromisoformat(msg["timestamp"].replace("Z", "+00:00"))

        # The JSON custom event "message" reaches the message handler with
        # its single field's value.
        bob.send(json.dumps({"type": "message", "content": "Hello!"}))
        for client in (alice, anon):
            msg = recv_json(client)
            assert (msg["user"], msg["message"]) == ("Bob", "Hello!")
        # Alice got nothing of her own: Bob's message was her next one.

        # Carol starts elsewhere and switches into general.
        carol = ws_connect(srv.url("/chat/random?user=Carol"))
        carol.send(json.dumps({"type": "join-room", "room": "general"}))
        assert recv(carol) == "Switched to room: general"
        assert srv.call(mod.app.room_size, "random") == 0
        assert srv.call(mod.app.room_size, "general") == 4
        carol.send("made it")
        for client in (alice, bob, anon):
            msg = recv_json(client)
            assert (msg["user"], msg["message"]) == ("Carol", "made it")

        bob.close()
        for client in (alice, anon, carol):
            assert recv(client) == "Bob left the room"
        wait_for(lambda: srv.call(mod.app.room_size, "general") == 3, what="Bob to leave")
        for client in (alice, anon, carol):
            client.close()


def test_rooms(example):
    mod = example("rooms")
    with serving(mod.app) as srv:
        a = ws_connect(srv.url("/room/42"))
        assert recv(a) == "Welcome to room 42!"
        b = ws_connect(srv.url("/room/42"))
        assert recv(b) == "Welcome to room 42!"
        assert recv(a) == "A new user joined"

        b.send(json.dumps({"type": "switch-room", "roomId": "43"}))
        assert recv(b) == "Switched to room 43"
        c = ws_connect(srv.url("/room/43"))
        assert recv(c) == "Welcome to room 43!"
        assert recv(b) == "A new user joined"

        # A second switch leaves 43 (the room held), not 42 again.
        b.send(json.dumps({"type": "switch-room", "roomId": "44"}))
        assert recv(b) == "Switched to room 44"
        assert srv.call(lambda: {r: mod.app.room_size(r) for r in mod.app.rooms()}) == \
            {"42": 1, "43": 1, "44": 1}

        # a was not told about c joining 43: the next thing it hears is d.
        d = ws_connect(srv.url("/room/42"))
        assert recv(d) == "Welcome to room 42!"
        assert recv(a) == "A new user joined"
        for ws in (a, b, c, d):
            ws.close()


def test_broadcasting(example):
    mod = example("broadcasting")
    with serving(mod.app) as srv:
        a = ws_connect(srv.url("/broadcast"))
        b = ws_connect(srv.url("/broadcast"))
        other = ws_connect(srv.url("/broadcast?room=other"))
        a.send(json.dumps({"type": "announce", "message": "Hello"}))
        # broadcast (b only), then broadcast_all (b and a)
        assert recv(b) == "Hello"
        assert recv(b) == "Hello"
        assert recv(a) == "Hello"
        # Nothing reached the other room, and a got exactly one copy.
        other.send(json.dumps({"type": "announce", "message": "elsewhere"}))
        assert recv(other) == "elsewhere"
        b.send(json.dumps({"type": "announce", "message": "from b"}))
        assert recv(a) == "from b"
        assert recv(a) == "from b"
        assert recv(b) == "from b"
        for ws in (a, b, other):
            ws.close()


def test_custom_events_client(example, capsys):
    mod = example("custom_events")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/chat")) as listener:
            listener.send(json.dumps({"type": "join-room", "room": "general"}))
            assert recv_json(listener) == {"type": "joined", "room": "general"}
            received = asyncio.run(asyncio.wait_for(mod.client(srv.url("/chat"), count=2), 10))
            assert received == [
                {"type": "joined", "room": "general"},
                {"type": "message", "room": "general", "content": "Hello!"},
            ]
            assert recv_json(listener) == {"type": "message", "room": "general", "content": "Hello!"}
    out = capsys.readouterr().out
    assert "{'type': 'joined', 'room': 'general'}" in out
    assert "'content': 'Hello!'" in out


def test_custom_events_message_before_join(example):
    mod = example("custom_events")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/chat")) as ws:
            ws.send(json.dumps({"type": "message", "content": "too early"}))
            assert recv_json(ws) == {"type": "error", "error": "join a room first"}
            # Unknown types are not events: they arrive as plain messages.
            ws.send(json.dumps({"type": "nope", "x": 1}))
            assert recv_json(ws) == {"type": "error", "error": "join a room first"}


@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong", "?other=let-me-in"])
def test_authentication_refused(example, query):
    mod = example("authentication")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/protected" + query)) as ws:
            assert recv_json(ws) == {"error": "Authentication required"}
            assert closed_with(ws) == (1000, "")


def test_authentication_accepted(example):
    mod = example("authentication")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/protected?token=let-me-in")) as ws:
            ws.send("hi")
            assert recv(ws) == "Authenticated message: hi"
            ws.send(b"\x01\x02")
            assert recv(ws) == "Authenticated message: b'\\x01\\x02'"


def test_connection_limits(example):
    mod = example("connection_limits")
    app = mod.app
    with serving(app) as srv:
        members = [ws_connect(srv.url("/limited/lobby")) for _ in range(mod.MAX_CONNECTIONS)]
        assert srv.call(app.room_size, "lobby") == 10

        with ws_connect(srv.url("/limited/lobby")) as eleventh:
            assert recv_json(eleventh) == {"error": "Room is full"}
            assert closed_with(eleventh) == (1000, "")
        assert srv.call(app.room_size, "lobby") == 10

        # Other rooms have their own limit.
        with ws_connect(srv.url("/limited/other")):
            wait_for(lambda: srv.call(app.room_size, "other") == 1, what="join of other")

        # A place frees up when a member leaves.
        members.pop().close()
        wait_for(lambda: srv.call(lambda: len(mod.room_connections["lobby"])) == 9,
                 what="the close handler to free a place")
        members.append(ws_connect(srv.url("/limited/lobby")))
        assert srv.call(app.room_size, "lobby") == 10
        for ws in members:
            ws.close()
        wait_for(lambda: srv.call(lambda: len(mod.room_connections["lobby"])) == 0,
                 what="every close handler")


def test_heartbeat(example, caplog):
    caplog.set_level(logging.INFO)
    mod = example("heartbeat")
    mod.PING_INTERVAL = 0.05
    pongs = []

    def count_pongs():
        pongs[:] = [r for r in caplog.records if r.getMessage() == "Received pong from client"]
        return len(pongs) >= 3

    def live_timers():
        return [t for t in asyncio.all_tasks()
                if t.get_name() == "heartbeat" and not t.done()]

    with serving(mod.app) as srv:
        # The client answers pings by itself; its own keepalive is off so
        # every pong the server sees answers one of the server's pings.
        with ws_connect(srv.url("/heartbeat"), ping_interval=None) as ws:
            wait_for(count_pongs, what="three pongs")
            assert len(srv.call(live_timers)) == 1
            ws.send("still here")   # no message handler: ignored, connection lives
        wait_for(lambda: not srv.call(live_timers), what="the ping timer to stop")


def test_heartbeat_pings_seen_on_the_wire(example, caplog):
    caplog.set_level(logging.INFO)
    mod = example("heartbeat")
    mod.PING_INTERVAL = 0.05

    def pongs_logged():
        return sum(r.getMessage() == "Received pong from client" for r in caplog.records)

    with serving(mod.app) as srv:
        sock, buf = raw_ws(srv.port, "/heartbeat")
        with sock:
            for expected in (1, 2):
                assert read_frame(sock, buf) == (OP_PING, b"")
                sock.sendall(client_frame(OP_PONG, b""))
                wait_for(lambda: pongs_logged() == expected, what=f"pong {expected} to be logged")
            sock.sendall(client_frame(OP_CLOSE, (1000).to_bytes(2, "big")))
            # Pings sent meanwhile may precede the close echo.
            while (frame := read_frame(sock, buf))[0] == OP_PING:
                pass
            assert frame == (OP_CLOSE, (1000).to_bytes(2, "big"))


def test_heartbeat_interval_from_environment(example, monkeypatch):
    monkeypatch.setenv("HEARTBEAT_INTERVAL", "2.5")
    assert example("heartbeat").PING_INTERVAL == 2.5
    monkeypatch.delenv("HEARTBEAT_INTERVAL")
    assert example("heartbeat").PING_INTERVAL == 30


def test_http_integration(example):
    mod = example("http_integration")
    with serving(mod.app) as srv:
        a = ws_connect(srv.url("/rooms/lobby"))
        b = ws_connect(srv.url("/rooms/lobby"))
        a.send("hello")
        assert recv(b) == "hello"
        b.send("world")
        assert recv(a) == "world"
        a.send(b"bin\xc3\xa9")
        assert recv(b) == b"bin\xc3\xa9"

        info = http_request(srv.port, "GET", "/rooms/lobby/info")
        assert info.status == 200
        assert info.headers["content-type"].startswith("application/json")
        assert info.json() == {"room": "lobby", "connections": 2,
                               "messages": ["hello", "world", "bin\u00e9"]}

        assert http_request(srv.port, "GET", "/rooms/empty/info").json() == \
            {"room": "empty", "connections": 0, "messages": []}

        a.close()
        wait_for(lambda: http_request(srv.port, "GET", "/rooms/lobby/info").json()["connections"] == 1,
                 what="the room count to drop")
        b.close()


def test_http_integration_keeps_recent_messages_only(example):
    mod = example("http_integration")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/rooms/busy")) as ws:
            for i in range(mod.RECENT_MESSAGES + 5):
                ws.send(f"m{i}")
            # The handler stores before anything later is read: poll the API.
            # The list may still be empty at the first look.
            wait_for(lambda: http_request(srv.port, "GET", "/rooms/busy/info")
                     .json()["messages"][-1:] == [f"m{mod.RECENT_MESSAGES + 4}"], what="last message")
            messages = http_request(srv.port, "GET", "/rooms/busy/info").json()["messages"]
            assert messages == [f"m{i}" for i in range(5, mod.RECENT_MESSAGES + 5)]


def test_error_handling_websocket(example, caplog):
    caplog.set_level(logging.WARNING)
    mod = example("error_handling")
    with serving(mod.app) as srv:
        with ws_connect(srv.url("/robust")) as ws:
            ws.send(json.dumps({"action": "sum", "values": [1, 2, 3]}))
            assert recv_json(ws) == {"action": "sum", "result": 6}
            for bad in ("not json", json.dumps({"action": "nope"}),
                        json.dumps({"action": "max", "values": []})):
                ws.send(bad)
                assert recv_json(ws) == {"error": "Failed to process message"}
            # Still open, still working.
            ws.send(json.dumps({"action": "max", "values": [4, 9, 2]}))
            assert recv_json(ws) == {"action": "max", "result": 9}
    errors = [r for r in caplog.records if r.name.startswith("example_error_handling")]
    assert len(errors) == 3
    assert all(r.getMessage().startswith("WebSocket connection error: ") for r in errors)
    # A client's bad input is a warning, not an error of the server's.
    assert {r.levelno for r in errors} == {logging.WARNING}


def test_error_handling_http(example, caplog):
    caplog.set_level(logging.WARNING)
    mod = example("error_handling")
    with serving(mod.app) as srv:
        ok = http_request(srv.port, "POST", "/process",
                          json.dumps({"action": "min", "values": [3, -1]}).encode())
        assert (ok.status, ok.json()) == (200, {"action": "min", "result": -1})

        # What examples/README.md promises: bad input gets the same JSON error
        # as over the WebSocket, as a 4xx (the client's mistake), no traceback.
        for body in (b"nope", b"{broken", json.dumps({"action": "max", "values": []}).encode()):
            bad = http_request(srv.port, "POST", "/process", body)
            assert bad.status == 400
            assert bad.headers["content-type"].startswith("application/json")
            assert bad.json() == {"error": "Failed to process message"}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warned = [r for r in caplog.records if r.name.startswith("example_error_handling")]
    assert len(warned) == 3 and all(r.levelno == logging.WARNING and not r.exc_info for r in warned)


def test_error_handler_answers_a_bug_with_a_json_500(example, caplog):
    # error_handler() itself: an exception a route did not expect is a JSON 500
    # and its traceback goes to the log, never to the client.
    caplog.set_level(logging.ERROR)
    mod = example("error_handling")

    @mod.app.get("/bug")
    def bug():
        return {"value": json.loads("{broken")}

    with serving(mod.app) as srv:
        bad = http_request(srv.port, "GET", "/bug")
        assert bad.status == 500
        assert bad.headers["content-type"].startswith("application/json")
        assert bad.json() == {"error": "Internal Server Error"}
        assert b"Traceback" not in bad.body and b"JSONDecodeError" not in bad.body
    logged = [r for r in caplog.records if r.name == "fastws" and r.exc_info]
    assert logged and logged[0].exc_info[0] is json.JSONDecodeError
