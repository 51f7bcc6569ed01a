"""Tiny compressed fragments do not multiply memory.

A 1,000,000-byte message sent as about a million one-byte frames with RSV1
(7 MB on the wire) raised the server's RSS by 127-131 MB: one bytes object per
inflated fragment. Now the pieces are gathered in one buffer, so the peak stays
within a small multiple of the message (the buffer, the message made from it,
and its echo), as it does for the same frames uncompressed.
"""

from __future__ import annotations

import os
import socket
import zlib
from pathlib import Path

from ..integration.rawws import accept_for, hand_frame, new_key, read_head
from .procs import ServerProcess

MESSAGE = 1_000_000
#: The peak may grow by the inflated buffer, the message, its echo frame and
#: allocator slack: a budget in MiB, where the old code needed 120 or more.
PEAK_GROWTH_MIB = 24


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]             # RFC 7692 §7.2.1: the sender drops the tail


def test_a_message_of_one_byte_compressed_fragments(tmp_path: Path):
    payload = os.urandom(MESSAGE // 2).hex().encode()[:MESSAGE]     # hardly compressible
    compressed = deflate_raw(payload)
    frames = [hand_frame(0x2, compressed[:1], fin=False, rsv=4)]
    frames += [hand_frame(0x0, compressed[i:i + 1], fin=False) for i in range(1, len(compressed) - 1)]
    frames.append(hand_frame(0x0, compressed[-1:], fin=True))
    wire = b"".join(frames)
    with ServerProcess("accept", tmp_path / "server.log", compression=True,
                       max_message_size=2 * MESSAGE) as server:
        key = new_key()
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
            sock.sendall(f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         f"Sec-WebSocket-Version: 13\r\n"
                         f"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode())
            head = read_head(sock)
            assert head.startswith(b"HTTP/1.1 101") and accept_for(key).encode() in head, head
            assert b"permessage-deflate" in head
            before = server.hwm_kib()
            sock.sendall(wire)
            # The echo comes back (compressed, in one frame): read until it is whole.
            got = b""
            while len(got) < 10 or not echo_complete(got):
                chunk = sock.recv(1 << 20)
                assert chunk, "closed before the echo"
                got += chunk
            peak = server.hwm_kib()
        growth_mib = (peak - before) / 1024
        print(f"\n{len(frames):,} compressed fragments ({len(wire) / 1e6:.1f} MB on the wire) "
              f"for a {MESSAGE:,}-byte message: peak RSS +{growth_mib:.1f} MiB")
        assert growth_mib < PEAK_GROWTH_MIB, f"peak RSS grew by {growth_mib:.1f} MiB"
        assert inflate_echo(got) == payload


def frame_length(data: bytes) -> tuple[int, int] | None:
    """(header length, payload length) of the unmasked frame at the start of ``data``."""
    if len(data) < 2:
        return None
    n = data[1] & 0x7F
    if n < 126:
        return 2, n
    if n == 126:
        return (4, int.from_bytes(data[2:4], "big")) if len(data) >= 4 else None
    return (10, int.from_bytes(data[2:10], "big")) if len(data) >= 10 else None


def echo_complete(data: bytes) -> bool:
    found = frame_length(data)
    return found is not None and len(data) >= found[0] + found[1]


def inflate_echo(data: bytes) -> bytes:
    hlen, n = frame_length(data)
    assert data[0] & 0x40, "the echo should be compressed"
    d = zlib.decompressobj(wbits=-15)
    return d.decompress(data[hlen:hlen + n] + b"\x00\x00\xff\xff")
