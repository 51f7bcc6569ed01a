"""Scaling out: the chat of ``chat.py`` with its rooms shared by every process
and machine that serves it, through Redis.

Run two nodes on one machine (and Redis on 127.0.0.1:6379)::

    python -m examples.cluster                 # node 1, port 3000
    PORT=3001 python -m examples.cluster       # node 2, port 3001

and connect one client to ws://localhost:3000/chat/general?user=Alice and one
to ws://localhost:3001/chat/general?user=Bob: each sees the other's messages.
Or run both as workers of one port: ``fastws examples.cluster:app --workers 2``.
``FASTWS_BACKPLANE`` names another Redis (``redis://:password@host:6379/0``,
``rediss://`` for TLS). GET /cluster shows the room across every node.
"""

import os
from datetime import datetime, timezone

from fastws import backplane, create_app, websocket

app = create_app()
app.use(websocket())
app.use(backplane(os.environ.get("FASTWS_BACKPLANE", "redis://127.0.0.1:6379/0")))


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds, like JS toISOString()."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@app.ws("/chat/:room")
def chat(ws, ctx):
    room = ctx.params["room"]
    user = ctx.get_query("user") or "Anonymous"
    ws.join(room)
    # Reaches the room on every node; the return value counts this node's members.
    ws.broadcast(room, f"{user} joined the room")

    @ws.on("message")
    def on_message(data):
        ws.broadcast(room, {"user": user, "message": data, "timestamp": now_iso()})

    @ws.on("close")
    def on_close():
        ws.broadcast(room, f"{user} left the room")


@app.get("/cluster")
async def cluster(ctx):
    # Across the cluster: asks Redis (eventually consistent within the presence TTL).
    rooms = await app.cluster.rooms()
    return ctx.json({"node": app.cluster.node_id, "nodes": await app.cluster.nodes(),
                     "rooms": {r: await app.cluster.room_size(r) for r in rooms}})


def on_restored():
    # Redis was lost and is back, every room resubscribed: messages published
    # elsewhere meanwhile did not reach this node, so clients should refetch.
    for room in app.rooms():
        app.broadcast(room, {"type": "resync"})


app.cluster.on("restored", on_restored)


if __name__ == "__main__":
    app.run(port=int(os.environ.get("PORT", "3000")))
