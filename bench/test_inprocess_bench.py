"""In-process benchmarks of fastws's hot path: room broadcast and JSON event dispatch.

Two kinds of pytest-benchmark groups, each one table of ``python
bench/test_inprocess_bench.py`` (which runs this file and prints markdown):

* ``broadcast ...``: one message to a room of 1,000 connections whose
  transports are stand-ins (``MockTransport``, its ``write`` a C builtin), so
  no socket and no kernel are timed. One timed call for fastws is
  ``app.broadcast(room, msg)`` plus the flush that the event loop would run
  next (the hub's ``Flusher.run``): the whole cost until every member's frame has been
  handed to its transport. The table divides by 1,000: ns per recipient.
  Peers, each through the API a server built on it uses for a room:
  ``websockets.asyncio.server.broadcast`` over 1,000 ``ServerConnection``
  objects; picows's ``WSTransport.send`` in a loop (what a picows app
  writes); and a "naive" Python loop writing one pre-encoded frame to each
  transport, the floor for any per-recipient Python loop.
  The ``deflate`` group sends a 1 KiB JSON chat message with permessage-deflate
  negotiated on every connection: fastws compresses once per room (no
  server context takeover); websockets, with its server defaults (12-bit
  window, memLevel 5, context takeover), compresses once per connection.
* ``dispatch ...``: one masked client text frame
  ``{"type":"join-room","room":"general"}`` fed to a WebSocket's
  ``data_received``: routed by its "type" to a "join-room" handler (JSON
  events), to a plain "message" handler (JSON events on, so fastws still
  looks inside), to a "message" handler with ``json_events=False``, and to a
  "message" handler that parses and routes the JSON itself (what an app
  without JSON events writes). ns per message.

Each case checks its result once before it is timed (every transport got the
right frame, the handler got the right value), so a fast wrong answer fails.
Nothing here asserts a duration.
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fastws import create_app, websocket
from fastws._frame import encode_frame
from fastws.compression import Negotiated
from fastws.hub import acquire_hub
from fastws.websocket import WebSocket

ROOM_SIZE = 1_000
ROOM = "general"
OP_TEXT = 0x1
MASK_KEY = bytes((0x37, 0xFA, 0x21, 0x3D))

# A 64-byte chat message (the size of the fan-out comparison), sent as text.
SMALL_MESSAGE = '{"type":"chat","user":"ada","text":"see you at the stand-up!!!"}'
assert len(SMALL_MESSAGE) == 64

BROADCAST_GROUP = f"broadcast 64 B to {ROOM_SIZE:,}"
DEFLATE_GROUP = f"broadcast 1 KiB JSON to {ROOM_SIZE:,}, deflate"
DISPATCH_GROUP = "dispatch one JSON text frame"

_WORDS = ("the", "meeting", "moved", "to", "thursday", "so", "we", "can", "review",
          "release", "notes", "and", "load", "test", "results", "before", "ship",
          "anything", "new", "production", "please", "check", "your", "calendar", "tell",
          "me", "if", "that", "time", "does", "not", "work", "for", "you", "I", "will",
          "book", "large", "room", "again", "bring", "coffee", "everyone", "who", "joins",
          "early")
_USERS = ("ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances")


def chat_message(rng: random.Random, size: int = 1024) -> str:
    """A JSON chat message of exactly ``size`` bytes whose text is word salad
    drawn from a small vocabulary: it compresses about as well as real chat."""
    head = {"type": "chat", "room": ROOM, "user": rng.choice(_USERS),
            "id": f"{rng.getrandbits(64):016x}", "ts": 1764140000000 + rng.randrange(10**6)}
    prefix = json.dumps(head, separators=(",", ":"))[:-1] + ',"text":"'
    room = size - len(prefix) - 2
    words: list[str] = []
    while sum(map(len, words)) + len(words) < room:
        words.append(rng.choice(_WORDS))
    text = " ".join(words)[:room]
    out = prefix + text + '"}'
    assert len(out) == size
    return out


DEFLATE_MESSAGE = chat_message(random.Random(20261126))


class MockTransport:
    """An asyncio transport stand-in that keeps only the last write.

    ``write`` is a bound C builtin (``deque.append``), so the transport costs
    next to nothing, as uvloop's C transports cost little: what is timed is
    the library's own per-recipient work.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sink: collections.deque[Any] = collections.deque(maxlen=1)
        self.write = self._sink.append
        self._extra = {"socket": sock, "peername": ("127.0.0.1", 1),
                       "sockname": ("127.0.0.1", 2), "ssl_object": None}
        self.closed = False

    def last(self) -> bytes:
        """The most recent write (b"" before the first)."""
        return bytes(self._sink[0]) if self._sink else b""

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Socket details; picows asks for the socket and the SSL object."""
        return self._extra.get(name, default)

    def is_closing(self) -> bool:
        """Never closing: the benchmark keeps every connection open."""
        return self.closed

    def get_write_buffer_size(self) -> int:
        """Always 1: a non-empty buffer makes picows queue through ``write``
        instead of calling ``send()`` on a socket that is not connected."""
        return 1

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Accepted and ignored: nothing is ever buffered."""

    def pause_reading(self) -> None:
        """Accepted and ignored: no data arrives."""

    def resume_reading(self) -> None:
        """Accepted and ignored: no data arrives."""

    def can_write_eof(self) -> bool:
        """websockets asks before half-closing."""
        return True

    def close(self) -> None:
        """Mark closed (only used at teardown)."""
        self.closed = True

    def abort(self) -> None:
        """Mark closed (only used at teardown)."""
        self.closed = True


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A uvloop loop (asyncio's when uvloop is missing), as the servers use.

    Connections are built inside it; the timed calls run outside it, and the
    flush callbacks fastws schedules meanwhile are drained at teardown.
    """
    try:
        import uvloop
        lp = uvloop.new_event_loop()
    except ImportError:
        lp = asyncio.new_event_loop()
    yield lp
    lp.run_until_complete(asyncio.sleep(0))
    lp.close()


def inside(loop: asyncio.AbstractEventLoop, fn: Callable[[], Any]) -> Any:
    """Call ``fn`` with ``loop`` running (constructors that want a running loop)."""
    async def call() -> Any:
        return fn()
    return loop.run_until_complete(call())


def text_frame(payload: str) -> bytes:
    """The server frame every recipient must get for a text message."""
    return encode_frame(OP_TEXT, payload)


# ---------------------------------------------------------------- broadcast

@dataclass(frozen=True)
class Broadcast:
    """``run()`` sends the message to the whole room once; ``transports`` are
    the members' transports, each of which must then hold ``frame``; a
    frame that depends on the connection (context takeover) is None and
    ``check`` verifies what each transport got instead."""

    run: Callable[[], Any]
    transports: list[MockTransport]
    frame: bytes | None
    check: Callable[[], None] | None = None


def _inflates_to(raw: bytes, bits: int, message: str) -> bool:
    """True when ``raw`` is one compressed text frame (RSV1) of ``message``."""
    import zlib
    if raw[0] != 0xC1:                 # FIN, RSV1, text
        return False
    n = raw[1] & 127
    off = 2 if n < 126 else 4
    body = zlib.decompressobj(-bits).decompress(raw[off:] + b"\x00\x00\xff\xff")
    return body == message.encode()


def _fastws_room(loop: asyncio.AbstractEventLoop, sock: socket.socket, message: str,
                 negotiated: Negotiated | None) -> Broadcast:
    app = create_app()
    app.use(websocket(ping_interval=None, compression=negotiated is not None))
    # The runtime a server makes for the app on this loop.
    hub = acquire_hub(app, app.ws_options, loop)
    transports = [MockTransport(sock) for _ in range(ROOM_SIZE)]

    def build() -> list[WebSocket]:
        # As protocol.py's _switch builds them after an upgrade.
        return [WebSocket(hub.shared, t, negotiated=negotiated) for t in transports]
    sockets = inside(loop, build)
    for ws in sockets:
        ws.join(ROOM)
    broadcast, flush = app.broadcast, hub.flusher.run

    def run() -> None:
        broadcast(ROOM, message)
        flush()

    if negotiated is None:
        frame = text_frame(message)
    else:
        from fastws.compression import Deflater
        data, rsv1 = Deflater(negotiated).encode(message.encode())
        frame = encode_frame(OP_TEXT, data, True, rsv1)
        assert _inflates_to(frame, 15, message)
    # The room and the sockets must outlive the benchmark: keep them referenced.
    run.keep = (app, hub, sockets)  # type: ignore[attr-defined]
    return Broadcast(run, transports, frame)


def _broadcast_fastws(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    return _fastws_room(loop, sock, SMALL_MESSAGE, None)


def _deflate_fastws(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    # What fastws agrees with a browser by default: no context takeover either way.
    return _fastws_room(loop, sock, DEFLATE_MESSAGE, Negotiated(True, True, 15, 15))


def _websockets_room(loop: asyncio.AbstractEventLoop, sock: socket.socket, message: str,
                     deflate: bool) -> Broadcast:
    server_mod = pytest.importorskip("websockets.asyncio.server")
    connection_mod = pytest.importorskip("websockets.asyncio.connection")
    protocol_mod = pytest.importorskip("websockets.protocol")
    ws_server = pytest.importorskip("websockets.server")
    transports = [MockTransport(sock) for _ in range(ROOM_SIZE)]

    def build() -> list[Any]:
        conns = []
        for t in transports:
            proto = ws_server.ServerProtocol(state=protocol_mod.State.OPEN)
            if deflate:
                pmd = pytest.importorskip("websockets.extensions.permessage_deflate")
                # websockets' server defaults (enable_server_permessage_deflate)
                # answering a browser's offer: context takeover both ways.
                proto.extensions = [pmd.PerMessageDeflate(False, False, 12, 12,
                                                          {"memLevel": 5})]
            conn = server_mod.ServerConnection(proto, None)
            # The base class's connection_made: ServerConnection's own would
            # start a handler task for the opening handshake, long done here.
            connection_mod.Connection.connection_made(conn, t)
            conns.append(conn)
        return conns
    conns = inside(loop, build)
    send_all = server_mod.broadcast

    def run() -> None:
        send_all(conns, message)

    run.keep = conns  # type: ignore[attr-defined]
    if not deflate:
        return Broadcast(run, transports, text_frame(message))

    def check() -> None:
        # Each connection's frame depends on its own history; the first
        # message of each context is readable by a fresh inflater.
        assert all(_inflates_to(t.last(), 12, message) for t in transports)
    return Broadcast(run, transports, None, check)


def _broadcast_websockets(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    return _websockets_room(loop, sock, SMALL_MESSAGE, False)


def _deflate_websockets(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    return _websockets_room(loop, sock, DEFLATE_MESSAGE, True)


def _broadcast_picows(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    picows = pytest.importorskip("picows")
    picows_ext = pytest.importorskip("picows.picows")
    transports = [MockTransport(sock) for _ in range(ROOM_SIZE)]
    logger = logging.getLogger("bench.picows")
    members = [picows_ext.WSTransport(False, t, logger, loop) for t in transports]
    payload = SMALL_MESSAGE.encode()
    kind = picows.WSMsgType.TEXT

    def run() -> None:
        # bench/servers/picows_server.py's fan-out loop.
        for member in members:
            member.send(kind, payload)

    frame = text_frame(SMALL_MESSAGE)
    return Broadcast(run, transports, frame)


def _broadcast_naive(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    transports = [MockTransport(sock) for _ in range(ROOM_SIZE)]
    frame = text_frame(SMALL_MESSAGE)

    def run() -> None:
        for t in transports:
            t.write(frame)

    return Broadcast(run, transports, frame)


# test id -> (group, library, maker)
BROADCAST_CASES: dict[str, tuple[str, str, Callable[[Any, socket.socket], Broadcast]]] = {
    "fastws app.broadcast + flush": (BROADCAST_GROUP, "fastws", _broadcast_fastws),
    "websockets broadcast()": (BROADCAST_GROUP, "websockets", _broadcast_websockets),
    "picows WSTransport.send loop": (BROADCAST_GROUP, "picows", _broadcast_picows),
    "naive loop of transport.write": (BROADCAST_GROUP, "naive Python loop", _broadcast_naive),
    "fastws deflate, compress once": (DEFLATE_GROUP, "fastws", _deflate_fastws),
    "websockets deflate, per connection": (DEFLATE_GROUP, "websockets", _deflate_websockets),
}


@pytest.mark.parametrize("case", list(BROADCAST_CASES))
def test_broadcast(benchmark: Any, loop: asyncio.AbstractEventLoop, idle_socket: socket.socket,
                   case: str) -> None:
    """One message to a room of 1,000 stand-in transports, flushed."""
    group, library, make = BROADCAST_CASES[case]
    bc = make(loop, idle_socket)
    bc.run()
    if bc.check is not None:
        bc.check()
    else:
        assert all(t.last() == bc.frame for t in bc.transports)
    benchmark.group = group
    benchmark.extra_info.update(library=library, api=case, recipients=ROOM_SIZE)
    benchmark(bc.run)


# ---------------------------------------------------------------- dispatch

EVENT_TEXT = '{"type":"join-room","room":"general"}'


def _client_text_frame(text: str) -> bytes:
    """One masked client text frame (payload under 126 bytes), masked in Python."""
    data = text.encode()
    assert len(data) < 126
    masked = bytes(b ^ MASK_KEY[i & 3] for i, b in enumerate(data))
    return bytes((0x80 | OP_TEXT, 0x80 | len(data))) + MASK_KEY + masked


CLIENT_FRAME = _client_text_frame(EVENT_TEXT)


@dataclass(frozen=True)
class Dispatch:
    """``run()`` feeds CLIENT_FRAME to one WebSocket; ``seen()`` is the value
    the handler got last, ``want`` what it must be."""

    run: Callable[[], Any]
    seen: Callable[[], Any]
    want: Any


def _socket(loop: asyncio.AbstractEventLoop, sock: socket.socket, json_events: bool) -> WebSocket:
    app = create_app()
    app.use(websocket(ping_interval=None, json_events=json_events))
    hub = acquire_hub(app, app.ws_options, loop)
    return inside(loop, lambda: WebSocket(hub.shared, MockTransport(sock)))


def _recorder() -> tuple[Callable[[Any], None], Callable[[], Any]]:
    last: collections.deque[Any] = collections.deque(maxlen=1)

    def handler(value: Any) -> None:
        last.append(value)
    return handler, lambda: last[0]


def _dispatch_event(loop: Any, sock: socket.socket) -> Dispatch:
    ws = _socket(loop, sock, True)
    handler, seen = _recorder()
    ws.on("join-room", handler)
    return Dispatch(lambda: ws.data_received(CLIENT_FRAME), seen, "general")


def _dispatch_message(loop: Any, sock: socket.socket) -> Dispatch:
    ws = _socket(loop, sock, True)
    handler, seen = _recorder()
    ws.on("message", handler)
    return Dispatch(lambda: ws.data_received(CLIENT_FRAME), seen, EVENT_TEXT)


def _dispatch_plain(loop: Any, sock: socket.socket) -> Dispatch:
    ws = _socket(loop, sock, False)
    handler, seen = _recorder()
    ws.on("message", handler)
    return Dispatch(lambda: ws.data_received(CLIENT_FRAME), seen, EVENT_TEXT)


def _dispatch_by_hand(loop: Any, sock: socket.socket) -> Dispatch:
    ws = _socket(loop, sock, False)
    handler, seen = _recorder()
    routes = {"join-room": handler}
    loads = json.loads

    def on_message(text: str) -> None:
        obj = loads(text)
        routes[obj.pop("type")](obj["room"])
    ws.on("message", on_message)
    return Dispatch(lambda: ws.data_received(CLIENT_FRAME), seen, "general")


# test id -> (row label, maker)
DISPATCH_CASES: dict[str, tuple[str, Callable[[Any, socket.socket], Dispatch]]] = {
    "json event handler": ('"join-room" handler (JSON events)', _dispatch_event),
    "message handler, json_events on": ('"message" handler, json_events=True',
                                        _dispatch_message),
    "message handler, json_events off": ('"message" handler, json_events=False',
                                         _dispatch_plain),
    "message handler parsing JSON itself": (('"message" handler doing json.loads + dict '
                                             'routing, json_events=False'), _dispatch_by_hand),
}


@pytest.mark.parametrize("case", list(DISPATCH_CASES))
def test_dispatch(benchmark: Any, loop: asyncio.AbstractEventLoop, idle_socket: socket.socket,
                  case: str) -> None:
    """One masked text frame through data_received to its handler."""
    label, make = DISPATCH_CASES[case]
    d = make(loop, idle_socket)
    d.run()
    assert d.seen() == d.want
    benchmark.group = DISPATCH_GROUP
    benchmark.extra_info.update(library=label, api=case, messages=1)
    benchmark(d.run)
    assert d.seen() == d.want


# ---------------------------------------------------------------- table

def _versions() -> str:
    import platform
    from importlib import metadata
    parts = [f"Python {platform.python_version()}"]
    for name in ("fastws", "uvloop", "websockets", "picows"):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def render(data: dict[str, Any]) -> str:
    """Markdown tables from a pytest-benchmark JSON run of this file."""
    rows: dict[str, list[tuple[str, str, float]]] = collections.defaultdict(list)
    for b in data["benchmarks"]:
        info = b["extra_info"]
        per = b["stats"]["min"] / info.get("recipients", info.get("messages", 1))
        rows[b["group"]].append((info["library"], info["api"], per * 1e9))
    out: list[str] = []
    for group in (BROADCAST_GROUP, DEFLATE_GROUP, DISPATCH_GROUP):
        if group not in rows:
            continue
        unit = "ns per recipient" if group != DISPATCH_GROUP else "ns per message"
        base = next((ns for lib, _, ns in rows[group] if lib == "fastws"), None)
        if group == DISPATCH_GROUP:
            base = rows[group][0][2] if rows[group] else None
        out += [f"{group} ({unit}, fastest round):", "",
                "| library | what is called | " + unit + " | × first row |",
                "| --- | --- | ---: | ---: |"]
        order = list(BROADCAST_CASES) + list(DISPATCH_CASES)
        for lib, api, ns in sorted(rows[group], key=lambda r: order.index(r[1])):
            ratio = f"{ns / base:.2f}×" if base else "–"
            out.append(f"| {lib} | {api} | {ns:,.1f} | {ratio} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    """Run this file under pytest-benchmark and print the tables."""
    import subprocess
    import tempfile
    from pathlib import Path
    here = Path(__file__).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "inprocess.json"
        cmd = [sys.executable, "-m", "pytest", str(here), "-q", "-p", "no:cacheprovider",
               "--benchmark-only", "--benchmark-group-by=group", "--benchmark-sort=min",
               f"--benchmark-json={out}", *argv]
        print("$", " ".join(cmd), file=sys.stderr)
        rc = subprocess.run(cmd, cwd=here.parent.parent, stdout=sys.stderr,
                            check=False).returncode
        if rc or not out.exists():
            return rc or 1
        data = json.loads(out.read_text())
    print(f"In-process benchmarks ({data['datetime'][:19]}, {_versions()})\n")
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
