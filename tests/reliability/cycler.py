"""Connect/close cycles against a fastws /echo route, as fast as one process can.

    python -m tests.reliability.cycler --port N --cycles 100000 [--concurrency 64]

Each cycle opens a TCP connection, upgrades it, checks one echo, then ends
it one of three ways in turn: a clean closing handshake (the server closes
TCP first), an abortive reset without a close frame (1006 on the server),
or a close frame followed at once by a reset. Runs on uvloop with
``--concurrency`` cycles in flight; prints one JSON line with the counts.
Every cycle has a timeout, so a stuck server makes errors, not a hang.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import time

from tests.reliability.procs import raise_nofile_limit

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MASK = b"\x37\xfa\x21\x3d"


def _masked(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    body = bytes(b ^ _MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + _MASK + body


_PING_TEXT = _masked(0x1, b"cycle")
_CLOSE_1000 = _masked(0x8, struct.pack("!H", 1000))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    return b0 & 0x0F, await reader.readexactly(n)


async def one_cycle(port: int, path: str, kind: int) -> None:
    """One connection's life; raises on anything unexpected."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16))
        writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
                     b"\r\nSec-WebSocket-Version: 13\r\n\r\n" + _PING_TEXT)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101 "):
            raise RuntimeError(f"upgrade refused: {head[:60]!r}")
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        fields = dict(line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
        if {k.strip().lower(): v.strip() for k, v in fields.items()}.get(
                b"sec-websocket-accept") != accept:
            raise RuntimeError("bad Sec-WebSocket-Accept")
        if await _read_frame(reader) != (0x1, b"cycle"):
            raise RuntimeError("bad echo")
        if kind == 0:
            writer.write(_CLOSE_1000)
            opcode, payload = await _read_frame(reader)
            if opcode != 0x8 or payload[:2] != struct.pack("!H", 1000):
                raise RuntimeError(f"bad close answer {opcode} {payload!r}")
            if await reader.read(1) != b"":
                raise RuntimeError("data after the close frame")
            return
        if kind == 2:
            writer.write(_CLOSE_1000)
        # Abortive close: RST, no TIME_WAIT left on either side.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        writer.close()


async def run(port: int, path: str, cycles: int, concurrency: int, timeout: float) -> dict:
    """``cycles`` cycles, ``concurrency`` at a time; counts of outcomes."""
    done = errors = 0
    first_errors: list[str] = []
    next_cycle = 0

    async def worker() -> None:
        nonlocal done, errors, next_cycle
        while next_cycle < cycles:
            kind = next_cycle % 3
            next_cycle += 1
            try:
                await asyncio.wait_for(one_cycle(port, path, kind), timeout)
                done += 1
            except Exception as exc:            # counted and reported, never fatal
                errors += 1
                if len(first_errors) < 5:
                    first_errors.append(f"{type(exc).__name__}: {exc}")

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - start
    return {"cycles": cycles, "ok": done, "errors": errors, "first_errors": first_errors,
            "seconds": round(elapsed, 2), "per_second": round(cycles / elapsed, 1)}


def main(argv: list[str]) -> None:
    """Parse the options, run the cycles, print the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/echo")
    parser.add_argument("--cycles", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:         # pragma: no cover - uvloop is a fastws dependency
        runner = asyncio.run
    result = runner(run(args.port, args.path, args.cycles, args.concurrency, args.timeout))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
