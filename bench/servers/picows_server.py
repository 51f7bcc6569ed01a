"""picows (Cython, frame-level API) on uvloop: /echo, /fanout (one room, to all others),
/room/<name> (that room, to all others) and /chat/<room> (JSON chat, see common.chat_reply).

picows has no rooms of its own: a room is a set of transports, sent to in a loop.
"""
from urllib.parse import parse_qs

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from common import HOST, chat_reply, port_from_argv, raise_nofile_limit

DATA = (WSMsgType.BINARY, WSMsgType.TEXT)
ROOM: set[WSTransport] = set()
ROOMS: dict[str, set[WSTransport]] = {}


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


class Room(WSListener):
    """Member of one named room; every data frame goes to the other members."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.members: set[WSTransport] = set()

    def on_ws_connected(self, transport: WSTransport) -> None:
        # The set is looked up once per connection, not once per message.
        self.members = ROOMS.setdefault(self.name, set())
        self.members.add(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA:
            self.relay(transport, frame.msg_type, frame.get_payload_as_bytes())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def relay(self, transport: WSTransport, kind: WSMsgType, payload: bytes) -> None:
        for peer in self.members:
            if peer is not transport:
                peer.send(kind, payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.members.discard(transport)
        if not self.members and ROOMS.get(self.name) is self.members:
            del ROOMS[self.name]


class Chat(Room):
    """A room member that answers chat events with the chat reply, to the others."""

    def __init__(self, name: str, user: str) -> None:
        super().__init__(name)
        self.user = user

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.TEXT:
            reply = chat_reply(self.user, frame.get_payload_as_bytes())
            if reply is not None:
                self.relay(transport, WSMsgType.TEXT, reply.encode())
        elif frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()


def route(request: WSUpgradeRequest):
    """Pick the listener by path; None answers 404."""
    path, _, query = request.path.partition(b"?")
    if path == b"/echo":
        return Echo()
    if path == b"/fanout":
        return Fanout()
    if path.startswith(b"/room/") and len(path) > 6:
        return Room(path[6:].decode())
    if path.startswith(b"/chat/") and len(path) > 6:
        user = parse_qs(query.decode()).get("user", ["Anonymous"])[0]
        return Chat(path[6:].decode(), user)
    return None


async def main(port: int) -> None:
    server = await ws_create_server(route, HOST, port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    raise_nofile_limit()
    uvloop.run(main(port_from_argv()))
