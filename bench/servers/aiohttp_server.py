"""aiohttp on uvloop: /echo and /fanout (one room, to all others).

BENCH_COMPRESSION=1: permessage-deflate on (aiohttp's ``compress=True``);
otherwise off, so an offer from the client is declined.
"""
import uvloop
from aiohttp import WSMsgType, web

from common import COMPRESSION, HOST, port_from_argv, raise_nofile_limit

ROOM = web.AppKey("room", set)


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=COMPRESSION)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def fanout(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=COMPRESSION)
    await ws.prepare(request)
    room = request.app[ROOM]
    room.add(ws)
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                continue
            for peer in list(room):
                if peer is ws or peer.closed:
                    continue
                if msg.type == WSMsgType.BINARY:
                    await peer.send_bytes(msg.data)
                else:
                    await peer.send_str(msg.data)
    finally:
        room.discard(ws)
    return ws


def main() -> None:
    raise_nofile_limit()
    app = web.Application()
    app[ROOM] = set()
    app.add_routes([web.get("/echo", echo), web.get("/fanout", fanout)])
    web.run_app(app, host=HOST, port=port_from_argv(), backlog=4096, access_log=None,
                print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
