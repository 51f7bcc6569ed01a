"""fastws peer server for bench/compare.py: /echo and /fanout (one room, to all others).

BENCH_COMPRESSION=1: permessage-deflate on with fastws's defaults
(``websocket(compression=True)``). BENCH_BACKPLANE=URL (bench/cluster.py): rooms
span every process started with the same URL and BENCH_PREFIX. BENCH_METRICS=1:
Prometheus metrics on (``app.use(metrics())``).
"""
import os

from common import COMPRESSION, HOST, port_from_argv, raise_nofile_limit

from fastws import backplane, create_app, websocket

raise_nofile_limit()
app = create_app()
app.use(websocket(max_message_size=1 << 20, compression=COMPRESSION))
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


app.run(host=HOST, port=port_from_argv())
