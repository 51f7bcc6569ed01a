"""A raw-socket WebSocket client for tests that must send what no real client
would: handshakes and frames built by hand, answers read back byte by byte.

Frames are built two ways: ``hand_frame`` writes every header bit itself from
RFC 6455 §5.2 (and can write what the codec's encoder refuses to: reserved
bits, unknown opcodes, unmasked or oversized control frames), while
``masked_frame`` uses ``fastws.ws._frame.encode_frame``. The accept key is
computed here from the RFC's GUID, not taken from ``fastws.http.handshake``.
Every receive has a timeout: a server that hangs fails the test, never
blocks it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time
from typing import NamedTuple, Sequence

from fastws.ws._frame import encode_frame
from tests.wire import client_frame, close_payload  # noqa: F401  (close_payload: for the tests)

__all__ = [
    "TIMEOUT", "RFC_KEY", "RFC_ACCEPT", "MASK_KEY", "OP_CONT", "OP_TEXT", "OP_BINARY",
    "OP_CLOSE", "OP_PING", "OP_PONG", "new_key", "accept_for", "handshake_request",
    "hand_frame", "masked_header", "masked_frame", "close_payload", "HttpResponse", "Frame",
    "RawClient", "raw_upgrade",
]

#: Hang guard for every receive; never an expectation about speed.
TIMEOUT = 5.0

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: The sample key of RFC 6455 §1.3 and the accept value the RFC gives for it.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#: No zero byte, so a server that forgets to unmask sees garbage.
MASK_KEY = b"\x9a\x3c\x07\xe1"

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


def new_key() -> str:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes in base64."""
    return base64.b64encode(os.urandom(16)).decode("ascii")


def accept_for(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server owes for ``key`` (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


def read_head(sock: socket.socket) -> bytes:
    """What the server answers up to the end of its header block (or EOF)."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def handshake_request(path: str = "/echo", *, method: str = "GET", http: str = "HTTP/1.1",
                      host: str | None = "127.0.0.1", upgrade: str | None = "websocket",
                      connection: str | None = "Upgrade",
                      key: str | Sequence[str] | None = RFC_KEY,
                      version: str | None = "13",
                      extra: Sequence[tuple[str, str]] = ()) -> bytes:
    """An opening handshake; ``None`` leaves a header out, a list of keys
    repeats the key header. No validation: the point is to send bad ones."""
    lines = [f"{method} {path} {http}"]
    if host is not None:
        lines.append(f"Host: {host}")
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not None:
        for k in [key] if isinstance(key, str) else key:
            lines.append(f"Sec-WebSocket-Key: {k}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines.extend(f"{name}: {value}" for name, value in extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def hand_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
               masked: bool = True, key: bytes = MASK_KEY) -> bytes:
    """A client frame assembled bit by bit, independently of fastws (tests/wire.py).

    ``rsv`` is the three reserved bits as a number 0-7 (RSV1 = 4). The
    shortest length form is used, as RFC 6455 §5.2 requires.
    """
    return client_frame(opcode, payload, fin=fin, rsv=rsv, mask_key=key if masked else None)


def masked_header(opcode: int, length: int, *, fin: bool = True, key: bytes = MASK_KEY) -> bytes:
    """Only the header of a masked client frame announcing ``length`` bytes
    (64-bit form above 65535; ``length`` may set bits no sane client would)."""
    return client_frame(opcode, b"", fin=fin, mask_key=key, length=length)


def masked_frame(opcode: int, payload: bytes | str = b"", *, fin: bool = True,
                 key: bytes = MASK_KEY) -> bytes:
    """A masked client frame made by fastws's own encoder."""
    return encode_frame(opcode, payload, fin=fin, mask_key=key)


class HttpResponse(NamedTuple):
    """A parsed HTTP response head (and body, when it has a length)."""
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), repeats joined
        with ", " as for any list-valued header (RFC 9110 §5.3)."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of header ``name``, lower-cased."""
        return {t.strip().lower() for t in (self.header(name) or "").split(",") if t.strip()}


class Frame(NamedTuple):
    """A frame as the server sent it."""
    fin: bool
    rsv: int
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The code of a close frame; None when its payload is empty."""
        assert self.opcode == OP_CLOSE, f"not a close frame: {self}"
        return struct.unpack("!H", self.payload[:2])[0] if self.payload else None

    @property
    def close_reason(self) -> str:
        """The reason of a close frame (it must be UTF-8, RFC 6455 §5.5.1)."""
        return self.payload[2:].decode("utf-8")


class RawClient:
    """One TCP connection to the server under test, with a read buffer."""

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # Without NODELAY, Nagle would merge the tests' one-byte writes.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the connection (no closing handshake)."""
        self.sock.close()

    def send(self, data: bytes) -> None:
        """Write ``data`` in one go."""
        self.sock.sendall(data)

    def send_bytewise(self, data: bytes, pause: float = 0.001) -> None:
        """Write ``data`` one byte per write, pausing so the server sees the
        bytes arrive in separate reads."""
        for i in range(len(data)):
            self.sock.sendall(data[i:i + 1])
            time.sleep(pause)

    def _fill(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError(f"no data from the server within {self.sock.gettimeout()}s; "
                                 f"have {bytes(self.buf[:80])!r}") from None
        if not chunk:
            raise EOFError(f"server closed the connection; have {bytes(self.buf[:80])!r}")
        self.buf += chunk

    def recv_exact(self, n: int) -> bytes:
        """Exactly ``n`` bytes from the server."""
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_response(self) -> HttpResponse:
        """One HTTP response; the body is read when Content-Length says so."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end + 4]
        status_line, *lines = head.split("\r\n")
        proto, code, *_ = status_line.split(" ", 2)
        assert proto == "HTTP/1.1", f"bad status line {status_line!r}"
        headers = []
        for line in lines:
            name, sep, value = line.partition(":")
            assert sep and name == name.strip(), f"bad header line {line!r}"
            headers.append((name, value.strip()))
        response = HttpResponse(int(code), headers, b"")
        length = response.header("content-length")
        body = self.recv_exact(int(length)) if length else b""
        return response._replace(body=body)

    def read_frame(self) -> Frame:
        """One frame from the server, which must not mask it (RFC 6455 §5.1)."""
        b0, b1 = self.recv_exact(2)
        assert not b1 & 0x80, "server frames must not be masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.recv_exact(8))[0]
        return Frame(bool(b0 & 0x80), (b0 >> 4) & 0x7, b0 & 0x0F, self.recv_exact(n))

    def expect_eof(self) -> None:
        """Nothing more comes from the server, and it closes TCP (an orderly
        FIN: recv returns b"") within the timeout."""
        assert not self.buf, f"unexpected bytes from the server: {bytes(self.buf[:80])!r}"
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("server did not close the connection") from None
        assert chunk == b"", f"expected the server to close, got {chunk[:80]!r}"


def raw_upgrade(port: int, path: str = "/echo",
                extra_headers: Sequence[tuple[str, str]] = ()) -> RawClient:
    """A RawClient that completed a good opening handshake on ``path``
    (checked: 101 and the right accept value)."""
    key = new_key()
    client = RawClient(port)
    try:
        client.send(handshake_request(path, key=key, extra=extra_headers))
        response = client.read_response()
        assert response.status == 101, f"upgrade refused: {response}"
        assert response.header("sec-websocket-accept") == accept_for(key)
    except BaseException:
        client.close()
        raise
    return client
