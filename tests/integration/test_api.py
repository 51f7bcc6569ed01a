"""The WebSocket API rules of DESIGN.md that the examples do not exercise,
checked over loopback with real clients: what `send` puts on the wire,
rooms and broadcasts, the `close`/`error`/`ping`/`pong` events, ordering
with async handlers, JSON event dispatch, the camelCase aliases, option
validation, encode-once fan-out and graceful shutdown.

Server-side observations are collected in lists by the handlers and read
after the client has seen a later reply (ordering makes them complete), or
with `wait_for` when only the server can know.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import InvalidStatus

from fastws import ReadyState, create_app, websocket
from fastws.plugins.ws import default_dumps
from tests.conftest import serving
from tests.integration.clients import (TIMEOUT, client_frame, closed_with, free_port, raw_ws, read_frame,
                                       recv, recv_json, wait_for, ws_connect)

ROOT = Path(__file__).resolve().parents[2]

OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def ws_app(**options):
    """A new app with WebSocket support."""
    app = create_app()
    app.use(websocket(**options))
    return app


# ------------------------------------------------------------------ send


def test_send_frame_types():
    app = ws_app()
    results = []

    @app.ws("/send")
    def handler(ws):
        @ws.on("message")
        def go():
            for data in ("text", b"bytes", bytearray(b"bytearray"), memoryview(b"memoryview"),
                         {"a": 1, "b": [True, None]}, [1, "two"], 3.5, "ünïcode ✓"):
                results.append(ws.send(data))

    with serving(app) as srv, ws_connect(srv.url("/send")) as ws:
        ws.send("go")
        assert recv(ws) == "text"
        assert recv(ws) == b"bytes"
        assert recv(ws) == b"bytearray"
        assert recv(ws) == b"memoryview"
        assert recv(ws) == '{"a":1,"b":[true,null]}'
        assert recv(ws) == '[1,"two"]'
        assert recv(ws) == "3.5"
        assert recv(ws) == "ünïcode ✓"
        assert results == [True] * 8


def test_send_returns_false_unless_open():
    app = ws_app()
    results = {}

    @app.ws("/closing")
    def handler(ws):
        @ws.on("message")
        def on_message():
            ws.close(4000, "bye")
            results["after_close"] = (ws.ready_state, ws.send("never sent"))

        @ws.on("close")
        def on_close():
            results["in_close"] = ws.send("never sent either")

    with serving(app) as srv, ws_connect(srv.url("/closing")) as ws:
        ws.send("close please")
        assert closed_with(ws) == (4000, "bye")
        wait_for(lambda: "in_close" in results, what="the close handler")
    assert results == {"after_close": (ReadyState.CLOSING, False), "in_close": False}


# ------------------------------------------------------------------ rooms


def test_join_leave_room_and_rooms():
    app = ws_app()

    @app.ws("/rooms")
    def handler(ws):
        steps = []

        def note(label):
            steps.append([label, ws.room, list(ws.rooms), {r: app.room_size(r) for r in app.rooms()}])

        note("start")
        ws.join("a")
        ws.join("b")
        note("a, b")
        ws.join("a")            # idempotent, and "a" becomes the current room again
        note("a again")
        ws.leave("a")
        note("left a")
        ws.leave("a")           # idempotent
        ws.leave("never-joined")
        note("left a twice")
        ws.join(7)              # any hashable names a room
        ws.leave("b")
        note("7")
        ws.leave(7)
        note("none")
        ws.send(steps)

    with serving(app) as srv, ws_connect(srv.url("/rooms")) as ws:
        assert recv_json(ws) == [
            ["start", None, [], {}],
            ["a, b", "b", ["a", "b"], {"a": 1, "b": 1}],
            ["a again", "a", ["b", "a"], {"a": 1, "b": 1}],
            ["left a", "b", ["b"], {"b": 1}],
            ["left a twice", "b", ["b"], {"b": 1}],
            ["7", 7, [7], {"7": 1}],
            ["none", None, [], {}],
        ]


def test_broadcast_counts_and_app_level_publishing():
    app = ws_app()

    @app.ws("/r/:room")
    def handler(ws, ctx):
        ws.join(ctx.params.room)

        @ws.on("message")
        def on_message(data):
            if data == "others":
                ws.send({"recipients": ws.broadcast(ws.room, "to others")})
            elif data == "all":
                ws.send({"recipients": ws.broadcast_all(ws.room, "to all")})
            elif data == "nowhere":
                ws.send({"recipients": [ws.broadcast("empty", "x"), ws.broadcast_all(None, "x")]})

    with serving(app) as srv:
        a, b, c = (ws_connect(srv.url("/r/main")) for _ in range(3))
        other = ws_connect(srv.url("/r/side"))
        a.send("others")
        assert recv_json(a) == {"recipients": 2}
        assert recv(b) == recv(c) == "to others"
        a.send("all")
        assert recv(a) == "to all"      # the sender's copy comes before the count
        assert recv_json(a) == {"recipients": 3}
        assert recv(b) == recv(c) == "to all"
        a.send("nowhere")
        assert recv_json(a) == {"recipients": [0, 0]}

        assert srv.call(app.broadcast, "main", {"from": "app"}) == 3
        for ws in (a, b, c):
            assert recv_json(ws) == {"from": "app"}
        assert srv.call(app.broadcast, "main", b"\x00binary") == 3
        for ws in (a, b, c):
            assert recv(ws) == b"\x00binary"
        assert srv.call(app.broadcast, "nobody-here", "x") == 0
        assert srv.call(app.room_size, "main") == 3
        assert srv.call(app.room_size, "nobody-here") == 0
        assert sorted(srv.call(app.rooms)) == ["main", "side"]

        # other (room "side") heard none of it: its next message is this one.
        assert srv.call(app.broadcast, "side", "only side") == 1
        assert recv(other) == "only side"
        for ws in (a, b, c, other):
            ws.close()
        wait_for(lambda: srv.call(app.rooms) == [], what="rooms to empty")


def test_rooms_are_left_after_close_handlers_ran():
    app = ws_app()

    @app.ws("/r")
    def handler(ws, ctx):
        name = ctx.get_query("name")
        ws.join("r")

        @ws.on("close")
        def on_close():
            # Still a member here, so the others can be told.
            ws.broadcast("r", f"{name} left; room size {app.room_size('r')}; in {list(ws.rooms)}")

    with serving(app) as srv:
        a = ws_connect(srv.url("/r?name=a"))
        b = ws_connect(srv.url("/r?name=b"))
        a.close()
        assert recv(b) == "a left; room size 2; in ['r']"
        wait_for(lambda: srv.call(app.room_size, "r") == 1, what="a to leave the room")
        b.close()
        wait_for(lambda: srv.call(app.rooms) == [], what="b to leave the room")


# ------------------------------------------------------------------ close


def close_recorder():
    """An app whose sockets record every close event as (code, reason)."""
    app = ws_app()
    closes = []
    sockets = []

    @app.ws("/c")
    def handler(ws):
        sockets.append(ws)

        @ws.on("message")
        def on_message(data):
            if data == "server-close":
                ws.close(4000, "bye")
            else:
                ws.send(data)

        @ws.on("close")
        def on_close(code, reason):
            closes.append((code, reason))

    return app, closes, sockets


def test_close_event_client_initiated():
    app, closes, sockets = close_recorder()
    with serving(app) as srv:
        ws = ws_connect(srv.url("/c"))
        ws.close(4001, "client bye")
        wait_for(lambda: closes, what="the close event")
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the socket to go")
        assert closes == [(4001, "client bye")]
        assert ws.close_code == 4001    # the server echoed the client's code
        assert srv.call(lambda: sockets[0].ready_state) == ReadyState.CLOSED
        assert srv.call(lambda: sockets[0].close_code) == 4001


def test_close_event_server_initiated():
    app, closes, sockets = close_recorder()
    with serving(app) as srv:
        with ws_connect(srv.url("/c")) as ws:
            ws.send("server-close")
            assert closed_with(ws) == (4000, "bye")
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the socket to go")
        assert closes == [(4000, "bye")]
        assert srv.call(lambda: sockets[0].ready_state) == ReadyState.CLOSED


def test_close_event_1006_when_tcp_dies():
    app, closes, sockets = close_recorder()
    with serving(app) as srv:
        sock, buf = raw_ws(srv.port, "/c")
        sock.sendall(client_frame(OP_TEXT, b"alive?"))
        assert read_frame(sock, buf) == (OP_TEXT, b"alive?")
        sock.close()                    # no close frame: the link just dies
        wait_for(lambda: closes, what="the close event")
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the socket to go")
        assert closes == [(1006, "")]


def test_close_times_out_when_the_client_never_answers():
    app = ws_app(close_timeout=0.2)
    closes = []

    @app.ws("/c")
    def handler(ws):
        ws.on("message", lambda: ws.close(4000, "bye"))
        ws.on("close", lambda code, reason: closes.append((code, reason)))

    with serving(app) as srv:
        sock, buf = raw_ws(srv.port, "/c")
        with sock:
            sock.sendall(client_frame(OP_TEXT, b"close me"))
            assert read_frame(sock, buf) == (OP_CLOSE, (4000).to_bytes(2, "big") + b"bye")
            # We never answer; the server gives up and drops the connection.
            with pytest.raises(ConnectionError):
                read_frame(sock, buf)
        wait_for(lambda: closes, what="the close event")
        assert closes == [(4000, "bye")]


def test_close_event_once_when_client_closes_during_server_close():
    app, closes, sockets = close_recorder()
    with serving(app) as srv:
        sock, buf = raw_ws(srv.port, "/c")
        # Ask the server to close and send our own close frame right behind it.
        sock.sendall(client_frame(OP_TEXT, b"server-close")
                     + client_frame(OP_CLOSE, (4002).to_bytes(2, "big") + b"crossing"))
        opcode, payload = read_frame(sock, buf)
        assert (opcode, int.from_bytes(payload[:2], "big"), payload[2:]) == (OP_CLOSE, 4000, b"bye")
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="the socket to go")
        sock.close()
        # The server's close went first, so its code is the connection's.
        assert closes == [(4000, "bye")]


# ------------------------------------------------------------------ errors


def test_error_event_and_connection_stays_open():
    app = ws_app()

    @app.ws("/e")
    def handler(ws):
        @ws.on("message")
        def on_message(data):
            if data == "boom":
                raise ValueError("kaboom")
            ws.send(f"ok {data}")

        @ws.on("message")
        async def second(data):
            if data == "async boom":
                raise KeyError("async kaboom")

        @ws.on("error")
        def on_error(exc):
            ws.send(f"error: {type(exc).__name__}: {exc}")

    with serving(app) as srv, ws_connect(srv.url("/e")) as ws:
        ws.send("boom")
        assert recv(ws) == "error: ValueError: kaboom"
        ws.send("after")
        assert recv(ws) == "ok after"
        ws.send("async boom")
        assert recv(ws) == "ok async boom"
        assert recv(ws) == "error: KeyError: 'async kaboom'"
        ws.send("still")
        assert recv(ws) == "ok still"


def test_handler_exception_without_error_listener_is_logged(caplog):
    caplog.set_level(logging.ERROR, logger="fastws")
    app = ws_app()

    @app.ws("/e")
    def handler(ws):
        @ws.on("message")
        def on_message(data):
            if data == "boom":
                raise ValueError("nobody listens")
            ws.send(data)

    with serving(app) as srv, ws_connect(srv.url("/e")) as ws:
        ws.send("boom")
        ws.send("next")
        assert recv(ws) == "next"
    logged = [r for r in caplog.records if r.name == "fastws" and r.exc_info]
    assert len(logged) == 1
    assert logged[0].exc_info[0] is ValueError
    assert "nobody listens" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_route_handler_exception_closes_with_1011(kind, caplog):
    # DESIGN.md keeps a connection open when an *event* handler raises; a
    # route handler that raises never finished setting the socket up, so the
    # server closes it with 1011 (as `websockets` does) after firing `error`.
    caplog.set_level(logging.ERROR, logger="fastws")
    app = ws_app()
    errors = []

    @app.ws("/sync")
    def sync_route(ws):
        ws.on("error", lambda exc: errors.append(repr(exc)))
        raise LookupError("setup failed")

    @app.ws("/async")
    async def async_route(ws):
        ws.on("error", lambda exc: errors.append(repr(exc)))
        await asyncio.sleep(0)
        raise LookupError("setup failed")

    with serving(app) as srv, ws_connect(srv.url(f"/{kind}")) as ws:
        assert closed_with(ws)[0] == 1011
    assert errors == ["LookupError('setup failed')"]
    assert [r.exc_info[0] for r in caplog.records if r.exc_info] == [LookupError]


# ------------------------------------------------------------------ handlers


def test_sync_and_async_handlers():
    app = ws_app()

    @app.ws("/sync")
    def sync_route(ws):
        ws.on("message", lambda data: ws.send(f"sync {data}"))

    @app.ws("/async")
    async def async_route(ws, ctx):
        await asyncio.sleep(0)

        async def on_message(data):
            await asyncio.sleep(0)
            ws.send(f"async {data}")
        ws.on("message", on_message)

    with serving(app) as srv:
        with ws_connect(srv.url("/sync")) as ws:
            ws.send("a")
            assert recv(ws) == "sync a"
        with ws_connect(srv.url("/async")) as ws:
            ws.send("b")
            assert recv(ws) == "async b"


def test_async_handlers_keep_per_connection_order():
    app = ws_app()
    rng = random.Random(1234)

    @app.ws("/order")
    def handler(ws):
        @ws.on("message")
        async def on_message(data):
            await asyncio.sleep(rng.random() * 0.002)
            ws.send(data)

        @ws.on("message")
        def then_sync(data):
            # Runs after the async handler of the same message finished.
            ws.send(f"sync {data}")

    with serving(app) as srv, ws_connect(srv.url("/order"), max_queue=None) as ws:
        for i in range(200):
            ws.send(str(i))
        received = [recv(ws) for _ in range(400)]
    assert received == [x for i in range(200) for x in (str(i), f"sync {i}")]


def test_messages_during_async_route_handler_are_held():
    app = ws_app()

    @app.ws("/slow")
    async def handler(ws, ctx):
        await asyncio.sleep(0.2)        # e.g. an auth lookup
        ws.on("message", lambda data: ws.send(f"got {data}"))

    with serving(app) as srv:
        # More than the queue holds before the server pauses reading.
        with ws_connect(srv.url("/slow"), max_queue=None) as ws:
            for i in range(200):
                ws.send(str(i))
            assert [recv(ws) for _ in range(200)] == [f"got {i}" for i in range(200)]
        # Frames in the very packet that carries the upgrade request are held too.
        sock, buf = raw_ws(srv.port, "/slow", early=client_frame(OP_TEXT, b"early")
                           + client_frame(OP_TEXT, b"bird"))
        with sock:
            assert read_frame(sock, buf) == (OP_TEXT, b"got early")
            assert read_frame(sock, buf) == (OP_TEXT, b"got bird")


def test_handlers_may_take_fewer_parameters():
    app = ws_app()
    closes = []

    @app.ws("/one")
    def one_param(ws):
        ws.on("message", lambda: ws.send("no-arg handler"))
        ws.on("close", lambda: closes.append("0 args"))
        ws.on("close", lambda code: closes.append(("1 arg", code)))
        ws.on("close", lambda code, reason: closes.append(("2 args", code, reason)))
        ws.on("close", lambda *args: closes.append(("*args", args)))

    @app.ws("/none")
    def no_params():
        pass

    with serving(app) as srv:
        with ws_connect(srv.url("/one")) as ws:
            ws.send("x")
            assert recv(ws) == "no-arg handler"
        wait_for(lambda: len(closes) == 4, what="the close handlers")
        assert closes == ["0 args", ("1 arg", 1000), ("2 args", 1000, ""), ("*args", (1000, ""))]
        with ws_connect(srv.url("/none")) as ws:
            ws.send("ignored")
            ws.ping().wait(TIMEOUT)     # the connection is up and answers


# ------------------------------------------------------------------ JSON events


def json_event_app(**options):
    app = ws_app(**options)
    reserved_fired = []

    @app.ws("/j")
    def handler(ws):
        for name in ("one", "none", "many"):
            ws.on(name, lambda payload, name=name: ws.send({"event": name, "payload": payload}))
        ws.on("message", lambda data: ws.send({"event": "message", "payload": data}))
        for name in ("open", "error", "ping", "pong", "drain"):
            ws.on(name, lambda *args, name=name: reserved_fired.append(name))

    return app, reserved_fired


def test_json_events_payload_rules():
    app, reserved_fired = json_event_app()
    cases = [
        ({"type": "one", "room": "general"}, "one", "general"),
        ({"type": "one", "x": {"nested": [1]}}, "one", {"nested": [1]}),
        ({"type": "none"}, "none", None),
        ({"type": "many", "a": 1, "b": 2}, "many", {"a": 1, "b": 2}),
        ({"type": "message", "content": "Hello!"}, "message", "Hello!"),
    ]
    unchanged = [
        '{"type": "unknown", "a": 1}',      # no handler for that name
        '{"type": "one", "a": 1',           # invalid JSON
        '{"type": 5, "a": 1}',              # type is not a string
        '["one", 1]',                       # not an object
        ' {"type": "one", "a": 1}',         # any other text
        '{"no_type": 1}',
    ] + [json.dumps({"type": name, "x": 1})
         for name in ("close", "error", "ping", "pong", "drain", "open")]
    with serving(app) as srv, ws_connect(srv.url("/j"), ping_interval=None) as ws:
        for obj, event, payload in cases:
            ws.send(json.dumps(obj))
            assert recv_json(ws) == {"event": event, "payload": payload}
        for text in unchanged:
            ws.send(text)
            assert recv_json(ws) == {"event": "message", "payload": text}
        assert srv.call(lambda: list(reserved_fired)) == []


def test_binary_messages_are_not_json_events():
    app = ws_app()

    @app.ws("/b")
    def handler(ws):
        ws.on("one", lambda payload: ws.send("event"))
        ws.on("message", lambda data: ws.send(data))

    with serving(app) as srv, ws_connect(srv.url("/b")) as ws:
        ws.send(b'{"type": "one", "a": 1}')
        assert recv(ws) == b'{"type": "one", "a": 1}'


def test_json_events_off():
    app, _ = json_event_app(json_events=False)
    with serving(app) as srv, ws_connect(srv.url("/j")) as ws:
        text = json.dumps({"type": "one", "room": "general"})
        ws.send(text)
        assert recv_json(ws) == {"event": "message", "payload": text}


# ------------------------------------------------------------------ ping / pong


def test_automatic_pong_and_ping_event():
    app = ws_app()

    @app.ws("/p")
    def handler(ws):
        ws.on("ping", lambda payload: ws.send(f"ping event {payload!r}"))

    with serving(app) as srv, ws_connect(srv.url("/p"), ping_interval=None) as ws:
        pong = ws.ping(b"abc")
        assert pong.wait(TIMEOUT), "no pong for our ping"
        assert recv(ws) == "ping event b'abc'"


def test_automatic_pong_on_raw_socket():
    app = ws_app()

    @app.ws("/p")
    def handler(ws):
        pass

    with serving(app) as srv:
        sock, buf = raw_ws(srv.port, "/p")
        with sock:
            sock.sendall(client_frame(OP_PING, b"raw payload"))
            assert read_frame(sock, buf) == (OP_PONG, b"raw payload")


def test_pong_event():
    app = ws_app()

    @app.ws("/p")
    def handler(ws):
        ws.on("message", lambda: ws.ping(b"xyz"))
        ws.on("pong", lambda payload: ws.send(f"pong event {payload!r}"))

    with serving(app) as srv, ws_connect(srv.url("/p"), ping_interval=None) as ws:
        ws.send("ping me")
        assert recv(ws) == "pong event b'xyz'"


# ------------------------------------------------------------------ state, data, aliases


def test_ready_state_values():
    assert [int(s) for s in ReadyState] == [0, 1, 2, 3]
    assert [s.name for s in ReadyState] == ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]
    app = ws_app()
    states = []

    @app.ws("/s")
    def handler(ws):
        states.append(ws.ready_state)

        @ws.on("message")
        def on_message():
            ws.close()
            states.append(ws.ready_state)

        ws.on("close", lambda: states.append(ws.ready_state))

    with serving(app) as srv:
        with ws_connect(srv.url("/s")) as ws:
            ws.send("close")
            assert closed_with(ws) == (1000, "")
        wait_for(lambda: len(states) == 3, what="the close event")
    assert states == [1, 2, 3]
    assert states[0] is ReadyState.OPEN


def test_ws_data_is_per_connection():
    app = ws_app()

    @app.ws("/d")
    def handler(ws, ctx):
        assert ws.data == {}
        ws.data["user"] = ctx.get_query("user")
        ws.on("message", lambda: ws.send(ws.data))

    with serving(app) as srv:
        a = ws_connect(srv.url("/d?user=a"))
        b = ws_connect(srv.url("/d?user=b"))
        a.send("?")
        b.send("?")
        assert recv_json(a) == {"user": "a"}
        assert recv_json(b) == {"user": "b"}
        a.close()
        b.close()


def test_camel_case_aliases():
    app = ws_app()

    @app.ws("/camel/:room")
    def handler(ws, ctx):
        ws.join(ctx.params.room)
        user = ctx.getQuery("user") or "Anonymous"

        @ws.on("message")
        def on_message():
            ws.send({"readyState": ws.readyState, "roomSize": app.roomSize(ws.room),
                     "user": user, "bufferedAmount": ws.bufferedAmount})
            ws.broadcastAll(ws.room, "everyone")

    with serving(app) as srv:
        with ws_connect(srv.url("/camel/x?user=Zoe")) as a, ws_connect(srv.url("/camel/x")) as b:
            a.send("go")
            assert recv_json(a) == {"readyState": 1, "roomSize": 2, "user": "Zoe",
                                    "bufferedAmount": 0}
            assert recv(a) == "everyone"
            assert recv(b) == "everyone"


def test_on_as_decorator_and_off():
    app = ws_app()

    @app.ws("/off")
    def handler(ws):
        @ws.on("message")
        def first(data):
            ws.send(f"first {data}")
            if data == "stop":
                assert ws.off("message", first)
                assert not ws.off("message", first)

        ws.on("probe", lambda: ws.send("probe"))

    with serving(app) as srv, ws_connect(srv.url("/off")) as ws:
        ws.send("stop")
        assert recv(ws) == "first stop"
        ws.send("again")
        ws.send(json.dumps({"type": "message", "content": "x"}))
        ws.send(json.dumps({"type": "probe"}))
        assert recv(ws) == "probe"      # nothing answered the two messages before it


# ------------------------------------------------------------------ fan-out


def test_broadcast_serializes_once_for_a_hundred_clients():
    calls = []

    def counting_dumps(obj):
        calls.append(obj)
        return default_dumps(obj)

    app = ws_app(dumps=counting_dumps)

    @app.ws("/fan")
    def handler(ws):
        ws.join("fan")

        @ws.on("message")
        def on_message():
            calls.clear()
            ws.send(f"recipients {ws.broadcast('fan', {'n': 1, 'text': 'hello'})}")

    async def run(url):
        clients = await asyncio.gather(*(async_connect(url, proxy=None, compression=None,
                                                       open_timeout=TIMEOUT)
                                         for _ in range(100)))
        try:
            await clients[0].send("go")
            sender_reply = await asyncio.wait_for(clients[0].recv(), TIMEOUT)
            others = await asyncio.gather(*(asyncio.wait_for(c.recv(), TIMEOUT)
                                            for c in clients[1:]))
            return sender_reply, others
        finally:
            await asyncio.gather(*(c.close() for c in clients))

    with serving(app) as srv:
        sender_reply, others = asyncio.run(run(srv.url("/fan")))
        assert srv.call(app.room_size, "fan") <= 100
        assert sender_reply == "recipients 99"
        assert others == ['{"n":1,"text":"hello"}'] * 99
        assert calls == [{"n": 1, "text": "hello"}]


# ------------------------------------------------------------------ options


def test_ws_route_needs_the_plugin():
    app = create_app()
    with pytest.raises(RuntimeError, match=r"websocket\(\)"):
        app.ws("/x", lambda ws: None)


def test_unknown_option_is_a_type_error_naming_it():
    with pytest.raises(TypeError, match="max_mesage_size"):
        websocket(max_mesage_size=10)


@pytest.mark.parametrize("option, value", [
    ("max_message_size", 0),
    ("max_message_size", "1MB"),
    ("max_backpressure", -1),
    ("backpressure", "drop"),
    ("close_timeout", 0),
    ("max_connections", 0),
    ("allowed_origins", "https://example.com"),
    ("subprotocols", "chat"),
    ("dumps", "json"),
])
def test_bad_option_value_is_a_value_error_naming_it(option, value):
    with pytest.raises(ValueError, match=option):
        websocket(**{option: value})


def test_max_message_size_closes_with_1009():
    app = ws_app(max_message_size=1000)

    @app.ws("/m")
    def handler(ws):
        ws.on("message", lambda data: ws.send(len(data)))

    with serving(app) as srv, ws_connect(srv.url("/m")) as ws:
        ws.send("x" * 1000)
        assert recv_json(ws) == 1000
        ws.send("x" * 1001)
        code, _ = closed_with(ws)
        assert code == 1009


def test_max_connections_answers_503_before_upgrade():
    app = ws_app(max_connections=2)

    @app.ws("/m")
    def handler(ws):
        pass

    with serving(app) as srv:
        with ws_connect(srv.url("/m")), ws_connect(srv.url("/m")):
            with pytest.raises(InvalidStatus) as info:
                ws_connect(srv.url("/m"))
            assert info.value.response.status_code == 503
        wait_for(lambda: srv.call(lambda: app.connections) == 0, what="sockets to go")
        with ws_connect(srv.url("/m")):
            pass


def test_allowed_origins_answers_403():
    app = ws_app(allowed_origins=["https://good.example"])

    @app.ws("/o")
    def handler(ws):
        ws.on("message", lambda data: ws.send(data))

    with serving(app) as srv:
        with ws_connect(srv.url("/o"), origin="https://good.example") as ws:
            ws.send("in")
            assert recv(ws) == "in"
        for origin in ("https://evil.example", None):
            with pytest.raises(InvalidStatus) as info:
                ws_connect(srv.url("/o"), origin=origin)
            assert info.value.response.status_code == 403


# ------------------------------------------------------------------ shutdown


def test_graceful_shutdown_on_sigterm():
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "fastws", "examples.echo:app", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def listening():
            if proc.poll() is not None:
                raise AssertionError(f"server exited early: {proc.stdout.read().decode()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, timeout=20, what="the server to listen")
        with ws_connect(f"ws://127.0.0.1:{port}/echo") as ws:
            ws.send("before")
            assert recv(ws) == "Echo: before"
            proc.send_signal(signal.SIGTERM)
            assert closed_with(ws, timeout=10) == (1001, "server shutting down")
        assert proc.wait(timeout=15) == 0
        output = proc.stdout.read().decode()
        assert "Connection closed" in output        # the example's close handler ran
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()
