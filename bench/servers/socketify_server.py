"""socketify (uWebSockets through cffi): /echo, /fanout (one room, to all others),
/room/:name (that room's topic, to all others) and /chat/:room (JSON chat, see
common.chat_reply), all on uWebSockets' pub/sub.

BENCH_COMPRESSION=1: permessage-deflate with uWebSockets' shared compressor,
and every publish asks for compression.
"""
from socketify import App, CompressOptions, OpCode
from socketify.native import lib

from common import COMPRESSION, HOST, chat_reply, port_from_argv, raise_nofile_limit

TOPIC = b"all"


def echo_message(ws, message, opcode: OpCode) -> None:
    ws.send(message, opcode)


def fanout_open(ws) -> None:
    ws.subscribe(TOPIC)


def publish_to_others(ws, topic: bytes, message, opcode: OpCode) -> None:
    # socketify's WebSocket.publish goes through App.publish, which also sends to the
    # publisher; uWebSockets' own per-socket publish skips it, as the benchmark wants.
    data = message.encode() if isinstance(message, str) else message
    lib.uws_ws_publish_with_options(ws.app.SSL, ws.ws, topic, len(topic), data, len(data),
                                    int(opcode), COMPRESSION)


def fanout_message(ws, message, opcode: OpCode) -> None:
    publish_to_others(ws, TOPIC, message, opcode)


def upgrade_with(res, req, socket_context, user_data) -> None:
    """Accept the upgrade as uWebSockets' default does, keeping `user_data` on the socket."""
    res.upgrade(req.get_header("sec-websocket-key"), req.get_header("sec-websocket-protocol"),
                req.get_header("sec-websocket-extensions"), socket_context, user_data)


def room_upgrade(res, req, socket_context) -> None:
    # The topic of a named room is its path, so /room/x and /chat/x are different rooms.
    upgrade_with(res, req, socket_context, ("/room/" + req.get_parameter(0)).encode())


def chat_upgrade(res, req, socket_context) -> None:
    topic = ("/chat/" + req.get_parameter(0)).encode()
    upgrade_with(res, req, socket_context, (topic, req.get_query("user") or "Anonymous"))


def room_open(ws) -> None:
    ws.subscribe(ws.get_user_data())


def room_message(ws, message, opcode: OpCode) -> None:
    publish_to_others(ws, ws.get_user_data(), message, opcode)


def chat_open(ws) -> None:
    ws.subscribe(ws.get_user_data()[0])


def chat_message(ws, message, opcode: OpCode) -> None:
    if opcode != OpCode.TEXT:
        return
    topic, user = ws.get_user_data()
    reply = chat_reply(user, message)
    if reply is not None:
        publish_to_others(ws, topic, reply, OpCode.TEXT)


def release_user_data(ws, code: int, message) -> None:
    """Nothing to do; socketify frees a socket's user data only when a close handler is set."""


BEHAVIOUR = {
    "compression": CompressOptions.SHARED_COMPRESSOR if COMPRESSION else CompressOptions.DISABLED,
    "max_payload_length": 1 << 20,
    "idle_timeout": 240,
    "max_backpressure": 16 << 20,
}


def main() -> None:
    raise_nofile_limit()
    app = App()
    app.ws("/echo", {**BEHAVIOUR, "message": echo_message})
    app.ws("/fanout", {**BEHAVIOUR, "open": fanout_open, "message": fanout_message})
    app.ws("/room/:name", {**BEHAVIOUR, "upgrade": room_upgrade, "open": room_open,
                           "message": room_message, "close": release_user_data})
    app.ws("/chat/:room", {**BEHAVIOUR, "upgrade": chat_upgrade, "open": chat_open,
                           "message": chat_message, "close": release_user_data})
    app.listen({"port": port_from_argv(), "host": HOST})
    app.run()


if __name__ == "__main__":
    main()
