"""picows (Cython, frame-level API) on uvloop: /echo and /fanout (one room, to all others)."""

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from common import HOST, port_from_argv, raise_nofile_limit

DATA = (WSMsgType.BINARY, WSMsgType.TEXT)
ROOM: set[WSTransport] = set()


class Echo(WSListener):
    """Send every data frame straight back."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


class Fanout(WSListener):
    """Join the one room; send every data frame to all other members."""

    def on_ws_connected(self, transport: WSTransport) -> None:
        ROOM.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            # One bytes object shared by every send; the memoryview dies with the frame.
            payload = frame.get_payload_as_bytes()
            kind = frame.msg_type
            for peer in ROOM:
                if peer is not transport:
                    peer.send(kind, payload)
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        ROOM.discard(transport)


def route(request: WSUpgradeRequest):
    """Pick the listener by path; None answers 404."""
    if request.path == b"/echo":
        return Echo()
    if request.path == b"/fanout":
        return Fanout()
    return None


async def main(port: int) -> None:
    server = await ws_create_server(route, HOST, port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    raise_nofile_limit()
    uvloop.run(main(port_from_argv()))
