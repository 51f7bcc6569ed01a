"""Property-based fuzzing of the two places hostile bytes enter fastws.

Frame parser: random bytes and mutated valid streams, fed in random chunks,
never raise; they yield only well-formed events, ending in at most one
ERROR whose code is 1002, 1007 or 1009, after which the parser stays spent;
and the events do not depend on how the stream was chunked.

HTTP/upgrade path: random and mutated requests, sent to a live server over a
raw socket, get a status line we expect (or a bare close for a request the
client left incomplete), never a hang, never a 5xx, never an ERROR log;
the server answers a normal request after every example.

Bounded: a few hundred examples each, no deadline per example.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fastws import create_app, websocket
from fastws.ws._frame import (ERROR, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, FrameParser,
                           ProtocolError, is_valid_close_code)
from fastws.deflate.permessage import Inflater, Negotiated

from ..conftest import Running, serving
from ..integration.rawws import RFC_KEY, hand_frame
from .wire import read_to_close, send_then_half_close

FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
MAX_MESSAGE = 300
ERROR_CODES = {1002, 1007, 1009}


# ---------------------------------------------------------------- frame parser

@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One client frame: mostly well-formed (so streams get past their first
    frame), sometimes with reserved bits, no mask or an unknown opcode."""
    opcode = draw(st.sampled_from([0, 0, 1, 1, 1, 2, 2, 2, 8, 9, 10, 3, 11]))
    if opcode == 8:
        code = draw(st.sampled_from([1000, 1001, 1005, 1006, 3000, 4999, 999, 5000]))
        payload = draw(st.sampled_from([b"", struct.pack("!H", code),
                                        struct.pack("!H", code) + b"bye", b"\x03",
                                        struct.pack("!H", code) + b"\xff"]))
    else:
        size = draw(st.sampled_from([0, 3, 40, 125, 126, 200, 301, 700]))
        if opcode == 1 and draw(st.booleans()):
            text = draw(st.text(min_size=size // 4, max_size=size // 2 + 1))
            payload = text.encode("utf-8", "surrogatepass")
        else:
            payload = draw(st.binary(min_size=size, max_size=size))
    rare = st.integers(0, 9)
    return hand_frame(opcode, payload, fin=draw(rare) > 2,
                      rsv=draw(st.sampled_from([4, 2, 1])) if draw(rare) == 0 else 0,
                      masked=draw(rare) > 0,
                      key=draw(st.binary(min_size=4, max_size=4)))


@st.composite
def mutated(draw: st.DrawFn, stream: bytes) -> bytes:
    """``stream`` with a few random byte flips, deletions, insertions or a cut."""
    data = bytearray(stream)
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        if action == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif action == "delete":
            del data[i]
        elif action == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i:]
    return bytes(data)


streams = st.one_of(
    st.binary(max_size=600),
    st.lists(frames(), max_size=8).map(b"".join),
    st.lists(frames(), min_size=1, max_size=8).map(b"".join).flatmap(mutated),
)


def feed_in_chunks(parser: FrameParser, data: bytes, cuts: list[int]) -> list[tuple[int, Any]]:
    """Feed ``data`` split at ``cuts``; all events, in order."""
    events = []
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        events += parser.feed(data[start:cut])
        start = max(start, cut)
    return events


def check_events(events: list[tuple[int, Any]], parser: FrameParser) -> None:
    """Every event well-formed; at most one ERROR and only at the end."""
    for i, (kind, value) in enumerate(events):
        if kind == ERROR:
            assert i == len(events) - 1, "events after an ERROR"
            assert isinstance(value, ProtocolError) and value.code in ERROR_CODES, value
            assert isinstance(value.reason, str) and len(value.reason.encode()) <= 123
            assert parser.feed(b"\x81\x80\x00\x00\x00\x00") == [], "parser not spent after ERROR"
        elif kind == OP_TEXT:
            assert isinstance(value, str) and len(value.encode("utf-8")) <= MAX_MESSAGE
        elif kind == OP_BINARY:
            assert isinstance(value, bytes) and len(value) <= MAX_MESSAGE
        elif kind in (OP_PING, OP_PONG):
            assert isinstance(value, bytes) and len(value) <= 125
        elif kind == OP_CLOSE:
            code, reason = value
            assert code == 1005 or is_valid_close_code(code), code
            assert isinstance(reason, str) and (code != 1005 or reason == "")
        else:
            raise AssertionError(f"unknown event kind {kind!r}")


@FUZZ
@given(data=streams, cuts=st.lists(st.integers(0, 700), max_size=6))
def test_frame_parser_survives_anything(data: bytes, cuts: list[int]) -> None:
    parser = FrameParser(max_message_size=MAX_MESSAGE)
    events = feed_in_chunks(parser, data, cuts)
    check_events(events, parser)
    event(f"ends in {events[-1][1].code}" if events and events[-1][0] == ERROR else "no error")
    # Chunking is invisible: the same stream in one piece gives the same events.
    whole = FrameParser(max_message_size=MAX_MESSAGE).feed(data)
    assert [(k, v.code if k == ERROR else v) for k, v in whole] == \
        [(k, v.code if k == ERROR else v) for k, v in events]


@FUZZ
@given(data=streams, cuts=st.lists(st.integers(0, 700), max_size=6),
       takeover=st.booleans())
def test_frame_parser_with_deflate_survives_anything(data: bytes, cuts: list[int],
                                                     takeover: bool) -> None:
    # With permessage-deflate, RSV1 frames go through the inflater: invalid
    # or oversized compressed data must also end in one protocol ERROR.
    negotiated = Negotiated(server_no_context_takeover=True, client_no_context_takeover=not takeover,
                            server_max_window_bits=15, client_max_window_bits=15)
    parser = FrameParser(max_message_size=MAX_MESSAGE, inflater=Inflater(negotiated))
    events = feed_in_chunks(parser, data, cuts)
    check_events(events, parser)
    event(f"ends in {events[-1][1].code}" if events and events[-1][0] == ERROR else "no error")


# ---------------------------------------------------------------- HTTP / upgrade path

# 403: an upgrade whose Origin is not of the host it names (the default check).
EXPECTED_STATUSES = {101, 200, 204, 400, 403, 404, 405, 408, 413, 414, 426, 431}


class ErrorRecords(logging.Handler):
    """Collects the fastws logger's ERROR records (a crash would log one)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def live() -> Iterator[tuple[Running, ErrorRecords]]:
    """A server with WebSocket and HTTP routes, and its ERROR log."""
    app = create_app()
    app.use(websocket(max_message_size=1024, subprotocols=["chat"], handshake_timeout=5))
    app.ws("/ws", lambda ws: ws.on("message", ws.send))
    app.ws("/rooms/:room", lambda ws, ctx: ws.join(ctx.params["room"]))

    @app.get("/")
    def index():
        return "ok"

    @app.post("/body")
    async def body(ctx):
        return {"length": len(await ctx.body())}

    errors = ErrorRecords()
    logger = logging.getLogger("fastws")
    logger.addHandler(errors)
    try:
        with serving(app) as running:
            yield running, errors
    finally:
        logger.removeHandler(errors)


HEADER_POOL = [
    ("Host", "127.0.0.1"), ("Host", ""), ("Host", "a b"),
    ("Upgrade", "websocket"), ("Upgrade", "WebSocket, h2c"), ("Upgrade", "h2c"),
    ("Connection", "Upgrade"), ("Connection", "keep-alive, Upgrade"), ("Connection", "close"),
    ("Sec-WebSocket-Key", RFC_KEY), ("Sec-WebSocket-Key", "short"), ("Sec-WebSocket-Key", ""),
    ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Version", "8"), ("Sec-WebSocket-Version", "13, 8"),
    ("Sec-WebSocket-Protocol", "chat"), ("Sec-WebSocket-Protocol", ",,, chat ,"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=7"),
    ("Sec-WebSocket-Extensions", "permessage-deflate;;=; x=\"unterminated"),
    ("Origin", "http://evil.example"),
    ("Content-Length", "0"), ("Content-Length", "5"), ("Content-Length", "-1"),
    ("Content-Length", "99999999999999999999"), ("Content-Length", "5, 5"),
    ("Transfer-Encoding", "chunked"), ("Transfer-Encoding", "chunked, identity"),
    ("Transfer-Encoding", " chunked"), ("Transfer-Encoding", "xchunked"),
    ("Expect", "100-continue"), ("X-Long", "v" * 3000),
]

header_names = st.text(st.characters(codec="latin-1", exclude_characters="\r\n"), max_size=12)
header_values = st.text(st.characters(codec="latin-1"), max_size=30)


HANDSHAKE = [("Host", "127.0.0.1"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
             ("Sec-WebSocket-Key", RFC_KEY), ("Sec-WebSocket-Version", "13")]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """A request line, headers (often a complete handshake, with some of it
    dropped, plus real ones, repeats and junk), maybe a body."""
    if draw(st.booleans()):         # a sane request line, so the headers get judged
        method, version = "GET", "HTTP/1.1"
        target = draw(st.sampled_from(["/ws", "/rooms/a", "/", "/nowhere", "/ws?x=%ff"]))
    else:
        method = draw(st.sampled_from(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS",
                                       "CONNECT", "PRI", "G\x00T", "get", ""]))
        target = draw(st.sampled_from(["/ws", "/", "/body", "/rooms/", "/nowhere", "*",
                                       "http://127.0.0.1/ws", "/%00", "ws", "/" + "a" * 9000, ""]))
        version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1 ",
                                        "HTTP/9.9", "HTTP/1", ""]))
    headers = []
    if draw(st.booleans()):
        headers = [h for h in HANDSHAKE if draw(st.integers(0, 9)) > 0]
    headers += draw(st.lists(st.one_of(st.sampled_from(HEADER_POOL),
                                       st.tuples(header_names, header_values)), max_size=6))
    headers = draw(st.permutations(headers))
    eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n", "\r"]))
    head = eol.join([f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in headers])
    body = draw(st.sampled_from([b"", b"", b"hello", b"5\r\nhello\r\n0\r\n\r\n",
                                 b"\x81\x85abcd" + bytes(b ^ 0x61 for b in b"hello")]))
    return (head + eol + eol).encode("latin-1") + body


http_inputs = st.one_of(
    st.binary(max_size=300),
    requests(),
    requests().flatmap(mutated),
)

STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")


def exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, half-close, and read until the server closes.
    A server that hangs trips the socket timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        send_then_half_close(sock, data)
        try:
            return read_to_close(sock)
        except socket.timeout:
            raise AssertionError(f"server hung on {data[:200]!r}") from None


@FUZZ
@given(data=http_inputs)
def test_http_and_upgrade_path_survives_anything(live: tuple[Running, ErrorRecords],
                                                 data: bytes) -> None:
    server, errors = live
    answer = exchange(server.port, data)
    # "Expect: 100-continue" with a body gets the interim 100 first: judge
    # the final answer that follows it.
    while answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        answer = answer[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    if answer:
        match = STATUS_LINE.match(answer)
        assert match, f"not an HTTP status line: {answer[:200]!r} for {data[:200]!r}"
        assert int(match.group(1)) in EXPECTED_STATUSES, (answer[:300], data[:300])
        event(f"status {match.group(1).decode()}")
    else:
        event("closed without an answer")
    assert not errors.records, [r.getMessage() for r in errors.records]
    # The server still answers a normal request.
    ok = exchange(server.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert ok.startswith(b"HTTP/1.1 200 ") and ok.endswith(b"ok"), ok


# ---------------------------------------------------------------- atheris (coverage-guided)

@pytest.mark.slow
@pytest.mark.parametrize("target", ["frames", "upgrade", "head"])
def test_atheris_targets_bounded_run(target: str, tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    script = Path(__file__).with_name("fuzz_atheris.py")
    proc = subprocess.run([sys.executable, str(script), target, "-max_total_time=20",
                           "-runs=2000000", "-print_final_stats=1"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180)
    crashes = list(tmp_path.glob("crash-*"))
    assert proc.returncode == 0 and not crashes, (proc.returncode, crashes, proc.stderr[-3000:])
