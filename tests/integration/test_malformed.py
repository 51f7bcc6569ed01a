"""Malformed handshakes and frames over raw sockets (RFC 6455 §4.2, §5, §7).

Each case sends bytes no well-behaved client would and checks the exact
answer: an HTTP status with its key headers, or the code in the server's
close frame, followed by the server closing TCP. Every test also holds a
bystander: a `websockets` client connected before the bad input and
checked after it, to show bad input harms no other connection.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
from typing import Any, Iterator, NamedTuple

import pytest

from fastws import create_app, websocket
from fastws.http.request import MAX_HEADER_BYTES, MAX_HEADERS, MAX_URL

from ..conftest import Running, serving
from .clients import wait_for, ws_connect
from .rawws import (MASK_KEY, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
                    RFC_ACCEPT, RFC_KEY, TIMEOUT, RawClient, accept_for, close_payload,
                    hand_frame, handshake_request, masked_frame, masked_header, new_key,
                    raw_upgrade)

MAX_MESSAGE = 1024
SUBPROTOCOLS = ["chat.v2", "chat"]

_ids = itertools.count()


class Recorder:
    """What the server's handlers saw, per connection id (``?id=`` in the URL).
    Written on the server's loop; read through ``Running.call``."""

    def __init__(self) -> None:
        self.closes: dict[str, list[tuple[int, str]]] = {}
        self.messages: dict[str, list[Any]] = {}


def make_app(recorder: Recorder):
    """An echo server with a small message limit and two subprotocols."""
    app = create_app()
    app.use(websocket(max_message_size=MAX_MESSAGE, subprotocols=SUBPROTOCOLS,
                      json_events=False, close_timeout=2))

    @app.ws("/echo")
    def echo(ws, ctx):
        conn = ctx.get_query("id") or "anonymous"

        @ws.on("message")
        def on_message(data):
            recorder.messages.setdefault(conn, []).append(data)
            ws.send(data)

        @ws.on("close")
        def on_close(code, reason):
            recorder.closes.setdefault(conn, []).append((code, reason))

    @app.get("/")
    def index():
        return "ok"

    return app


@pytest.fixture(scope="module")
def recorder() -> Recorder:
    """What the module's server saw."""
    return Recorder()


@pytest.fixture(scope="module")
def server(recorder: Recorder) -> Iterator[Running]:
    """One echo server for the whole module; the bystanders show each case
    left it healthy for the next."""
    with serving(make_app(recorder)) as running:
        yield running


@contextlib.contextmanager
def bystander(server: Running) -> Iterator[None]:
    """A well-behaved client, open across the block and still answered after it."""
    ws = ws_connect(server.url("/echo?id=bystander"))
    try:
        ws.send("before")
        assert ws.recv(timeout=TIMEOUT) == "before"
        yield
        ws.send("after")
        assert ws.recv(timeout=TIMEOUT) == "after"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=TIMEOUT) == b"\x00\xff"
    finally:
        ws.close()


def conn_id() -> str:
    """A fresh connection id for the ``?id=`` query."""
    return f"c{next(_ids)}"


def server_closes(server: Running, recorder: Recorder, cid: str) -> list[tuple[int, str]]:
    """The (code, reason) pairs the app's close handler saw for ``cid``,
    once it saw at least one."""
    return wait_for(lambda: server.call(lambda: list(recorder.closes.get(cid, ()))),
                    what=f"the close handler of {cid}")


def server_messages(server: Running, recorder: Recorder, cid: str) -> list[Any]:
    """The messages the app's message handler saw for ``cid`` so far."""
    return server.call(lambda: list(recorder.messages.get(cid, ())))


# ---------------------------------------------------------------------------- handshakes

class BadHandshake(NamedTuple):
    request: bytes
    status: int
    headers: dict[str, str] = {}     # exact values of key response headers
    # Answered with "Connection: close" and a TCP close; False for an HTTP
    # keep-alive answer, after which the connection must still speak HTTP.
    closes: bool = True


H = handshake_request

HANDSHAKE_FAILURES = {
    # RFC 6455 §4.1: the method must be GET. fastws answers 400, as §4.2.1
    # suggests for any handshake it cannot accept.
    "post-with-upgrade-headers": BadHandshake(H(method="POST"), 400),
    "http-1.0": BadHandshake(H(http="HTTP/1.0"), 400),
    "missing-host": BadHandshake(H(host=None), 400),
    # No Upgrade header: a plain GET on a WebSocket route.
    "upgrade-missing": BadHandshake(
        H(upgrade=None), 426,
        {"upgrade": "websocket", "sec-websocket-version": "13"}, closes=False),
    # Upgrade to something else: still not a WebSocket request.
    "upgrade-h2c": BadHandshake(
        H(upgrade="h2c"), 426,
        {"upgrade": "websocket", "sec-websocket-version": "13"}),
    "connection-without-upgrade-token": BadHandshake(
        H(connection="keep-alive"), 400, closes=False),
    "connection-missing": BadHandshake(H(connection=None), 400, closes=False),
    "key-missing": BadHandshake(H(key=None), 400),
    "key-not-base64": BadHandshake(H(key="not base64 at all!!"), 400),
    "key-15-bytes": BadHandshake(H(key="AAAAAAAAAAAAAAAAAAAA"), 400),
    "key-17-bytes": BadHandshake(H(key="AAAAAAAAAAAAAAAAAAAAAAA="), 400),
    "key-twice": BadHandshake(H(key=[RFC_KEY, new_key()]), 400),
    "key-list-in-one-header": BadHandshake(
        H(key=f"{RFC_KEY}, {new_key()}"), 400),
    "version-8": BadHandshake(H(version="8"), 426, {"sec-websocket-version": "13"}),
    "version-missing": BadHandshake(H(version=None), 426, {"sec-websocket-version": "13"}),
    "unknown-path": BadHandshake(H("/nowhere"), 404),
    "target-without-slash": BadHandshake(H("echo"), 400),
    "garbage-instead-of-http": BadHandshake(bytes(range(256)), 400),
    "url-too-long": BadHandshake(H("/echo?pad=" + "a" * MAX_URL), 414),
    "too-many-headers": BadHandshake(
        H(extra=[(f"X-Pad-{i}", "v") for i in range(MAX_HEADERS)]), 431),
    "header-too-large": BadHandshake(
        H(extra=[("X-Pad", "v" * MAX_HEADER_BYTES)]), 431),
    # Header injection and request smuggling shapes: llhttp in strict mode
    # refuses each one before any handler runs.
    "bare-lf-line-endings": BadHandshake(
        H().replace(b"\r\n", b"\n"), 400),
    "cr-inside-header-value": BadHandshake(
        H(extra=[("X-A", "a\rInjected: 1")]), 400),
    "lf-inside-key": BadHandshake(
        H(key=RFC_KEY + "\nX-Injected: 1"), 400),
    "nul-in-header-value": BadHandshake(H(extra=[("X-A", "a\x00b")]), 400),
    "space-before-colon": BadHandshake(H(extra=[("X-A ", "b")]), 400),
    "obs-fold-continuation": BadHandshake(
        H(extra=[("X-A", "a\r\n folded")]), 400),
    "content-length-and-chunked": BadHandshake(
        H(extra=[("Content-Length", "3"), ("Transfer-Encoding", "chunked")]), 400),
}


@pytest.mark.parametrize("case", HANDSHAKE_FAILURES.values(), ids=HANDSHAKE_FAILURES.keys())
def test_bad_handshake(server: Running, case: BadHandshake) -> None:
    with bystander(server), RawClient(server.port) as client:
        client.send(case.request)
        response = client.read_response()
        assert response.status == case.status, response
        for name, value in case.headers.items():
            assert response.header(name) == value, (name, response.headers)
        assert response.header("sec-websocket-accept") is None
        assert ("close" in response.tokens("connection")) == case.closes
        if case.closes:
            client.expect_eof()
        else:
            # A keep-alive answer: the connection must still speak HTTP.
            client.send(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            follow_up = client.read_response()
            assert (follow_up.status, follow_up.body) == (200, b"ok")
            client.expect_eof()


def echo_check(client: RawClient, text: str = "hello") -> None:
    """One masked text frame out, the same text back unmasked."""
    client.send(masked_frame(OP_TEXT, text))
    frame = client.read_frame()
    assert (frame.fin, frame.rsv, frame.opcode, frame.payload) == \
        (True, 0, OP_TEXT, text.encode())


def close_cleanly(client: RawClient) -> None:
    """Closing handshake started by the client, then the server's TCP close."""
    client.send(hand_frame(OP_CLOSE, close_payload(1000)))
    assert client.read_frame().close_code == 1000
    client.expect_eof()


def test_accept_key_of_the_rfc_example(server: Running) -> None:
    with bystander(server), RawClient(server.port) as client:
        client.send(H(key=RFC_KEY))
        response = client.read_response()
        assert response.status == 101
        assert accept_for(RFC_KEY) == RFC_ACCEPT     # our own arithmetic, against the RFC
        assert response.header("sec-websocket-accept") == RFC_ACCEPT
        assert response.header("upgrade").lower() == "websocket"
        assert "upgrade" in response.header("connection").lower()
        assert response.header("sec-websocket-protocol") is None
        assert response.header("sec-websocket-extensions") is None
        echo_check(client)
        close_cleanly(client)


GOOD_HANDSHAKES = {
    "connection-keep-alive-upgrade": {"connection": "keep-alive, Upgrade"},
    "connection-lowercase": {"connection": "upgrade"},
    "upgrade-mixed-case": {"upgrade": "WebSocket"},
    "host-with-port": {"host": "127.0.0.1:80"},
}


@pytest.mark.parametrize("variant", GOOD_HANDSHAKES.values(), ids=GOOD_HANDSHAKES.keys())
def test_good_handshake_variant(server: Running, variant: dict[str, str]) -> None:
    key = new_key()
    with bystander(server), RawClient(server.port) as client:
        client.send(H(key=key, **variant))
        response = client.read_response()
        assert response.status == 101, response
        assert response.header("sec-websocket-accept") == accept_for(key)
        echo_check(client)
        close_cleanly(client)


SUBPROTOCOL_CASES = {
    "one-we-speak": ("chat", "chat"),
    "server-preference-wins": ("chat, chat.v2", "chat.v2"),
    "none-we-speak": ("mqtt, soap", None),
    # A CRLF in the offer only makes a second header line; nothing of it may
    # reach the response but the subprotocol we chose ourselves.
    "injection-in-offer": ("chat\r\nSet-Cookie: stolen=1", "chat"),
}


@pytest.mark.parametrize("offer, chosen", SUBPROTOCOL_CASES.values(), ids=SUBPROTOCOL_CASES.keys())
def test_subprotocol_negotiation(server: Running, offer: str, chosen: str | None) -> None:
    key = new_key()
    with bystander(server), RawClient(server.port) as client:
        client.send(H(key=key, extra=[("Sec-WebSocket-Protocol", offer)]))
        response = client.read_response()
        assert response.status == 101
        assert response.header("sec-websocket-accept") == accept_for(key)
        assert response.header("sec-websocket-protocol") == chosen
        assert response.header("set-cookie") is None
        echo_check(client)
        close_cleanly(client)


def test_handshake_in_one_byte_writes(server: Running) -> None:
    key = new_key()
    with bystander(server), RawClient(server.port) as client:
        client.send_bytewise(H(key=key))
        response = client.read_response()
        assert response.status == 101
        assert response.header("sec-websocket-accept") == accept_for(key)
        echo_check(client)
        close_cleanly(client)


def test_frames_in_the_same_write_as_the_handshake(server: Running) -> None:
    # The first frame rides in the request's last TCP segment: it must reach
    # the WebSocket, not be lost with the HTTP parser.
    key = new_key()
    with bystander(server), RawClient(server.port) as client:
        client.send(H(key=key) + masked_frame(OP_TEXT, "early"))
        assert client.read_response().status == 101
        frame = client.read_frame()
        assert (frame.opcode, frame.payload) == (OP_TEXT, b"early")
        close_cleanly(client)


# ---------------------------------------------------------------------------- frames

def _length_top_bit() -> bytes:
    """A text frame header with the 64-bit length form and its top bit set."""
    return bytes([0x80 | OP_TEXT, 0x80 | 127]) + b"\x80" + b"\x00" * 7 + MASK_KEY


FRAME_FAILURES: dict[str, tuple[bytes, int]] = {
    "unmasked-text": (hand_frame(OP_TEXT, b"hi", masked=False), 1002),
    "unmasked-ping": (hand_frame(OP_PING, b"", masked=False), 1002),
    "rsv1": (hand_frame(OP_TEXT, b"hi", rsv=4), 1002),
    "rsv2": (hand_frame(OP_TEXT, b"hi", rsv=2), 1002),
    "rsv3": (hand_frame(OP_BINARY, b"hi", rsv=1), 1002),
    "rsv1-on-ping": (hand_frame(OP_PING, b"", rsv=4), 1002),
    **{f"opcode-{op}": (hand_frame(op, b"x"), 1002) for op in (3, 4, 5, 6, 7, 11, 15)},
    "ping-126-bytes": (hand_frame(OP_PING, b"p" * 126), 1002),
    "fragmented-ping": (hand_frame(OP_PING, b"p", fin=False), 1002),
    "fragmented-close": (hand_frame(OP_CLOSE, close_payload(1000), fin=False), 1002),
    "continuation-without-start": (masked_frame(OP_CONT, b"x"), 1002),
    "text-inside-fragmented-message": (
        masked_frame(OP_TEXT, "a", fin=False) + masked_frame(OP_TEXT, "b"), 1002),
    "binary-inside-fragmented-text": (
        hand_frame(OP_TEXT, b"a", fin=False) + hand_frame(OP_BINARY, b"b"), 1002),
    "length-top-bit-set": (_length_top_bit(), 1002),
    # Judged from the header alone: no payload is sent, none may be awaited.
    "oversized-frame-header-only": (masked_header(OP_TEXT, 2000), 1009),
    "oversized-64-bit-length-header-only": (masked_header(OP_BINARY, 1 << 40), 1009),
    "oversized-by-one-byte": (masked_frame(OP_BINARY, b"b" * (MAX_MESSAGE + 1)), 1009),
    "fragments-sum-over-limit": (
        masked_frame(OP_BINARY, b"b" * 600, fin=False) + masked_header(OP_CONT, 600), 1009),
    "invalid-utf8-text": (masked_frame(OP_TEXT, b"ok\xff"), 1007),
    "utf8-surrogate": (hand_frame(OP_TEXT, b"\xed\xa0\x80"), 1007),
    "utf8-overlong": (hand_frame(OP_TEXT, b"\xc0\xaf"), 1007),
    "utf8-truncated-at-end": (hand_frame(OP_TEXT, b"\xe2\x82"), 1007),
    # No final frame follows: the server must judge the bytes it has.
    "invalid-utf8-in-first-fragment": (masked_frame(OP_TEXT, b"ok\xff", fin=False), 1007),
    "invalid-utf8-across-fragments": (
        hand_frame(OP_TEXT, b"\xe2\x82", fin=False) + hand_frame(OP_CONT, b"(", fin=False), 1007),
    "close-1-byte-payload": (hand_frame(OP_CLOSE, b"\x03"), 1002),
    **{f"close-code-{code}": (hand_frame(OP_CLOSE, close_payload(code)), 1002)
       for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535)},
    "close-reason-invalid-utf8": (hand_frame(OP_CLOSE, close_payload(1000, b"bye\xff")), 1007),
}


@pytest.mark.parametrize("data, code", FRAME_FAILURES.values(), ids=FRAME_FAILURES.keys())
def test_bad_frame(server: Running, recorder: Recorder, data: bytes, code: int) -> None:
    cid = conn_id()
    with bystander(server), raw_upgrade(server.port, f"/echo?id={cid}") as client:
        client.send(data)
        frame = client.read_frame()
        assert (frame.fin, frame.opcode) == (True, OP_CLOSE), frame
        assert frame.close_code == code, frame.close_reason
        assert len(frame.payload) <= 125
        assert isinstance(frame.close_reason, str)     # decodes as UTF-8
        client.expect_eof()
    assert [c for c, _ in server_closes(server, recorder, cid)] == [code]
    assert server_messages(server, recorder, cid) == []


@pytest.mark.parametrize("code, reason", [(1000, b""), (1001, b"going away"), (3000, b""),
                                          (4999, "fin \N{SNOWMAN}".encode())])
def test_valid_close_is_echoed(server: Running, recorder: Recorder, code: int,
                               reason: bytes) -> None:
    cid = conn_id()
    with bystander(server), raw_upgrade(server.port, f"/echo?id={cid}") as client:
        client.send(hand_frame(OP_CLOSE, close_payload(code, reason)))
        frame = client.read_frame()
        assert (frame.fin, frame.opcode, frame.close_code) == (True, OP_CLOSE, code)
        client.expect_eof()
    assert server_closes(server, recorder, cid) == [(code, reason.decode())]


def test_empty_close_gets_empty_close(server: Running, recorder: Recorder) -> None:
    # fastws mirrors a close without a code with a close without a code
    # (1005 "no status" may not be put on the wire, RFC 6455 §7.4.1).
    cid = conn_id()
    with bystander(server), raw_upgrade(server.port, f"/echo?id={cid}") as client:
        client.send(hand_frame(OP_CLOSE))
        frame = client.read_frame()
        assert (frame.fin, frame.opcode, frame.payload) == (True, OP_CLOSE, b"")
        client.expect_eof()
    assert server_closes(server, recorder, cid) == [(1005, "")]


@pytest.mark.parametrize("payload", [b"", b"hello", bytes(range(125))], ids=["0", "5", "125"])
def test_ping_gets_pong_with_same_payload(server: Running, payload: bytes) -> None:
    with bystander(server), raw_upgrade(server.port) as client:
        client.send(hand_frame(OP_PING, payload))
        frame = client.read_frame()
        assert (frame.fin, frame.opcode, frame.payload) == (True, OP_PONG, payload)
        echo_check(client)
        close_cleanly(client)


def test_unsolicited_pong_is_ignored(server: Running) -> None:
    with bystander(server), raw_upgrade(server.port) as client:
        client.send(hand_frame(OP_PONG, b"nobody asked") + hand_frame(OP_PONG))
        echo_check(client, "still here")      # the next frame is the echo, not a close
        close_cleanly(client)


def test_control_frame_between_fragments(server: Running) -> None:
    with bystander(server), raw_upgrade(server.port) as client:
        client.send(hand_frame(OP_TEXT, b"frag", fin=False) + hand_frame(OP_PING, b"p")
                    + hand_frame(OP_CONT, b"mented", fin=False) + hand_frame(OP_CONT, b"!"))
        assert client.read_frame()[2:] == (OP_PONG, b"p")
        assert client.read_frame()[2:] == (OP_TEXT, b"fragmented!")
        close_cleanly(client)


def test_frames_in_one_byte_writes(server: Running) -> None:
    text = "h\N{EURO SIGN}llo".encode()        # a multi-byte character cut by the writes
    blob = bytes(range(256)) * 3               # the 16-bit length form
    with bystander(server), raw_upgrade(server.port) as client:
        client.send_bytewise(
            hand_frame(OP_TEXT, text[:2], fin=False) + hand_frame(OP_PING, b"mid")
            + hand_frame(OP_CONT, text[2:]) + hand_frame(OP_BINARY, blob)
            + masked_frame(OP_TEXT, "own encoder", key=b"\x01\x02\x03\x04"))
        assert client.read_frame()[2:] == (OP_PONG, b"mid")
        assert client.read_frame()[2:] == (OP_TEXT, text)
        assert client.read_frame()[2:] == (OP_BINARY, blob)
        assert client.read_frame()[2:] == (OP_TEXT, b"own encoder")
        client.send_bytewise(hand_frame(OP_CLOSE, close_payload(3001)))
        assert client.read_frame().close_code == 3001
        client.expect_eof()


def test_data_after_close_is_ignored(server: Running, recorder: Recorder) -> None:
    cid = conn_id()
    with bystander(server), raw_upgrade(server.port, f"/echo?id={cid}") as client:
        client.send(hand_frame(OP_CLOSE, close_payload(1000))
                    + masked_frame(OP_TEXT, "too late") + hand_frame(OP_PING, b"late"))
        assert client.read_frame().close_code == 1000
        client.expect_eof()                    # no echo, no pong
    assert server_closes(server, recorder, cid) == [(1000, "")]
    assert server_messages(server, recorder, cid) == []


def test_abrupt_tcp_close_reports_1006(server: Running, recorder: Recorder) -> None:
    cid = conn_id()
    with bystander(server):
        with raw_upgrade(server.port, f"/echo?id={cid}") as client:
            echo_check(client, "then vanish")
        # The socket is closed without a close frame.
        assert server_closes(server, recorder, cid) == [(1006, "")]
        assert server_messages(server, recorder, cid) == ["then vanish"]


def test_abrupt_reset_mid_frame_reports_1006(server: Running, recorder: Recorder) -> None:
    cid = conn_id()
    with bystander(server):
        client = raw_upgrade(server.port, f"/echo?id={cid}")
        client.send(masked_header(OP_BINARY, 500) + b"\x00" * 100)
        # SO_LINGER with a zero timeout: close() sends RST, not FIN.
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        assert server_closes(server, recorder, cid) == [(1006, "")]
        assert server_messages(server, recorder, cid) == []
