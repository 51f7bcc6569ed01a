"""python-socketio peer for bench/cluster.py: Socket.IO on aiohttp (uvloop), rooms across
processes through its Redis manager (``socketio.AsyncRedisManager``), as its docs show.

Clients connect to /socket.io/ (Engine.IO v4 over WebSocket). Joining: a connection
joins room "all" at connect; a "p" event is emitted to the room as "m", skipping the
sender. BENCH_BACKPLANE=URL: the Redis manager's URL (channel BENCH_PREFIX).
"""
import asyncio
import os

import socketio
import uvloop
from aiohttp import web
from common import HOST, port_from_argv, raise_nofile_limit

raise_nofile_limit()
url = os.environ.get("BENCH_BACKPLANE")
manager = socketio.AsyncRedisManager(url, channel=os.environ.get("BENCH_PREFIX", "bench")) if url else None
sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager, cors_allowed_origins="*",
                           max_http_buffer_size=1 << 20)
app = web.Application()
sio.attach(app)


@sio.event
async def connect(sid, environ):
    await sio.enter_room(sid, "all")


@sio.on("p")
async def publish(sid, data):
    await sio.emit("m", data, room="all", skip_sid=sid)


async def health(request):
    return web.Response(text="ok")


app.router.add_get("/health", health)

if __name__ == "__main__":
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    web.run_app(app, host=HOST, port=port_from_argv(), print=None, access_log=None)
