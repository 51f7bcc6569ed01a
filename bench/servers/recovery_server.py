"""fastws server for bench/recovery.py: rooms with history, fastws.v1 clients on
/room/:name, and ``POST /publish?prefix=P&rooms=K&n=N``, which publishes N
messages (``{"n": i}``) to each of the rooms P0..P(K-1) and answers once the
history holds them all (``await app.publish`` of each room's last).

BENCH_HISTORY=N (default 1000): what each room keeps. BENCH_BACKPLANE=URL and
BENCH_PREFIX: the history in Redis, shared by every node on that URL.
"""
import os

from common import HOST, port_from_argv, raise_nofile_limit

from fastws import backplane, create_app, websocket

raise_nofile_limit()
app = create_app()
app.use(websocket(history_size=int(os.environ.get("BENCH_HISTORY", "1000")), ping_interval=None,
                  max_connections=None))
if os.environ.get("BENCH_BACKPLANE"):
    app.use(backplane(os.environ["BENCH_BACKPLANE"], prefix=os.environ.get("BENCH_PREFIX", "bench")))


@app.ws("/room/:name")
def room(ws, ctx):
    ws.join(ctx.params["name"])


@app.post("/publish")
async def publish(ctx):
    prefix, rooms, n = ctx.get_query("prefix"), int(ctx.get_query("rooms")), int(ctx.get_query("n"))
    for r in range(rooms):
        for i in range(1, n + 1):
            if i < n:
                app.broadcast(f"{prefix}{r}", {"n": i})
            else:
                await app.publish(f"{prefix}{r}", {"n": i})
    return {"published": rooms * n}


app.run(host=HOST, port=port_from_argv())
