"""fastws peer server for bench/compare.py: /echo, /fanout (one room, to all others),
/room/:name (that room, to all others) and /chat/:room (the seed's chat example: JSON
events in, ``{"user", "message", "timestamp"}`` dicts broadcast to the room).

BENCH_COMPRESSION=1: permessage-deflate on with fastws's defaults
(``websocket(compression=True)``). JSON: fastws's default (orjson where it agrees
with the json module, ``fastws._json``) unless BENCH_JSON says: ``orjson``, orjson
alone as the JSON events' parser and the broadcasts' serializer
(``websocket(dumps=orjson.dumps, loads=orjson.loads)``); ``json``, the stdlib json
module alone (compact), as fastws's default was before it used orjson. BENCH_BACKPLANE=URL
(bench/cluster.py): rooms span every process started with the same URL and
BENCH_PREFIX. BENCH_METRICS=1: Prometheus metrics on (``app.use(metrics())``).
BENCH_HISTORY=N: every room keeps its last N messages in memory
(``websocket(history_size=N)``).
"""
import json
import os

from common import COMPRESSION, HOST, now_iso, port_from_argv, raise_nofile_limit

from fastws import backplane, create_app, websocket

raise_nofile_limit()
json_codec = {}
if os.environ.get("BENCH_JSON") == "orjson":
    import orjson
    # orjson.dumps returns bytes; fastws sends them as a text frame all the same.
    json_codec = {"dumps": orjson.dumps, "loads": orjson.loads}
elif os.environ.get("BENCH_JSON") == "json":
    json_codec = {"dumps": json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode,
                  "loads": json.loads}
elif os.environ.get("BENCH_JSON", "default") != "default":
    raise SystemExit(f"BENCH_JSON={os.environ['BENCH_JSON']!r}: default, json or orjson")
app = create_app()
history = {"history_size": int(os.environ["BENCH_HISTORY"])} if os.environ.get("BENCH_HISTORY") else {}
app.use(websocket(max_message_size=1 << 20, compression=COMPRESSION, **json_codec, **history))
if os.environ.get("BENCH_METRICS") == "1":
    from fastws import metrics
    app.use(metrics())
if os.environ.get("BENCH_BACKPLANE"):
    app.use(backplane(os.environ["BENCH_BACKPLANE"], prefix=os.environ.get("BENCH_PREFIX", "bench")))


@app.ws("/echo")
def echo(ws, ctx):
    ws.on("message", ws.send)


@app.ws("/fanout")
def fanout(ws, ctx):
    ws.join("all")
    ws.on("message", lambda data: ws.broadcast("all", data))


@app.ws("/room/:name")
def room(ws, ctx):
    name = ctx.params["name"]
    ws.join(name)
    ws.on("message", lambda data: ws.broadcast(name, data))


@app.ws("/chat/:room")
def chat(ws, ctx):
    room = ctx.params["room"]
    user = ctx.get_query("user") or "Anonymous"
    ws.join(room)

    # {"type": "message", "content": text} arrives here as text (the JSON event rule).
    @ws.on("message")
    def on_message(content):
        ws.broadcast(room, {"user": user, "message": content, "timestamp": now_iso()})


app.run(host=HOST, port=port_from_argv())
