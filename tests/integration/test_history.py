"""Room history over loopback: what ``ws.broadcast``, ``ws.broadcast_all`` and
``app.broadcast`` store, read back with ``app.history`` from an HTTP route by
a real HTTP client; which rooms keep history; the errors; the command's flags."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fastws import HistoryMessage, create_app, websocket
from tests.conftest import serving
from tests.integration.clients import free_port, recv, wait_for, ws_connect

ROOT = Path(__file__).resolve().parents[2]


def history_app(**options):
    app = create_app()
    app.use(websocket(ping_interval=None, **options))

    @app.ws("/chat/:room")
    def chat(ws, ctx):
        room = ctx.params["room"]
        ws.join(room)
        ws.on("message", lambda data: ws.broadcast(room, data) if data != "all"
              else ws.broadcast_all(room, "to all"))

    @app.post("/say/:room")
    async def say(ctx):
        return {"to": app.broadcast(ctx.params["room"], (await ctx.body()).decode())}

    @app.post("/bytes/:room")
    async def say_bytes(ctx):
        return {"to": app.broadcast(ctx.params["room"], await ctx.body())}

    @app.get("/history/:room")
    async def history(ctx):
        since = ctx.get_query("since")
        got = await app.history(ctx.params["room"], None if since is None else int(since),
                                int(ctx.get_query("limit", "100")))
        return [{"epoch": m.epoch, "offset": m.offset,
                 "data": m.data if isinstance(m.data, str) else {"bytes": m.data.hex()}}
                for m in got]

    return app


def http(srv, method, path, body=b""):
    req = urllib.request.Request(srv.url(path, "http"), data=body if method == "POST" else None,
                                 method=method)
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_every_broadcast_of_a_room_is_stored_with_its_position():
    app = history_app(history_size=10)
    with serving(app) as srv:
        with ws_connect(srv.url("/chat/lobby")) as a, ws_connect(srv.url("/chat/lobby")) as b:
            wait_for(lambda: srv.call(app.room_size, "lobby") == 2, what="both joined")
            a.send("hello")                         # ws.broadcast: b gets it, a does not
            assert recv(b) == "hello"
            a.send("all")                           # ws.broadcast_all: both
            assert recv(a) == "to all" and recv(b) == "to all"
            assert http(srv, "POST", "/say/lobby", b"from http") == {"to": 2}
            assert recv(a) == "from http" and recv(b) == "from http"
        got = http(srv, "GET", "/history/lobby")
    assert [m["data"] for m in got] == ["hello", "to all", "from http"]
    assert [m["offset"] for m in got] == [1, 2, 3]
    assert len({m["epoch"] for m in got}) == 1


def test_a_room_without_members_keeps_history_and_binary_stays_binary():
    app = history_app(history_size=10)
    with serving(app) as srv:
        assert http(srv, "POST", "/say/empty", b"nobody here") == {"to": 0}
        assert http(srv, "POST", "/bytes/empty", b"\x00\xff") == {"to": 0}
        got = http(srv, "GET", "/history/empty")
    assert [m["data"] for m in got] == ["nobody here", {"bytes": "00ff"}]


def test_history_size_since_and_limit():
    app = history_app(history_size=5)
    with serving(app) as srv:
        for i in range(8):
            http(srv, "POST", "/say/r", str(i).encode())
        assert [m["offset"] for m in http(srv, "GET", "/history/r")] == [4, 5, 6, 7, 8]
        assert [m["data"] for m in http(srv, "GET", "/history/r?limit=2")] == ["6", "7"]
        assert [m["offset"] for m in http(srv, "GET", "/history/r?since=5&limit=2")] == [6, 7]
        assert http(srv, "GET", "/history/r?since=8") == []
        assert http(srv, "GET", "/history/never") == []


def test_history_rooms_keeps_history_for_the_chosen_rooms_only():
    app = history_app(history_size=5, history_rooms=["chat:*"])
    with serving(app) as srv:
        http(srv, "POST", "/say/chat:1", b"kept")
        http(srv, "POST", "/say/ticker", b"not kept")
        assert [m["data"] for m in http(srv, "GET", "/history/chat:1")] == ["kept"]
        assert http(srv, "GET", "/history/ticker") == []


def test_app_history_returns_history_messages():
    app = history_app(history_size=3)
    with serving(app) as srv:
        http(srv, "POST", "/say/r", b"x")
        got = srv.call(app.history, "r")
    assert got == [HistoryMessage("r", got[0].epoch, 1, "x")]


def test_app_history_refuses_what_it_cannot_answer():
    plain = history_app()
    with serving(plain) as srv:
        with pytest.raises(RuntimeError, match="history_size"):
            srv.call(plain.history, "r")
    app = history_app(history_size=3)
    with serving(app) as srv:
        for bad in ({"limit": -1}, {"limit": "5"}, {"since": -2}, {"since": 1.5}):
            with pytest.raises(ValueError):
                srv.call(lambda: app.history("r", **bad))


async def _async_selector(room):
    return True


@pytest.mark.parametrize("options, word", [
    ({"history_size": -1}, "history_size"), ({"history_size": 1.5}, "history_size"),
    ({"history_ttl": 0}, "history_ttl"), ({"history_max_bytes": 0}, "history_max_bytes"),
    ({"history_rooms": 3}, "history_rooms"), ({"history_rooms": ["a", 3]}, "history_rooms"),
    ({"history_rooms": _async_selector}, "coroutine"),
])
def test_bad_history_options_are_refused_by_name(options, word):
    with pytest.raises(ValueError, match=word):
        websocket(**options)


def test_a_broadcast_to_a_room_without_members_or_history_is_not_even_serialized():
    calls = []

    def dumps(value):
        calls.append(value)
        return json.dumps(value)

    app = history_app(history_size=5, history_rooms="chat:*", dumps=dumps)
    with serving(app) as srv:
        assert srv.call(app.broadcast, "ticker", {"price": 1}) == 0
        assert calls == []
        assert srv.call(app.broadcast, "chat:1", {"text": "kept"}) == 0
        assert calls == [{"text": "kept"}]
        assert [m.data for m in srv.call(app.history, "chat:1")] == ['{"text": "kept"}']


def test_the_command_takes_the_history_flags(tmp_path):
    (tmp_path / "happ.py").write_text(
        "from fastws import create_app, websocket\n"
        "app = create_app()\n"
        "app.use(websocket())\n"
        "@app.get('/h')\n"
        "async def h(ctx):\n"
        "    app.broadcast('r', 'x')\n"
        "    o = app.ws_options\n"
        "    return {'size': o.history_size, 'ttl': o.history_ttl, 'max': o.history_max_bytes,\n"
        "            'kept': [m.offset for m in await app.history('r')]}\n")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastws", "happ:app", "--port", str(port),
                             "--ws-history-size", "7", "--ws-history-ttl", "60",
                             "--ws-history-max-bytes", "1000000"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def answer():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/h", timeout=2) as resp:
                    return json.loads(resp.read())
            except OSError:
                return None
        wait_for(lambda: answer() is not None, what="the command serving")
        got = answer()          # each request broadcasts once more to room "r"
        kept = got.pop("kept")
        assert got == {"size": 7, "ttl": 60.0, "max": 1000000}
        assert kept and kept == list(range(1, len(kept) + 1))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
