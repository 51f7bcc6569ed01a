"""The floor for idle memory: a bare asyncio.Protocol on uvloop that answers the
WebSocket upgrade (101 with the right Sec-WebSocket-Accept) and then holds the
connection, discarding whatever arrives. No frames, no rooms, no timers.

What a server built on uvloop and a Python protocol object cannot go below per idle
connection (uvloop's transport and the kernel's socket buffers, plus one small
object); bench/compare.py runs it in the ``idle`` mode only.
"""
import asyncio
import base64
import hashlib

import uvloop

from common import HOST, port_from_argv, raise_nofile_limit

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 8192


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455, section 4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def websocket_key(head: bytes) -> bytes | None:
    """The Sec-WebSocket-Key of an upgrade request head, or None when it is not one."""
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"GET "):
        return None
    key = None
    upgrade = False
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        name = name.strip().lower()
        if name == b"sec-websocket-key":
            key = value.strip()
        elif name == b"upgrade":
            upgrade = value.strip().lower() == b"websocket"
    return key if upgrade and key else None


class Floor(asyncio.Protocol):
    """One connection: the request head until the upgrade is answered, then nothing."""

    __slots__ = ("transport", "head")

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head: bytes | None = b""

    def data_received(self, data: bytes) -> None:
        if self.head is None:
            return                                   # upgraded: frames are discarded
        self.head += data
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > MAX_HEAD:
                self.transport.close()
            return
        key = websocket_key(self.head[:end])
        self.head = None                             # the buffer is not kept once answered
        if key is None:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                 b"Connection: close\r\n\r\n")
            self.transport.close()
            return
        self.transport.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_key(key)
                             + b"\r\n\r\n")


async def main(port: int) -> None:
    # backlog: thousands of clients connect at once.
    server = await asyncio.get_running_loop().create_server(Floor, HOST, port, backlog=4096)
    await server.serve_forever()


if __name__ == "__main__":
    raise_nofile_limit()
    uvloop.run(main(port_from_argv()))
