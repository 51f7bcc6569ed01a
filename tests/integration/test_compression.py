"""permessage-deflate over the wire (RFC 7692), against real peers and raw bytes.

* Real peers: the `websockets` client and Node's `ws` client exchange text and
  binary messages, small and large, whole and fragmented, with an echo route,
  under several negotiated settings; byte counts and server-side counters show
  that large messages really went compressed both ways.
* Raw sockets check what no library shows: RSV1 on the server's frames, the
  window sizes it agreed to, close codes for bombs and bad frames.
* Encode-once: one broadcast to a room of compressing clients costs one
  deflate per set of shared settings, counted in the server process.
* Memory per idle connection, compression on and off, with the server in a
  subprocess so its RSS is its own.

Client-side compression here is the stdlib ``zlib`` driven as RFC 7692 §7.2.1
says, not fastws's own code.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import socket
import subprocess
import sys
import textwrap
import time
import types
import zlib
from pathlib import Path
from typing import Any, Iterator

import pytest
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from fastws import create_app, websocket
from fastws.deflate import permessage as compression
from fastws.deflate.permessage import DeflateOptions

from ..conftest import Running, serving
from .clients import recv, wait_for, ws_connect
from .rawws import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    RawClient,
    accept_for,
    hand_frame,
    handshake_request,
    new_key,
)
from .test_node_client import NODE_DIR, node  # noqa: F401  (the `node` fixture)

TAIL = b"\x00\x00\xff\xff"
RSV1 = 4
DEFAULT_RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
#: Server settings that leave context takeover to the client.
LAX = DeflateOptions(server_no_context_takeover=False, client_no_context_takeover=False)
MAX_MESSAGE = 2 << 20
#: The small limit of the bomb tests' server.
BOMB_LIMIT = 64 * 1024
THRESHOLD = DeflateOptions().compress_min_size

# ---------------------------------------------------------------- payloads


def chat_json(n: int, seed: int = 0) -> str:
    """About ``n`` bytes of chat-like JSON text with some non-ASCII:
    compressible, like real traffic."""
    rng = random.Random(seed)
    words = "hello lunch déploy review the a to of tomorrow websocket ok✓ thanks".split()
    items, size = [], 0
    while size < n:
        item = json.dumps({"type": "message", "user": f"user{rng.randrange(10000):04d}",
                           "text": " ".join(rng.choice(words) for _ in range(12))},
                          ensure_ascii=False)
        items.append(item)
        size += len(item.encode()) + 1
    return "[" + ",".join(items) + "]"


def noise(n: int, seed: int = 0) -> bytes:
    """``n`` incompressible bytes."""
    return random.Random(seed).randbytes(n)


def far_repeats(distance: int = 2000, copies: int = 8) -> bytes:
    """A random block repeated: deflate with a window larger than ``distance``
    refers back across it, so inflating with a smaller window fails."""
    return noise(distance, 7) * copies


# ---------------------------------------------------------------- client-side deflate


def deflate(data: bytes, bits: int = 15) -> bytes:
    """One message compressed as a client does (RFC 7692 §7.2.1): sync flush,
    the 4-byte tail removed."""
    zobj = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
    out = zobj.compress(data) + zobj.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


def inflate(payload: bytes, bits: int = 15) -> bytes:
    """One message from a server without context takeover (§7.2.2)."""
    return zlib.decompressobj(-bits).decompress(payload + TAIL)


def inflate_within(payload: bytes, bits: int) -> bytes:
    """``inflate``, but strict about the window: zlib checks a distance only
    against its window plus what the current call has written, so asking
    for a few bytes per call makes any reference farther than the window
    (plus those few bytes) an error."""
    zobj = zlib.decompressobj(-bits)
    data, out = payload + TAIL, []
    while data:
        out.append(zobj.decompress(data, 16))
        data = zobj.unconsumed_tail
    return b"".join(out)


# ---------------------------------------------------------------- the app


def make_app(options: Any = True, **ws_options: Any):
    """An echo route (``/echo``), a route that sends what was negotiated
    (``/info``) and one that joins the room "lobby" (``/room``)."""
    app = create_app()
    ws_options.setdefault("max_message_size", MAX_MESSAGE)
    app.use(websocket(compression=options, json_events=False, close_timeout=2,
                      max_backpressure=4 * MAX_MESSAGE, ping_interval=None, **ws_options))

    @app.ws("/echo")
    def echo(ws):
        ws.on("message", ws.send)

    @app.ws("/info")
    def info(ws):
        agreed = ws.compression
        ws.send(json.dumps(None if agreed is None else dataclasses.asdict(agreed)))

    @app.ws("/room")
    def room(ws):
        ws.join("lobby")

    return app


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    """Compression on with the defaults."""
    with serving(make_app(True)) as srv:
        yield srv


@pytest.fixture(scope="module")
def lax_server() -> Iterator[Running]:
    """Compression on, context takeover allowed both ways."""
    with serving(make_app(LAX)) as srv:
        yield srv


@pytest.fixture(scope="module")
def bomb_server() -> Iterator[Running]:
    """Compression on with a 64 KiB message limit."""
    with serving(make_app(True, max_message_size=BOMB_LIMIT)) as srv:
        yield srv


class Counts:
    """How often the server process deflated and inflated, by call."""

    def __init__(self) -> None:
        self.shared = 0         # SharedDeflater.compress: stateless deflates
        self.own = 0            # Deflater.compress with the connection's own stream
        self.sent_rsv1 = 0      # messages a connection sent compressed
        self.inflated = 0       # compressed messages received, whole


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counts:
    """Count deflate and inflate calls in this (the server's) process."""
    seen = Counts()
    shared_compress = compression.SharedDeflater.compress
    own_compress = compression.Deflater.compress
    encode = compression.Deflater.encode
    decompress = compression.Inflater.decompress
    finish = compression.Inflater.finish

    def counting_shared(self, payload):
        seen.shared += 1
        return shared_compress(self, payload)

    def counting_own(self, payload):
        if self._shared is None:
            seen.own += 1
        return own_compress(self, payload)

    def counting_encode(self, payload):
        data, rsv1 = encode(self, payload)
        seen.sent_rsv1 += rsv1
        return data, rsv1

    def counting_decompress(self, payload, max_output):
        seen.inflated += 1
        return decompress(self, payload, max_output)

    def counting_finish(self, max_output):
        seen.inflated += 1
        return finish(self, max_output)

    monkeypatch.setattr(compression.SharedDeflater, "compress", counting_shared)
    monkeypatch.setattr(compression.Deflater, "compress", counting_own)
    monkeypatch.setattr(compression.Deflater, "encode", counting_encode)
    monkeypatch.setattr(compression.Inflater, "decompress", counting_decompress)
    monkeypatch.setattr(compression.Inflater, "finish", counting_finish)
    return seen


# ---------------------------------------------------------------- raw client


def upgrade(port: int, offer: str | None, path: str = "/echo") -> tuple[RawClient, str | None]:
    """A raw connection that offered ``offer`` (None: no extension header);
    returns it and the server's Sec-WebSocket-Extensions (None if absent)."""
    key = new_key()
    client = RawClient(port)
    extra = [] if offer is None else [("Sec-WebSocket-Extensions", offer)]
    try:
        client.send(handshake_request(path, key=key, extra=extra))
        response = client.read_response()
        assert response.status == 101, response
        assert response.header("sec-websocket-accept") == accept_for(key)
    except BaseException:
        client.close()
        raise
    return client, response.header("sec-websocket-extensions")


def send_message(client: RawClient, opcode: int, data: bytes, *, compress_bits: int | None = None) -> None:
    """One whole message; compressed (RSV1) when ``compress_bits`` is given."""
    if compress_bits is None:
        client.send(hand_frame(opcode, data))
    else:
        client.send(hand_frame(opcode, deflate(data, compress_bits), rsv=RSV1))


def read_message(client: RawClient) -> tuple[int, bool, bytes]:
    """The server's next data message: (opcode, RSV1 of its first frame, payload as sent)."""
    first = client.read_frame()
    assert first.opcode in (OP_TEXT, OP_BINARY), f"expected a data frame, got {first}"
    assert first.rsv in (0, RSV1), f"unexpected reserved bits: {first.rsv}"
    parts = [first.payload]
    frame = first
    while not frame.fin:
        frame = client.read_frame()
        assert frame.opcode == OP_CONT and frame.rsv == 0, frame
        parts.append(frame.payload)
    return first.opcode, first.rsv == RSV1, b"".join(parts)


def expect_close(client: RawClient, code: int) -> str:
    """The server's next frame closes with ``code``, then TCP closes; returns the reason."""
    frame = client.read_frame()
    assert frame.opcode == OP_CLOSE, f"expected a close frame, got {frame}"
    assert frame.close_code == code, f"closed with {frame.close_code} {frame.close_reason!r}"
    client.expect_eof()
    return frame.close_reason


def echo_check(srv: Running, compressed_server: bool = True) -> None:
    """A `websockets` client on ``srv`` still gets a large message echoed."""
    message = chat_json(50_000, 99)
    with ws_connect(srv.url("/echo"), compression="deflate", max_size=None) as ws:
        expected = DEFAULT_RESPONSE if compressed_server else None
        assert ws.response.headers.get("Sec-WebSocket-Extensions") == expected
        ws.send(message)
        assert recv(ws) == message


# ================================================================ 1a. websockets client

MESSAGES = [
    ("text small", "héllo ✓"),
    ("binary small", bytes(range(40))),
    ("text 100 KiB", chat_json(100 * 1024, 1)),
    ("binary 100 KiB noise", noise(100 * 1024, 2)),
    ("binary 1 MiB", chat_json(1 << 20, 3).encode()),
    ("text 1 MiB", chat_json(1 << 20, 4)),
]


def fragments(message: str | bytes, n: int = 4) -> list[str | bytes]:
    """``message`` cut into ``n`` pieces (text at character boundaries, as
    websockets sends each piece as UTF-8)."""
    step = -(-len(message) // n)
    return [message[i:i + step] for i in range(0, len(message), step)]


@pytest.mark.parametrize("variant", ["default", "window bits", "no compression"])
def test_websockets_client_round_trips(server, counts, variant):
    kwargs: dict[str, Any] = {"max_size": None}
    if variant == "default":
        # websockets offers "permessage-deflate; client_max_window_bits".
        kwargs["compression"] = "deflate"
        expected = DEFAULT_RESPONSE
    elif variant == "window bits":
        kwargs["extensions"] = [ClientPerMessageDeflateFactory(
            server_max_window_bits=11, client_max_window_bits=10)]
        expected = DEFAULT_RESPONSE + "; server_max_window_bits=11; client_max_window_bits=10"
    else:
        kwargs["compression"] = None
        expected = None
    with ws_connect(server.url("/echo"), **kwargs) as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") == expected
        for name, message in MESSAGES:
            ws.send(message)
            assert recv(ws) == message, name
        for name, message in MESSAGES[2:]:
            ws.send(fragments(message))
            assert recv(ws) == message, f"{name}, fragmented"
    large = sum(len(m) >= THRESHOLD for _, m in MESSAGES) + len(MESSAGES[2:])
    if expected is None:
        assert (counts.inflated, counts.sent_rsv1) == (0, 0)
    else:
        # websockets compresses everything it sends; fastws every echo from
        # the threshold on.
        assert counts.inflated == len(MESSAGES) + len(MESSAGES[2:])
        assert counts.sent_rsv1 == large


def test_websockets_client_sees_negotiated_settings(server):
    with ws_connect(server.url("/info"), extensions=[ClientPerMessageDeflateFactory(
            server_max_window_bits=12, client_max_window_bits=9)]) as ws:
        agreed = json.loads(recv(ws))
    assert agreed == {"server_no_context_takeover": True, "client_no_context_takeover": True,
                      "server_max_window_bits": 12, "client_max_window_bits": 9,
                      "level": 6, "mem_level": 8, "compress_min_size": THRESHOLD}
    with ws_connect(server.url("/info"), compression=None) as ws:
        assert json.loads(recv(ws)) is None


def test_websockets_client_with_context_takeover(lax_server, counts):
    # The client keeps its window across messages and so does fastws's
    # per-connection compressor: repeats of a message shrink to references.
    message = chat_json(20_000, 5)
    with ws_connect(lax_server.url("/echo"), compression="deflate", max_size=None) as ws:
        assert ws.response.headers["Sec-WebSocket-Extensions"] == "permessage-deflate"
        for _ in range(5):
            ws.send(message)
            assert recv(ws) == message
        ws.send(fragments(message))
        assert recv(ws) == message
    assert counts.own == 6 and counts.shared == 0
    assert counts.inflated == 6


def test_large_messages_are_compressed_on_the_wire(server):
    client, agreed = upgrade(server.port, "permessage-deflate; client_max_window_bits")
    with client:
        assert agreed == DEFAULT_RESPONSE
        # (opcode, message, deflates to under a third)
        cases = [(OP_TEXT, chat_json(100 * 1024, 8).encode(), True),
                 (OP_BINARY, chat_json(1 << 20, 9).encode(), True),
                 (OP_BINARY, noise(100 * 1024, 10), False),
                 (OP_TEXT, b"x" * THRESHOLD, True),
                 (OP_TEXT, "small ✓".encode(), False),
                 (OP_BINARY, b"\x00" * (THRESHOLD - 1), False)]
        for opcode, data, compressible in cases:
            for compressed_send in (True, False):
                send_message(client, opcode, data, compress_bits=15 if compressed_send else None)
                got_opcode, rsv1, payload = read_message(client)
                assert got_opcode == opcode
                # At or over the threshold the echo is compressed whatever the
                # client did; under it, plain.
                assert rsv1 == (len(data) >= THRESHOLD)
                assert (inflate(payload) if rsv1 else payload) == data
                if compressible:
                    assert len(payload) < len(data) // 3
    # Each compressed message stands alone (server_no_context_takeover):
        # the same message twice gives the same bytes.
        data = chat_json(10_000, 11).encode()
        send_message(client, OP_TEXT, data)
        first = read_message(client)
        send_message(client, OP_TEXT, data)
        assert read_message(client) == first


# ================================================================ 1b. Node's ws client

NODE_VARIANTS = {
    # name: (server, perMessageDeflate option of ws, expected response header)
    "default offer": ("server", {"threshold": 0}, DEFAULT_RESPONSE),
    "no context takeover offered": (
        "server", {"threshold": 0, "serverNoContextTakeover": True, "clientNoContextTakeover": True},
        DEFAULT_RESPONSE),
    "context takeover": ("lax_server", {"threshold": 0}, "permessage-deflate"),
    "context takeover, window bits": (
        "lax_server", {"threshold": 0, "clientMaxWindowBits": 10, "serverMaxWindowBits": 11},
        "permessage-deflate; server_max_window_bits=11; client_max_window_bits=10"),
    "compression off": ("server", False, None),
}


@pytest.mark.parametrize("variant", list(NODE_VARIANTS))
def test_node_ws_client_round_trips(node, request, variant):  # noqa: F811
    server_name, options, expected = NODE_VARIANTS[variant]
    srv = request.getfixturevalue(server_name)
    done = subprocess.run([node, str(NODE_DIR / "compression_client.mjs"), srv.url("/echo"),
                           json.dumps(options)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"node client failed:\n{done.stderr}\n{done.stdout}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"event": "open", "extensions": expected}
    assert lines[-1] == {"event": "close", "code": 1000}
    echoes = {r["name"]: r for r in lines[1:-1]}
    assert len(echoes) == 10 and all(r["event"] == "echo" and r["ok"] for r in echoes.values())
    assert {r["binary"] for r in echoes.values()} == {True, False}
    for name in ("text_100k", "binary_1m", "text_100k_fragmented", "binary_1m_fragmented"):
        r = echoes[name]
        if expected is None:
            assert r["sent_wire"] > r["size"] and r["recv_wire"] > r["size"], r
        else:
            # Chat JSON deflates to well under a third, both ways.
            assert r["sent_wire"] < r["size"] // 3 and r["recv_wire"] < r["size"] // 3, r
    # Incompressible data and small messages (under the threshold) come back
    # at least as large as they are.
    for name in ("binary_100k_noise", "text_small", "binary_small"):
        assert echoes[name]["recv_wire"] >= echoes[name]["size"], echoes[name]
    first, again = echoes["text_10k"], echoes["text_10k_again"]
    if expected == "permessage-deflate":
        # Context kept both ways (full windows): the repeat is mostly one
        # back-reference each way.
        assert again["sent_wire"] < first["sent_wire"] // 4, (first, again)
        assert again["recv_wire"] < first["recv_wire"] // 4, (first, again)
    elif expected == DEFAULT_RESPONSE:
        # Each message stands alone: the repeat costs the same.
        assert again["recv_wire"] == first["recv_wire"], (first, again)


# ================================================================ 2. encode once


def join_room(srv: Running, offers: list[str | None]) -> list[tuple[RawClient, str | None]]:
    """Raw clients in the room "lobby", one per offer, with what each agreed."""
    clients = []
    try:
        for offer in offers:
            clients.append(upgrade(srv.port, offer, "/room"))
    except BaseException:
        for client, _ in clients:
            client.close()
        raise
    wait_for(lambda: srv.call(srv.app.room_size, "lobby") == len(offers), what="room members")
    return clients


def one_kib_json() -> str:
    """A 1 KiB chat message."""
    text = chat_json(900, 12)
    message = json.dumps({"type": "message", "room": "lobby", "user": "alice", "text": text},
                         ensure_ascii=False)
    return message + " " * (1024 - len(message.encode()))


@pytest.mark.parametrize("mix", ["one key", "two keys"])
def test_broadcast_deflates_once_per_key(server, counts, mix):
    offers = ["permessage-deflate"] * 100 + [None] * 10
    bits = {"permessage-deflate": 15, None: None}
    if mix == "two keys":
        small = "permessage-deflate; server_max_window_bits=10"
        offers += [small] * 20
        bits[small] = 10
    message = one_kib_json()
    clients = join_room(server, offers)
    try:
        # Real peers in the same room decode the shared frame too.
        peers = [ws_connect(server.url("/room"), compression="deflate") for _ in range(3)]
        try:
            wait_for(lambda: server.call(server.app.room_size, "lobby") == len(offers) + 3,
                     what="room members")
            assert server.call(server.app.broadcast, "lobby", message) == len(offers) + 3
            for ws in peers:
                assert recv(ws) == message
        finally:
            for ws in peers:
                ws.close()
        frames: dict[str, set[bytes]] = {}
        for (client, agreed), offer in zip(clients, offers):
            opcode, rsv1, payload = read_message(client)
            assert opcode == OP_TEXT
            assert rsv1 == (agreed is not None)
            got = inflate(payload, bits[offer]) if rsv1 else payload
            assert got.decode() == message
            frames.setdefault(offer, set()).add(payload)
    finally:
        for client, _ in clients:
            client.close()
    keys = 2 if mix == "two keys" else 1
    assert counts.shared == keys
    assert counts.own == 0
    # One payload per group, shared by all its members.
    assert all(len(payloads) == 1 for payloads in frames.values())
    wait_for(lambda: server.call(server.app.room_size, "lobby") == 0, what="room emptied")


@pytest.mark.parametrize("snct_members", [0, 40])
def test_context_takeover_members_get_the_plain_frame(counts, snct_members):
    # Only clients that ask for server_no_context_takeover get it from this
    # server; the others (key None) must get the uncompressed frame.
    options = DeflateOptions(server_no_context_takeover=False)
    offers = (["permessage-deflate"] * (100 - snct_members)
              + ["permessage-deflate; server_no_context_takeover"] * snct_members
              + [None] * 5)
    message = one_kib_json()
    with serving(make_app(options)) as srv:
        clients = join_room(srv, offers)
        try:
            assert srv.call(srv.app.broadcast, "lobby", message) == len(offers)
            for (client, agreed), offer in zip(clients, offers):
                opcode, rsv1, payload = read_message(client)
                assert opcode == OP_TEXT
                wants_shared = offer is not None and "server_no_context_takeover" in offer
                if offer is None:
                    assert agreed is None
                else:
                    assert agreed.startswith("permessage-deflate; ")
                assert rsv1 == wants_shared
                assert (inflate(payload) if rsv1 else payload).decode() == message
        finally:
            for client, _ in clients:
                client.close()
    assert counts.shared == (1 if snct_members else 0)
    assert counts.own == 0


# ================================================================ 3. bombs and bad frames


class _CountingInflate:
    """A zlib decompressor that adds the size of everything it outputs to
    ``total[0]``."""

    def __init__(self, real: Any, total: list[int]) -> None:
        self._real = real
        self._total = total

    def decompress(self, data: bytes, max_length: int = 0) -> bytes:
        out = self._real.decompress(data, max_length)
        self._total[0] += len(out)
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def inflated(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes the server's inflaters have output so far (one-item list);
    this test's own zlib calls are not counted."""
    total = [0]
    patched = types.SimpleNamespace(**{k: getattr(zlib, k) for k in dir(zlib) if not k.startswith("__")})
    patched.decompressobj = lambda *a, **kw: _CountingInflate(zlib.decompressobj(*a, **kw), total)
    monkeypatch.setattr(compression, "zlib", patched)
    return total


@pytest.fixture
def bystander(bomb_server) -> Iterator[Any]:
    """A compressing `websockets` client connected before the bad input; the
    test checks it still works after."""
    with ws_connect(bomb_server.url("/echo"), compression="deflate") as ws:
        yield ws


def bystander_works(ws: Any) -> None:
    message = chat_json(30_000, 13)
    ws.send(message)
    assert recv(ws) == message


@pytest.mark.parametrize("shape", ["one frame", "fragments", "text"])
def test_bomb_closes_with_1009(bomb_server, bystander, inflated, shape):
    # ~1 KB of deflate that inflates to 1 MB of zeros: 16x the limit.
    bomb = deflate(b"\x00" * 1_000_000)
    assert len(bomb) < 1100
    client, agreed = upgrade(bomb_server.port, "permessage-deflate")
    with client:
        assert agreed == DEFAULT_RESPONSE
        if shape == "fragments":
            cut = len(bomb) // 3
            client.send(hand_frame(OP_BINARY, bomb[:cut], fin=False, rsv=RSV1)
                        + hand_frame(OP_CONT, bomb[cut:2 * cut], fin=False)
                        + hand_frame(OP_CONT, bomb[2 * cut:]))
        else:
            opcode = OP_TEXT if shape == "text" else OP_BINARY
            client.send(hand_frame(opcode, bomb, rsv=RSV1))
        expect_close(client, 1009)
    # Inflating stopped at the limit (plus the one byte that tells "over"),
    # not after the whole megabyte.
    assert BOMB_LIMIT < inflated[0] <= BOMB_LIMIT + 1
    bystander_works(bystander)


def test_inflated_size_limit_is_exact(bomb_server):
    client, _ = upgrade(bomb_server.port, "permessage-deflate")
    with client:
        at_limit = b"a" * BOMB_LIMIT
        send_message(client, OP_BINARY, at_limit, compress_bits=15)
        _, rsv1, payload = read_message(client)
        assert rsv1 and inflate(payload) == at_limit
        send_message(client, OP_BINARY, at_limit + b"a", compress_bits=15)
        expect_close(client, 1009)


@pytest.mark.parametrize("case, code", [
    ("corrupt deflate data", 1007),
    ("invalid UTF-8 after inflating", 1007),
    ("RSV1 on a continuation frame", 1002),
    ("RSV1 on a ping", 1002),
    ("RSV1 on a close frame", 1002),
    ("RSV2 with deflate negotiated", 1002),
    ("RSV1 without negotiation", 1002),
])
def test_bad_compressed_frames(bomb_server, bystander, case, code):
    negotiated = case != "RSV1 without negotiation"
    client, agreed = upgrade(bomb_server.port, "permessage-deflate" if negotiated else None)
    part = deflate(b"hello " * 40)
    frames = {
        # BFINAL=1, BTYPE=11: a reserved block type.
        "corrupt deflate data": hand_frame(OP_BINARY, b"\xff" * 16, rsv=RSV1),
        "invalid UTF-8 after inflating": hand_frame(OP_TEXT, deflate(b"ok \xc3\x28 ok" * 30), rsv=RSV1),
        "RSV1 on a continuation frame": (hand_frame(OP_TEXT, part[:10], fin=False, rsv=RSV1)
                                         + hand_frame(OP_CONT, part[10:], rsv=RSV1)),
        "RSV1 on a ping": hand_frame(OP_PING, b"ping", rsv=RSV1),
        "RSV1 on a close frame": hand_frame(OP_CLOSE, b"\x03\xe8", rsv=RSV1),
        "RSV2 with deflate negotiated": hand_frame(OP_TEXT, b"hello", rsv=2),
        "RSV1 without negotiation": hand_frame(OP_TEXT, part, rsv=RSV1),
    }
    with client:
        assert (agreed is not None) == negotiated
        client.send(frames[case])
        expect_close(client, code)
    bystander_works(bystander)


# ================================================================ 4. negotiation


@pytest.mark.parametrize("offer", [
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; client_max_window_bits=0",
    "permessage-deflate; client_max_window_bits=abc",
    'permessage-deflate; client_max_window_bits="1 0"',
    "permessage-deflate; client_no_context_takeover=1",
    "permessage-deflate; unknown_parameter",
    "permessage-deflate; ; server_max_window_bits=10",
    "x-webkit-deflate-frame",
])
def test_malformed_offers_are_declined(server, offer):
    client, agreed = upgrade(server.port, offer)
    with client:
        assert agreed is None
        data = chat_json(4000, 14).encode()
        send_message(client, OP_TEXT, data)
        assert read_message(client) == (OP_TEXT, False, data)
        # Nothing was negotiated, so compressed frames are refused.
        send_message(client, OP_TEXT, data, compress_bits=15)
        expect_close(client, 1002)


def test_first_acceptable_offer_wins(server):
    offer = ("permessage-deflate; server_max_window_bits=16, "
             "permessage-deflate; client_max_window_bits=12, permessage-deflate")
    client, agreed = upgrade(server.port, offer)
    with client:
        assert agreed == DEFAULT_RESPONSE + "; client_max_window_bits=12"


@pytest.mark.parametrize("bits", [8, 9, 10, 12])
def test_client_max_window_bits_is_honoured(server, bits):
    client, agreed = upgrade(server.port, f"permessage-deflate; client_max_window_bits={bits}")
    with client:
        assert agreed == DEFAULT_RESPONSE + f"; client_max_window_bits={bits}"
        # The client compresses within its small window; the server reads it.
        data = far_repeats()
        send_message(client, OP_BINARY, data, compress_bits=bits)
        _, rsv1, payload = read_message(client)
        assert rsv1 and inflate(payload) == data


@pytest.mark.parametrize("bits", [8, 9, 10, 12])
def test_server_max_window_bits_is_honoured(server, bits):
    data = far_repeats(distance=(1 << bits) + 500)
    # Control: a full-window stream of this data cannot be read with the
    # small window, so the check below can fail.
    with pytest.raises(zlib.error, match="too far back"):
        inflate_within(deflate(data, 15), bits)
    client, agreed = upgrade(server.port, f"permessage-deflate; server_max_window_bits={bits}")
    with client:
        assert agreed == DEFAULT_RESPONSE + f"; server_max_window_bits={bits}"
        send_message(client, OP_BINARY, data, compress_bits=15)
        _, rsv1, payload = read_message(client)
        assert rsv1 and inflate_within(payload, bits) == data


def test_compression_off_ignores_offers():
    with serving(make_app(None)) as srv:
        client, agreed = upgrade(srv.port, "permessage-deflate; client_max_window_bits")
        with client:
            assert agreed is None
            data = chat_json(4000, 15).encode()
            send_message(client, OP_TEXT, data)
            assert read_message(client) == (OP_TEXT, False, data)
        echo_check(srv, compressed_server=False)


# ================================================================ 5. memory per idle connection

SERVER_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from fastws import create_app, websocket
    from fastws.deflate.permessage import DeflateOptions
    from fastws.serve.server import new_event_loop

    modes = {"off": None, "on": True,
             "inflater kept": DeflateOptions(client_no_context_takeover=False)}
    app = create_app()
    app.use(websocket(compression=modes[sys.argv[1]], ping_interval=None, json_events=False))

    @app.ws("/echo")
    def echo(ws):
        ws.on("message", ws.send)

    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        # The test holds the pipe on our stdin: EOF means stop.
        loop.add_reader(0, lambda: sys.stdin.buffer.raw.read(4096) or stop.set())
        server = await app.serve("127.0.0.1", 0, backlog=4096)
        print("PORT", server.port, flush=True)
        await stop.wait()
        loop.remove_reader(0)
        await server.shutdown(2.0)

    new_event_loop().run_until_complete(main())
""")

IDLE_CONNECTIONS = 2000
WARM_CONNECTIONS = 200


def rss_kib(pid: int) -> int:
    """The process's resident set size in KiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1))


def open_idle(port: int, count: int, compressed: bool, held: list[socket.socket]) -> None:
    """``count`` connections that each exchange one ~1 KiB message (compressed
    both ways when ``compressed``), then stay open and idle. Opened in
    batches: all requests of a batch go out before any answer is read."""
    offer = [("Sec-WebSocket-Extensions", "permessage-deflate")] if compressed else []
    data = chat_json(1000, 16).encode()
    frame = hand_frame(OP_TEXT, deflate(data), rsv=RSV1) if compressed else hand_frame(OP_TEXT, data)
    for start in range(0, count, 100):
        batch = []
        for _ in range(min(100, count - start)):
            client = RawClient(port)
            held.append(client.sock)
            client.send(handshake_request("/echo", key=new_key(), extra=offer) + frame)
            batch.append(client)
        for client in batch:
            response = client.read_response()
            assert response.status == 101
            assert (response.header("sec-websocket-extensions") is not None) == compressed
            _, rsv1, payload = read_message(client)
            assert rsv1 == compressed
            assert (inflate(payload) if rsv1 else payload) == data


def settled_rss(pid: int) -> int:
    """RSS once it stops moving (bounded wait)."""
    last = rss_kib(pid)
    for _ in range(20):
        time.sleep(0.1)
        now = rss_kib(pid)
        if now == last:
            break
        last = now
    return last


def idle_kib_per_connection(mode: str) -> float:
    """Server RSS growth per idle connection, in KiB."""
    proc = subprocess.Popen([sys.executable, "-c", SERVER_SCRIPT, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    held: list[socket.socket] = []
    try:
        line = proc.stdout.readline()
        assert line.startswith("PORT "), f"server did not start: {line!r}"
        port = int(line.split()[1])
        # Warm up: imports, the shared compressor, allocator arenas.
        open_idle(port, WARM_CONNECTIONS, mode != "off", held)
        before = settled_rss(proc.pid)
        open_idle(port, IDLE_CONNECTIONS, mode != "off", held)
        after = settled_rss(proc.pid)
        return (after - before) / IDLE_CONNECTIONS
    finally:
        for sock in held:
            sock.close()
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        proc.stdout.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmRSS from /proc")
def test_idle_compressed_connection_memory():
    off = idle_kib_per_connection("off")
    on = idle_kib_per_connection("on")
    kept = idle_kib_per_connection("inflater kept")
    print(f"\nserver RSS per idle connection ({IDLE_CONNECTIONS} connections, one ~1 KiB "
          f"message each): compression off {off:.1f} KiB, on (defaults) {on:.1f} KiB "
          f"({on - off:+.1f}), with client context takeover {kept:.1f} KiB ({kept - off:+.1f})")
    # The defaults keep no zlib state per connection (shared compressor, the
    # inflater freed after each message), so compression adds only small
    # Python objects.
    assert on < off + 4
    # Control: the measurement sees a zlib stream kept per connection (a
    # 32 KiB inflate window, partly touched by a 1 KiB message).
    assert kept > on + 6
