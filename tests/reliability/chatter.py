"""Many WebSocket clients in one process, held open and chatting at a steady pace.

    python -m tests.reliability.chatter --port N --conns 10000 --seconds 60 [--interval 1.0]

Opens ``--conns`` connections to /echo (``--concurrency`` handshakes at a
time), prints ``{"event": "holding", ...}`` once all are open, then has each
one send a numbered text message every ``--interval`` seconds (phases
spread evenly) for ``--seconds``, checking that every echo comes back, in
order. Answers pings. Then closes them all with a reset and prints one JSON
line of counts. A connection the server closes, a wrong echo, or an echo
still missing at the end counts as an error.

Plain asyncio protocols on uvloop, one timer for all connections: paced
chat over 10,000 sockets costs this process a fraction of a core, unlike
one task per client.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import struct
import sys
import time

from tests.reliability.procs import raise_nofile_limit

_MASK = b"\x5b\x11\xc4\x09"


def _masked(opcode: int, payload: bytes) -> bytes:
    body = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + _MASK + body


class ChatClient(asyncio.Protocol):
    """One connection: handshake, then numbered messages and their echoes."""

    def __init__(self, path: bytes, opened: asyncio.Future) -> None:
        self.path = path
        self.opened = opened
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.upgraded = False
        self.sent = 0                 # messages sent; echoes expected in the same order
        self.echoed = 0
        self.errors: list[str] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16))
        transport.write(b"GET " + self.path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # type: ignore[attr-defined]
                        b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                        b"\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.upgraded:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            ok = self.buf.startswith(b"HTTP/1.1 101 ")
            del self.buf[:end + 4]
            if not self.opened.done():
                if ok:
                    self.opened.set_result(self)
                else:
                    self.opened.set_exception(RuntimeError("upgrade refused"))
            if not ok:
                return
            self.upgraded = True
        self._frames()

    def _frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            start = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, start = struct.unpack_from("!H", buf, 2)[0], 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < start + n:
                return
            opcode, payload = buf[0] & 0x0F, bytes(buf[start:start + n])
            del buf[:start + n]
            if opcode == 0x1:
                expected = b"m%d" % self.echoed
                if payload != expected and len(self.errors) < 3:
                    self.errors.append(f"echo {payload[:20]!r}, expected {expected!r}")
                self.echoed += 1
            elif opcode == 0x9:
                self.transport.write(_masked(0xA, payload))
            elif opcode == 0x8:
                if len(self.errors) < 3:
                    self.errors.append(f"server closed: {payload[:40]!r}")
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(f"lost before upgrade: {exc}"))

    def say(self) -> None:
        """Send the next numbered message."""
        if self.transport is not None and not self.lost:
            self.transport.write(_masked(0x1, b"m%d" % self.sent))
            self.sent += 1

    def reset(self) -> None:
        """Abortive close (RST): fast, and leaves no TIME_WAIT behind."""
        if self.transport is not None and not self.lost:
            sock = self.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.transport.abort()


async def open_all(port: int, path: bytes, conns: int, concurrency: int,
                   timeout: float) -> tuple[list[ChatClient], int]:
    """Open ``conns`` clients; (the open ones, how many failed)."""
    loop = asyncio.get_running_loop()
    clients: list[ChatClient] = []
    failed = 0
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        nonlocal failed
        async with gate:
            opened: asyncio.Future = loop.create_future()
            try:
                await asyncio.wait_for(loop.create_connection(
                    lambda: ChatClient(path, opened), "127.0.0.1", port), timeout)
                clients.append(await asyncio.wait_for(opened, timeout))
            except Exception:
                failed += 1

    await asyncio.gather(*(one() for _ in range(conns)))
    return clients, failed


async def chat(args: argparse.Namespace) -> dict:
    """Open, hold and chat, then report."""
    start = time.monotonic()
    clients, failed = await open_all(args.port, args.path.encode(), args.conns,
                                     args.concurrency, args.timeout)
    setup = time.monotonic() - start
    print(json.dumps({"event": "holding", "connections": len(clients), "failed": failed,
                      "setup_s": round(setup, 2)}), flush=True)
    # One timer: every tick, the slice of clients whose turn it is speaks.
    tick = 0.05
    per_tick = max(1, round(len(clients) * tick / args.interval))
    end = time.monotonic() + args.seconds
    i = 0
    while time.monotonic() < end and clients:
        for _ in range(per_tick):
            clients[i % len(clients)].say()
            i += 1
        await asyncio.sleep(tick)
    # Let the last echoes arrive (bounded).
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and any(c.echoed < c.sent and not c.lost for c in clients):
        await asyncio.sleep(0.1)
    sent = sum(c.sent for c in clients)
    echoed = sum(c.echoed for c in clients)
    errors = [e for c in clients for e in c.errors]
    lost = sum(c.lost for c in clients)
    for c in clients:
        c.reset()
    await asyncio.sleep(0.2)
    return {"connections": len(clients), "failed": failed, "setup_s": round(setup, 2),
            "seconds": args.seconds, "sent": sent, "echoed": echoed,
            "missing": sent - echoed, "lost_by_server": lost, "errors": len(errors),
            "first_errors": errors[:5]}


def main(argv: list[str]) -> None:
    """Parse the options, chat, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/echo")
    parser.add_argument("--conns", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:         # pragma: no cover - uvloop is a fastws dependency
        runner = asyncio.run
    print(json.dumps(runner(chat(args))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
