"""In-process benchmarks of fastws's hot path: room broadcast, JSON event dispatch,
and the two together (a JSON chat message in, its reply out to a room).

pytest-benchmark groups, each one table of ``python bench/test_inprocess_bench.py``
(which runs this file and prints markdown):

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
* ``many rooms ...``: 2,000 rooms of 5 (10,000 connections), one 64-byte
  message broadcast to each room per timed call, then the flush: the shape
  of a chat service with many small rooms, where what a broadcast costs
  before its first recipient (finding the room, framing the message) is
  paid once per 5 deliveries. ns per delivered message. Same peers as the
  big room, each once per room; the naive loop frames each room's message
  once (``encode_frame``) and writes it to the five.
* ``JSON chat ...``: one masked client text frame
  ``{"type":"message","content":"hello there"}`` taken in by the sender,
  whose "message" handler (by the JSON event rule it receives "hello
  there") broadcasts ``{"user", "message", "timestamp"}`` to the 5 other
  members of its room: decode, dispatch, encode, frame, deliver. fastws
  with the stdlib json and with orjson (skipped when orjson is missing);
  websockets (its sans-I/O ``ServerProtocol``, then ``json.loads``, the
  dict, ``json.dumps``, ``broadcast()``), picows (its parser and a Python
  listener doing the same, then a send loop), and a floor: the same JSON
  work on the already-decoded text, one ``encode_frame`` and five writes.
  ns per chat message.

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
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fastws import create_app, websocket
from fastws.ws._frame import encode_frame
from fastws.deflate.permessage import Negotiated
from fastws.runtime.hub import acquire_hub
from fastws.runtime._websocket import WebSocket

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

# Many small rooms: the shape of a chat service rather than of one big channel.
MANY_ROOMS = 2_000
MANY_ROOM_SIZE = 5
MANY_RECIPIENTS = MANY_ROOMS * MANY_ROOM_SIZE
MANY_ROOMS_GROUP = f"many rooms: 64 B to each of {MANY_ROOMS:,} rooms of {MANY_ROOM_SIZE}"
CHAT_GROUP = "JSON chat: one event in, a dict to 5"

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
    recipients: int = ROOM_SIZE


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
        from fastws.deflate.permessage import Deflater
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


def _websockets_connections(loop: asyncio.AbstractEventLoop, transports: list[MockTransport],
                            deflate: bool = False) -> list[Any]:
    """One open websockets ``ServerConnection`` per transport, as its server
    holds them once the handshake is done."""
    server_mod = pytest.importorskip("websockets.asyncio.server")
    connection_mod = pytest.importorskip("websockets.asyncio.connection")
    protocol_mod = pytest.importorskip("websockets.protocol")
    ws_server = pytest.importorskip("websockets.server")

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
    return inside(loop, build)


def _websockets_room(loop: asyncio.AbstractEventLoop, sock: socket.socket, message: str,
                     deflate: bool) -> Broadcast:
    server_mod = pytest.importorskip("websockets.asyncio.server")
    transports = [MockTransport(sock) for _ in range(ROOM_SIZE)]
    conns = _websockets_connections(loop, transports, deflate)
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


# ---------------------------------------------------------------- many rooms

def _fastws_runtime(loop: asyncio.AbstractEventLoop, **options: Any) -> tuple[Any, Any]:
    """An app with ``websocket(ping_interval=None, **options)`` and the runtime
    a server makes for it on ``loop``: (app, hub)."""
    app = create_app()
    app.use(websocket(ping_interval=None, **options))
    return app, acquire_hub(app, app.ws_options, loop)


def _fastws_sockets(loop: asyncio.AbstractEventLoop, hub: Any,
                    transports: list[MockTransport]) -> list[WebSocket]:
    """One open fastws ``WebSocket`` per transport, built as protocol.py builds
    them after an upgrade."""
    return inside(loop, lambda: [WebSocket(hub.shared, t) for t in transports])


def _small_rooms(sock: socket.socket) -> list[list[MockTransport]]:
    """MANY_ROOMS lists of MANY_ROOM_SIZE fresh transports."""
    return [[MockTransport(sock) for _ in range(MANY_ROOM_SIZE)] for _ in range(MANY_ROOMS)]


def _flat(rooms: list[list[MockTransport]]) -> list[MockTransport]:
    return [t for room in rooms for t in room]


def _many_fastws(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 from_member: bool) -> Broadcast:
    app, hub = _fastws_runtime(loop)
    rooms = _small_rooms(sock)
    names = [f"room-{i}" for i in range(MANY_ROOMS)]
    sockets = _fastws_sockets(loop, hub, _flat(rooms))
    for i, ws in enumerate(sockets):
        ws.join(names[i // MANY_ROOM_SIZE])
    flush = hub.flusher.run
    if from_member:
        # What a handler writes: a member's own socket, which knows its runtime.
        calls = [(sockets[i * MANY_ROOM_SIZE].broadcast_all, name)
                 for i, name in enumerate(names)]
    else:
        calls = [(app.broadcast, name) for name in names]
    set_running = asyncio.events._set_running_loop

    def run() -> None:
        # As on the serving loop (a task or callback there), without running
        # it: app.broadcast looks up the hub of the running loop, and outside
        # any loop it takes a slower path that no server takes.
        set_running(loop)
        try:
            for broadcast, name in calls:
                broadcast(name, SMALL_MESSAGE)
        finally:
            set_running(None)
        # Then the one flush the loop runs after them: each member still
        # leaves in one write.
        flush()

    run.keep = (app, hub, sockets)  # type: ignore[attr-defined]
    return Broadcast(run, _flat(rooms), text_frame(SMALL_MESSAGE), recipients=MANY_RECIPIENTS)


def _many_fastws_app(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    return _many_fastws(loop, sock, False)


def _many_fastws_member(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    return _many_fastws(loop, sock, True)


def _many_websockets(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    server_mod = pytest.importorskip("websockets.asyncio.server")
    rooms = _small_rooms(sock)
    conns = _websockets_connections(loop, _flat(rooms))
    groups = [conns[i:i + MANY_ROOM_SIZE] for i in range(0, len(conns), MANY_ROOM_SIZE)]
    send_all = server_mod.broadcast

    def run() -> None:
        for members in groups:
            send_all(members, SMALL_MESSAGE)

    run.keep = conns  # type: ignore[attr-defined]
    return Broadcast(run, _flat(rooms), text_frame(SMALL_MESSAGE), recipients=MANY_RECIPIENTS)


def _many_picows(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    picows = pytest.importorskip("picows")
    picows_ext = pytest.importorskip("picows.picows")
    rooms = _small_rooms(sock)
    logger = logging.getLogger("bench.picows")
    groups = [[picows_ext.WSTransport(False, t, logger, loop) for t in room] for room in rooms]
    kind = picows.WSMsgType.TEXT

    def run() -> None:
        # A picows app's room relay (bench/servers/picows_server.py), once per room;
        # the payload is encoded per room, as each room's message would be its own.
        for members in groups:
            payload = SMALL_MESSAGE.encode()
            for member in members:
                member.send(kind, payload)

    return Broadcast(run, _flat(rooms), text_frame(SMALL_MESSAGE), recipients=MANY_RECIPIENTS)


def _many_naive(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Broadcast:
    rooms = _small_rooms(sock)

    def run() -> None:
        # Frame each room's message once (fastws's encoder), write it to the five.
        for members in rooms:
            frame = encode_frame(OP_TEXT, SMALL_MESSAGE)
            for t in members:
                t.write(frame)

    return Broadcast(run, _flat(rooms), text_frame(SMALL_MESSAGE), recipients=MANY_RECIPIENTS)


# test id -> (group, library, maker)
BROADCAST_CASES: dict[str, tuple[str, str, Callable[[Any, socket.socket], Broadcast]]] = {
    "fastws app.broadcast + flush": (BROADCAST_GROUP, "fastws", _broadcast_fastws),
    "websockets broadcast()": (BROADCAST_GROUP, "websockets", _broadcast_websockets),
    "picows WSTransport.send loop": (BROADCAST_GROUP, "picows", _broadcast_picows),
    "naive loop of transport.write": (BROADCAST_GROUP, "naive Python loop", _broadcast_naive),
    "fastws deflate, compress once": (DEFLATE_GROUP, "fastws", _deflate_fastws),
    "websockets deflate, per connection": (DEFLATE_GROUP, "websockets", _deflate_websockets),
    "fastws app.broadcast per room + flush": (MANY_ROOMS_GROUP, "fastws", _many_fastws_app),
    "fastws ws.broadcast_all per room (a member's) + flush": (MANY_ROOMS_GROUP, "fastws",
                                                              _many_fastws_member),
    "websockets broadcast() per room": (MANY_ROOMS_GROUP, "websockets", _many_websockets),
    "picows WSTransport.send loop per room": (MANY_ROOMS_GROUP, "picows", _many_picows),
    "naive: encode_frame + transport.write loop per room": (MANY_ROOMS_GROUP,
                                                            "naive Python loop", _many_naive),
}


@pytest.mark.parametrize("case", list(BROADCAST_CASES))
def test_broadcast(benchmark: Any, loop: asyncio.AbstractEventLoop, idle_socket: socket.socket,
                   case: str) -> None:
    """One message to a room of 1,000 stand-in transports (or one to each of
    2,000 rooms of 5), flushed."""
    group, library, make = BROADCAST_CASES[case]
    bc = make(loop, idle_socket)
    bc.run()
    assert len(bc.transports) == bc.recipients
    if bc.check is not None:
        bc.check()
    else:
        assert all(t.last() == bc.frame for t in bc.transports)
    benchmark.group = group
    benchmark.extra_info.update(library=library, api=case, recipients=bc.recipients)
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


# ---------------------------------------------------------------- JSON chat

CHAT_TEXT = '{"type":"message","content":"hello there"}'
CHAT_FRAME = _client_text_frame(CHAT_TEXT)
CHAT_USER = "ada"
CHAT_MEMBERS = 5


def _now_ms() -> int:
    """The reply's timestamp: milliseconds since the epoch, as JavaScript's
    ``Date.now()``. (An ISO 8601 string, as the bench servers write, costs
    about a microsecond more to format, the same for every row.)"""
    return time.time_ns() // 1_000_000


def _reply_by_hand(user: str, data: str | bytes) -> str | None:
    """The chat step of an app without JSON events, as the bench servers'
    ``common.chat_reply`` does it: parse the event, check its type, build the
    reply and serialize it once for the room. None for anything else."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if type(event) is not dict or event.get("type") != "message":
        return None
    return json.dumps({"user": user, "message": event.get("content"), "timestamp": _now_ms()},
                      separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Chat:
    """``run()`` takes CHAT_FRAME in on the sender's side; then each of
    ``transports`` (the other members of its room) must hold the reply."""

    run: Callable[[], Any]
    transports: list[MockTransport]


def _server_text(raw: bytes) -> str:
    """The payload of one unmasked, unfragmented server text frame."""
    assert raw and raw[0] == 0x81, f"not a final text frame: {raw[:4]!r}"
    assert not raw[1] & 0x80, "a server frame must not be masked"
    n, off = raw[1] & 127, 2
    if n == 126:
        n, off = int.from_bytes(raw[2:4], "big"), 4
    assert n < 127 and len(raw) == off + n, "one frame, exactly"
    return raw[off:].decode()


def _check_chat(chat: Chat) -> None:
    frames = [t.last() for t in chat.transports]
    assert len(frames) == CHAT_MEMBERS and all(f == frames[0] for f in frames)
    reply = json.loads(_server_text(frames[0]))
    assert set(reply) == {"user", "message", "timestamp"}
    assert reply["user"] == CHAT_USER and reply["message"] == "hello there"
    assert type(reply["timestamp"]) is int and abs(reply["timestamp"] - _now_ms()) < 60_000


def _chat_fastws(loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 **codec: Any) -> Chat:
    app, hub = _fastws_runtime(loop, **codec)
    transports = [MockTransport(sock) for _ in range(CHAT_MEMBERS)]
    sockets = _fastws_sockets(loop, hub, [MockTransport(sock), *transports])
    for ws in sockets:
        ws.join(ROOM)
    sender = sockets[0]
    user = CHAT_USER

    # The chat route of bench/servers/fastws_server.py: by the JSON event rule,
    # {"type": "message", "content": ...} arrives here as the content.
    def on_message(data: Any) -> None:
        sender.broadcast(ROOM, {"user": user, "message": data, "timestamp": _now_ms()})
    sender.on("message", on_message)
    feed, flush = sender.data_received, hub.flusher.run

    def run() -> None:
        feed(CHAT_FRAME)
        flush()

    run.keep = (app, hub, sockets)  # type: ignore[attr-defined]
    return Chat(run, transports)


def _chat_fastws_json(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Chat:
    return _chat_fastws(loop, sock)


def _chat_fastws_orjson(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Chat:
    try:
        import orjson
    except ImportError:
        pytest.skip("orjson is not installed (pip install orjson; the bench extra has it)")
    return _chat_fastws(loop, sock, dumps=orjson.dumps, loads=orjson.loads)


def _chat_websockets(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Chat:
    server_mod = pytest.importorskip("websockets.asyncio.server")
    protocol_mod = pytest.importorskip("websockets.protocol")
    ws_server = pytest.importorskip("websockets.server")
    transports = [MockTransport(sock) for _ in range(CHAT_MEMBERS)]
    members = _websockets_connections(loop, transports)
    # The sender's side through websockets' sans-I/O core, which its
    # connection's data_received runs; the asyncio layer's queue and the
    # handler's ``async for`` are left out (they would time the event loop).
    proto = ws_server.ServerProtocol(state=protocol_mod.State.OPEN)
    receive, events, send_all = proto.receive_data, proto.events_received, server_mod.broadcast
    user = CHAT_USER

    def run() -> None:
        receive(CHAT_FRAME)
        for frame in events():
            reply = _reply_by_hand(user, frame.data.decode())
            if reply is not None:
                send_all(members, reply)

    run.keep = members  # type: ignore[attr-defined]
    return Chat(run, transports)


def _chat_picows(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Chat:
    picows = pytest.importorskip("picows")
    picows_ext = pytest.importorskip("picows.picows")
    transports = [MockTransport(sock) for _ in range(CHAT_MEMBERS)]
    logger = logging.getLogger("bench.picows")
    members = [picows_ext.WSTransport(False, t, logger, loop) for t in transports]
    text = picows.WSMsgType.TEXT
    user = CHAT_USER

    class ChatListener(picows.WSListener):
        """The chat listener of bench/servers/picows_server.py, for one room."""

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == text:
                reply = _reply_by_hand(user, frame.get_payload_as_bytes())
                if reply is not None:
                    payload = reply.encode()
                    for member in members:
                        member.send(text, payload)

    listener = ChatListener()

    async def make() -> Any:
        # WSProtocol wants the running loop. Arguments: host, path, client
        # side, listener factory, logger, disconnect on exception, handshake
        # timeout, auto-ping (off) and its timings, auto-pong, max frame size,
        # extra headers, initial read buffer size.
        return picows_ext.WSProtocol(
            None, None, False, lambda request: listener, logger, True, None, False, 10.0, 10.0,
            picows.WSAutoPingStrategy.PING_WHEN_IDLE, True, 1 << 20, None, 1 << 20)

    proto = loop.run_until_complete(make())
    sender = MockTransport(sock)
    proto.connection_made(sender)
    upgrade = (b"GET /chat/general HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    proto.get_buffer(-1)[: len(upgrade)] = upgrade
    proto.buffer_updated(len(upgrade))
    assert sender.last().startswith(b"HTTP/1.1 101")
    n = len(CHAT_FRAME)

    def run() -> None:
        # uvloop would recv() straight into this buffer; the copy stands in for it.
        proto.get_buffer(-1)[:n] = CHAT_FRAME
        proto.buffer_updated(n)

    run.keep = (proto, members)  # type: ignore[attr-defined]
    return Chat(run, transports)


def _chat_floor(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Chat:
    transports = [MockTransport(sock) for _ in range(CHAT_MEMBERS)]
    user = CHAT_USER

    def run() -> None:
        # The text already unmasked and decoded: only the app's JSON work,
        # one frame (fastws's encoder) and five writes.
        reply = _reply_by_hand(user, CHAT_TEXT)
        frame = encode_frame(OP_TEXT, reply)
        for t in transports:
            t.write(frame)

    return Chat(run, transports)


# test id -> (row label, maker)
CHAT_CASES: dict[str, tuple[str, Callable[[Any, socket.socket], Chat]]] = {
    "fastws JSON events, json": ("fastws, stdlib json", _chat_fastws_json),
    "fastws JSON events, orjson": ("fastws, orjson", _chat_fastws_orjson),
    "websockets ServerProtocol + json + broadcast()": ("websockets", _chat_websockets),
    "picows WSProtocol + json + send loop": ("picows", _chat_picows),
    "json + encode_frame + 5 writes, no parsing": ("floor: the app's JSON work alone",
                                                   _chat_floor),
}


@pytest.mark.parametrize("case", list(CHAT_CASES))
def test_chat(benchmark: Any, loop: asyncio.AbstractEventLoop, idle_socket: socket.socket,
              case: str) -> None:
    """One masked chat event in; its reply, a JSON object, out to 5 members."""
    label, make = CHAT_CASES[case]
    chat = make(loop, idle_socket)
    chat.run()
    _check_chat(chat)
    benchmark.group = CHAT_GROUP
    benchmark.extra_info.update(library=label, api=case, messages=1, members=CHAT_MEMBERS)
    benchmark(chat.run)
    _check_chat(chat)


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
    units = {DISPATCH_GROUP: "ns per message", MANY_ROOMS_GROUP: "ns per delivered message",
             CHAT_GROUP: "ns per chat message (5 deliveries)"}
    order = list(BROADCAST_CASES) + list(DISPATCH_CASES) + list(CHAT_CASES)
    out: list[str] = []
    for group in (BROADCAST_GROUP, DEFLATE_GROUP, MANY_ROOMS_GROUP, DISPATCH_GROUP, CHAT_GROUP):
        if group not in rows:
            continue
        unit = units.get(group, "ns per recipient")
        # Rows in the order of the cases; fastws's first row comes first in every group.
        ordered = sorted(rows[group], key=lambda r: order.index(r[1]))
        base = ordered[0][2]
        out += [f"{group} ({unit}, fastest round):", "",
                "| library | what is called | " + unit + " | × first row |",
                "| --- | --- | ---: | ---: |"]
        for lib, api, ns in ordered:
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
