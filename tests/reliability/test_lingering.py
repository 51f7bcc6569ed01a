"""Every close is heard: when fastws refuses input, the client receives the close
frame or the status line, never a reset, even while it is still sending.

Each client here writes its whole bad message (2 MiB, 8 MiB, or more bytes after
a bad frame) before reading anything, as a client that streams does: closing TCP
while that data still arrives would make the server's kernel answer it with a
reset that destroys the answer in flight.
"""

from __future__ import annotations

import socket
import struct
import threading

import pytest

from fastws import create_app, websocket

from ..conftest import serving
from ..integration.rawws import (OP_BINARY, OP_CLOSE, OP_CONT, OP_TEXT, RawClient, hand_frame,
                                 masked_frame, masked_header, raw_upgrade)

MIB = 1 << 20


@pytest.fixture(scope="module")
def server():
    app = create_app()
    app.use(websocket(rate_limit=(1, 1), ping_interval=None))

    @app.ws("/echo")
    def echo(ws):
        ws.on("message", ws.send)

    @app.post("/upload")
    async def upload(ctx):
        return {"size": len(await ctx.body())}

    with serving(app) as srv:
        yield srv


def send_in_background(client: RawClient, data: bytes) -> threading.Thread:
    """Write ``data`` from a thread (a blocking sendall of megabytes must not
    wait for us to read) and report any error, a reset above all, to the test."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            client.sock.sendall(data)
        except OSError as exc:
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.errors = errors  # type: ignore[attr-defined]
    t.start()
    return t


def read_close_then_eof(client: RawClient) -> int:
    """The close frame's code; then the server's FIN, not a reset."""
    client.sock.settimeout(20)
    frame = client.read_frame()
    while frame.opcode != OP_CLOSE:     # echoes of what was accepted before it
        frame = client.read_frame()
    code = frame.close_code
    try:
        while client.sock.recv(65536):
            pass                    # nothing should follow, but tolerate it
    except ConnectionResetError:
        raise AssertionError("the server reset the connection after its close frame") from None
    return code


@pytest.mark.parametrize("size", [2 * MIB, 8 * MIB])
def test_a_message_too_big_sent_in_one_go_reads_1009(server, size):
    with raw_upgrade(server.port) as client:
        header = masked_header(OP_BINARY, size)
        writer = send_in_background(client, header + b"x" * size)
        assert read_close_then_eof(client) == 1009
        writer.join(20)
    assert not writer.errors, writer.errors


def test_a_message_too_big_sent_a_byte_at_a_time_reads_1009():
    app = create_app()
    app.use(websocket(max_message_size=1000, ping_interval=None))

    @app.ws("/echo")
    def echo(ws):
        ws.on("message", ws.send)

    with serving(app) as srv:
        with raw_upgrade(srv.port) as client:
            # A first fragment at the limit, then one past it, byte by byte.
            client.send(masked_frame(OP_TEXT, "a" * 1000, fin=False))
            frame = masked_frame(OP_CONT, "b" * 300)
            writer = threading.Thread(target=client.send_bytewise, args=(frame, 0.002), daemon=True)
            writer.start()
            assert read_close_then_eof(client) == 1009
            writer.join(20)


@pytest.mark.parametrize("bad, code", [
    (hand_frame(OP_TEXT, b"unmasked", masked=False), 1002),
    (masked_frame(OP_TEXT, b"\xff\xfe\xfd"), 1007),
    (masked_frame(OP_TEXT, "one") + masked_frame(OP_TEXT, "two"), 1008),   # rate limit 1/s
])
def test_other_refusals_are_heard_while_data_still_arrives(server, bad, code):
    with raw_upgrade(server.port) as client:
        more = masked_frame(OP_BINARY, b"y" * 60000) * 35          # ~2 MiB behind it
        writer = send_in_background(client, bad + more)
        assert read_close_then_eof(client) == code
        writer.join(20)
    assert not writer.errors, writer.errors


def test_a_body_too_large_reads_its_413(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        body = b"z" * (5 * MIB)
        head = (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/octet-stream\r\n\r\n").encode()
        client = RawClient.__new__(RawClient)
        client.sock, client.buf = sock, bytearray()
        writer = send_in_background(client, head + body)
        response = client.read_response()
        assert response.status == 413, response
        try:
            while sock.recv(65536):
                pass
        except ConnectionResetError:
            raise AssertionError("the server reset the connection after its 413") from None
        writer.join(20)
        assert not writer.errors, writer.errors


def test_a_client_that_answers_our_close_is_closed_at_once(server):
    """Lingering ends when the client's close frame comes (nothing follows one)."""
    with raw_upgrade(server.port) as client:
        client.send(hand_frame(OP_TEXT, b"unmasked", masked=False))
        assert client.read_frame().close_code == 1002
        client.send(masked_frame(OP_CLOSE, struct.pack("!H", 1002)))
        client.sock.settimeout(0.9)     # under the one-second quiet close: it must be the frame
        assert client.sock.recv(65536) == b""
