"""The app the cluster tests run in several processes (``fastws tests.cluster.app:app``).

Configured by the environment: FASTWS_BACKPLANE (the Redis URL), CLUSTER_PREFIX
(keys and channels of one test apart from the others'), CLUSTER_PROBE (probe
interval, s), CLUSTER_COMPRESSION=1 (permessage-deflate on).

Clients speak plain text on /chat: ``j ROOM`` joins and answers ``joined ROOM``
once the join is live across the cluster; ``l ROOM`` leaves (``left ROOM``);
``b ROOM TEXT`` broadcasts to the others, ``a ROOM TEXT`` to all (``ws.broadcast``,
``ws.broadcast_all``). Over HTTP: POST /publish?room=R (``app.broadcast``),
GET /stats, /size?room=R, /rooms, /nodes.
"""

from __future__ import annotations

import os

from fastws import BroadcastTooLargeError, backplane, create_app, websocket

app = create_app()
app.use(websocket(json_events=False, compression=os.environ.get("CLUSTER_COMPRESSION") == "1",
                  ping_interval=None,
                  max_message_size=int(os.environ.get("CLUSTER_MAX_MESSAGE", str(1 << 20)))))
if os.environ.get("FASTWS_BACKPLANE"):
    app.use(backplane(prefix=os.environ.get("CLUSTER_PREFIX", "fastws-test"),
                      probe_interval=float(os.environ.get("CLUSTER_PROBE", "5")),
                      probe_timeout=float(os.environ.get("CLUSTER_PROBE_TIMEOUT", "3")),
                      presence_ttl=float(os.environ.get("CLUSTER_TTL", "15"))))
events: list[str] = []
app.cluster.on("lost", lambda: events.append("lost"))
app.cluster.on("restored", lambda: events.append("restored"))


@app.ws("/chat")
def chat(ws, ctx):
    async def on_message(text):
        verb, _, rest = text.partition(" ")
        if verb == "j":
            ws.join(rest)
            await app.cluster.joined(rest)
            ws.send(f"joined {rest}")
        elif verb == "l":
            ws.leave(rest)
            ws.send(f"left {rest}")
        elif verb == "w":
            ws.send(f"worker {os.environ.get('FASTWS_WORKER_ID')} {os.getpid()}")
        elif verb in ("b", "a"):
            room, _, body = rest.partition(" ")
            try:
                if verb == "b":
                    ws.broadcast(room, body)
                else:
                    ws.broadcast_all(room, body)
            except BroadcastTooLargeError as exc:
                ws.send(f"refused {exc}")
    ws.on("message", on_message)


@app.post("/publish")
async def publish(ctx):
    body = (await ctx.body()).decode() * int(ctx.get_query("repeat") or 1)
    try:
        return ctx.json({"local": app.broadcast(ctx.get_query("room"), body)})
    except BroadcastTooLargeError as exc:
        return ctx.json({"refused": str(exc)}, status=413)


@app.get("/stats")
def stats(ctx):
    return ctx.json({"node": app.cluster.node_id, "connected": app.cluster.connected,
                     "cluster": app.cluster.stats(), "events": events,
                     "local": {r: app.room_size(r) for r in app.rooms()},
                     "pid": os.getpid(), "worker": os.environ.get("FASTWS_WORKER_ID")})


@app.get("/size")
async def size(ctx):
    return ctx.json({"size": await app.cluster.room_size(ctx.get_query("room"))})


@app.get("/rooms")
async def rooms(ctx):
    return ctx.json({"rooms": sorted(await app.cluster.rooms())})


@app.get("/nodes")
async def nodes(ctx):
    return ctx.json({"nodes": await app.cluster.nodes()})


@app.get("/version")
def version(ctx):
    return ctx.text(VERSION)


VERSION = "1"
