"""fastws peer server for bench/compare.py: /echo and /fanout (one room, to all others).

BENCH_COMPRESSION=1: permessage-deflate on with fastws's defaults
(``websocket(compression=True)``).
"""
from common import COMPRESSION, HOST, port_from_argv, raise_nofile_limit

from fastws import create_app, websocket

raise_nofile_limit()
app = create_app()
app.use(websocket(max_message_size=1 << 20, compression=COMPRESSION))


@app.ws("/echo")
def echo(ws, ctx):
    ws.on("message", ws.send)


@app.ws("/fanout")
def fanout(ws, ctx):
    ws.join("all")
    ws.on("message", lambda data: ws.broadcast("all", data))


app.run(host=HOST, port=port_from_argv())
