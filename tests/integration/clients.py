"""Client-side helpers for the integration tests: a `websockets` sync client
with safe defaults, receives that never hang, raw HTTP over a socket, and a
bounded wait for conditions the server reaches asynchronously."""

from __future__ import annotations

import inspect
import json
import socket
import time
from typing import Any, Callable

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests import wire

# websockets 17 warns unless a connection is either a context manager or
# opted into direct use; tests hold several clients at once, so opt in
# where the flag exists (older releases behave that way without it).
_DIRECT = {"legacy": True} if "legacy" in inspect.signature(connect).parameters else {}

#: Hang guard for every receive; never an expectation about speed.
TIMEOUT = 5.0


def ws_connect(url: str, **kwargs: Any) -> ClientConnection:
    """A sync `websockets` client on ``url`` (no proxy, no compression,
    bounded handshake and close)."""
    kwargs.setdefault("open_timeout", TIMEOUT)
    kwargs.setdefault("close_timeout", 2)
    kwargs.setdefault("proxy", None)
    kwargs.setdefault("compression", None)
    return connect(url, **_DIRECT, **kwargs)


def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> str | bytes:
    """The next message, or TimeoutError after ``timeout`` seconds."""
    return ws.recv(timeout=timeout)


def recv_json(ws: ClientConnection, timeout: float = TIMEOUT) -> Any:
    """The next message, parsed as JSON (it must be a text message)."""
    message = ws.recv(timeout=timeout)
    assert isinstance(message, str), f"expected a text message, got {message!r}"
    return json.loads(message)


def closed_with(ws: ClientConnection, timeout: float = TIMEOUT) -> tuple[int, str]:
    """Wait for the server's close frame (no further message may come first)
    and return its (code, reason)."""
    try:
        message = ws.recv(timeout=timeout)
    except ConnectionClosed as exc:
        assert exc.rcvd is not None, "connection dropped without a close frame"
        return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError(f"expected the connection to close, got message {message!r}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port: int, path: str = "/") -> int | None:
    """The status a plain GET of ``path`` on 127.0.0.1:``port`` gets, or None
    when nothing answers there."""
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_for(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Poll ``condition`` until it is truthy (returned) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class HttpResponse:
    """A parsed HTTP/1.1 response: status, lower-cased headers, body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<HttpResponse {self.status} {self.headers} {self.body[:200]!r}>"


def raw_connection(port: int) -> socket.socket:
    """A TCP connection to the test server with the hang guard as timeout."""
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def read_response(sock: socket.socket, buf: bytearray, head: bool = False) -> HttpResponse:
    """Read one response from ``sock`` (bytes beyond it stay in ``buf``).
    Bodies are delimited by Content-Length; ``head`` means no body."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed mid-response: {bytes(buf)!r}")
        buf += chunk
    end = buf.index(b"\r\n\r\n")
    lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
    del buf[:end + 4]
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = 0 if head else int(headers.get("content-length", "0"))
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError("connection closed mid-body")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return HttpResponse(status, headers, body)


def http_request(port: int, method: str, path: str, body: bytes = b"",
                 headers: dict[str, str] | None = None) -> HttpResponse:
    """One request on a fresh connection (``Connection: close``)."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    with raw_connection(port) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return read_response(sock, bytearray(), head=method == "HEAD")


# ---------------------------------------------------------------- raw WebSocket

#: Client mask key for raw frames; no zero byte, so unmasked data would show.
MASK = b"\x5a\xc3\x17\x8e"


def client_frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """A masked client frame, written by hand (tests/wire.py)."""
    return wire.client_frame(opcode, payload, fin=fin, mask_key=MASK)


def raw_ws(port: int, path: str = "/", early: bytes = b"") -> tuple[socket.socket, bytearray]:
    """Open a WebSocket by hand; ``early`` bytes (e.g. frames) go out in the
    same write as the upgrade request. Returns the socket and the bytes
    already read past the 101 response."""
    sock = raw_connection(port)
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii")
    sock.sendall(request + early)
    buf = bytearray()
    response = read_response(sock, buf, head=True)
    assert response.status == 101, response
    assert response.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    return sock, buf


def read_frame(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """The next (opcode, payload) the server sent (server frames are unmasked)."""
    def need(n: int) -> None:
        while len(buf) < n:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the TCP connection")
            buf.extend(chunk)
    need(2)
    opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
    assert not buf[1] & 0x80, "server frames must not be masked"
    start = 2
    if n == 126:
        need(4)
        n, start = int.from_bytes(buf[2:4], "big"), 4
    elif n == 127:
        need(10)
        n, start = int.from_bytes(buf[2:10], "big"), 10
    need(start + n)
    payload = bytes(buf[start:start + n])
    del buf[:start + n]
    return opcode, payload
