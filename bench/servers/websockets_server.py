"""websockets (asyncio API) on uvloop: /echo, /fanout (one room, to all others),
/room/<name> (that room, to all others) and /chat/<room> (JSON chat, see common.chat_reply).

Rooms are plain sets of connections, sent to with websockets' ``broadcast()`` helper.
BENCH_COMPRESSION=1: permessage-deflate on with websockets' server defaults
(``compression="deflate"``).
"""
from urllib.parse import parse_qs

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

from common import COMPRESSION, HOST, chat_reply, port_from_argv, raise_nofile_limit

ROOM: set[ServerConnection] = set()
ROOMS: dict[str, set[ServerConnection]] = {}


async def in_room(ws: ServerConnection, name: str, user: str | None) -> None:
    """Be a member of room `name` until the connection ends; relay each message to the
    other members, or with `user` set, the chat reply to it."""
    members = ROOMS.setdefault(name, set())
    members.add(ws)
    try:
        async for message in ws:
            if user is not None:
                message = chat_reply(user, message)
                if message is None:
                    continue
            broadcast((peer for peer in members if peer is not ws), message)
    finally:
        members.discard(ws)
        if not members:
            del ROOMS[name]


async def handler(ws: ServerConnection) -> None:
    path, _, query = ws.request.path.partition("?")
    if path == "/echo":
        async for message in ws:
            await ws.send(message)
    elif path == "/fanout":
        ROOM.add(ws)
        try:
            async for message in ws:
                broadcast((peer for peer in ROOM if peer is not ws), message)
        finally:
            ROOM.discard(ws)
    elif path.startswith("/room/") and len(path) > 6:
        await in_room(ws, path[6:], None)
    elif path.startswith("/chat/") and len(path) > 6:
        user = parse_qs(query).get("user", ["Anonymous"])[0]
        await in_room(ws, path[6:], user)
    else:
        await ws.close(1008, "unknown path")


async def main(port: int) -> None:
    # backlog: the default of 100 drops SYNs when thousands connect at once.
    compression = "deflate" if COMPRESSION else None
    async with serve(handler, HOST, port, backlog=4096, compression=compression) as server:
        await server.serve_forever()


if __name__ == "__main__":
    raise_nofile_limit()
    uvloop.run(main(port_from_argv()))
