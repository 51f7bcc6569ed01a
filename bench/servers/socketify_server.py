"""socketify (uWebSockets through cffi): /echo and /fanout (one room, to all others).

BENCH_COMPRESSION=1: permessage-deflate with uWebSockets' shared compressor,
and every publish asks for compression.
"""
from socketify import App, CompressOptions, OpCode
from socketify.native import lib

from common import COMPRESSION, HOST, port_from_argv, raise_nofile_limit

TOPIC = b"all"


def echo_message(ws, message, opcode: OpCode) -> None:
    ws.send(message, opcode)


def fanout_open(ws) -> None:
    ws.subscribe(TOPIC)


def fanout_message(ws, message, opcode: OpCode) -> None:
    # socketify's WebSocket.publish goes through App.publish, which also sends to the
    # publisher; uWebSockets' own per-socket publish skips it, as the benchmark wants.
    data = message.encode() if isinstance(message, str) else message
    lib.uws_ws_publish_with_options(ws.app.SSL, ws.ws, TOPIC, len(TOPIC), data, len(data),
                                    int(opcode), COMPRESSION)


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
    app.listen({"port": port_from_argv(), "host": HOST})
    app.run()


if __name__ == "__main__":
    main()
