"""websockets (asyncio API) on uvloop: /echo and /fanout (one room, to all others).

BENCH_COMPRESSION=1: permessage-deflate on with websockets' server defaults
(``compression="deflate"``).
"""

import uvloop
from websockets.asyncio.server import ServerConnection, broadcast, serve

from common import COMPRESSION, HOST, port_from_argv, raise_nofile_limit

ROOM: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request.path == "/echo":
        async for message in ws:
            await ws.send(message)
    elif ws.request.path == "/fanout":
        ROOM.add(ws)
        try:
            async for message in ws:
                broadcast((peer for peer in ROOM if peer is not ws), message)
        finally:
            ROOM.discard(ws)
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
