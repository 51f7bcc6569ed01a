"""aiohttp on uvloop: /echo, /fanout (one room, to all others), /room/{name} (that room,
to all others) and /chat/{room} (JSON chat, see common.chat_reply).

aiohttp has no rooms or broadcast helper: a room is a set of responses, and each member
is sent to with its own ``await send_*()``, as aiohttp's documentation does it.
BENCH_COMPRESSION=1: permessage-deflate on (aiohttp's ``compress=True``);
otherwise off, so an offer from the client is declined.
"""
import uvloop
from aiohttp import WSMsgType, web

from common import COMPRESSION, HOST, chat_reply, port_from_argv, raise_nofile_limit

ROOM = web.AppKey("room", set)
ROOMS = web.AppKey("rooms", dict)


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(compress=COMPRESSION)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type == WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


async def relay(ws: web.WebSocketResponse, room: set, msg_type: WSMsgType, data) -> None:
    """Send one message to every open member of `room` but `ws`."""
    for peer in list(room):
        if peer is ws or peer.closed:
            continue
        if msg_type == WSMsgType.BINARY:
            await peer.send_bytes(data)
        else:
            await peer.send_str(data)


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


async def in_room(request: web.Request, name: str, user: str | None) -> web.WebSocketResponse:
    """Be a member of room `name` until the connection ends; relay each message to the
    other members, or with `user` set, the chat reply to it."""
    ws = web.WebSocketResponse(compress=COMPRESSION)
    await ws.prepare(request)
    rooms = request.app[ROOMS]
    members = rooms.setdefault(name, set())
    members.add(ws)
    try:
        async for msg in ws:
            if user is not None:
                reply = chat_reply(user, msg.data) if msg.type == WSMsgType.TEXT else None
                if reply is not None:
                    await relay(ws, members, WSMsgType.TEXT, reply)
            elif msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                await relay(ws, members, msg.type, msg.data)
    finally:
        members.discard(ws)
        if not members and rooms.get(name) is members:
            del rooms[name]
    return ws


async def room(request: web.Request) -> web.WebSocketResponse:
    return await in_room(request, request.match_info["name"], None)


async def chat(request: web.Request) -> web.WebSocketResponse:
    return await in_room(request, request.match_info["room"],
                         request.query.get("user", "Anonymous"))


def main() -> None:
    raise_nofile_limit()
    app = web.Application()
    app[ROOM] = set()
    app[ROOMS] = {}
    app.add_routes([web.get("/echo", echo), web.get("/fanout", fanout),
                    web.get("/room/{name}", room), web.get("/chat/{room}", chat)])
    web.run_app(app, host=HOST, port=port_from_argv(), backlog=4096, access_log=None,
                print=None, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()
