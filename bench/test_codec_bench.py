"""Codec micro-benchmarks: fastws's frame codec against each peer's fastest equivalent.

Every test belongs to one pytest-benchmark group, and each group is one column
of the table that ``bench/codec_table.py`` prints:

* ``unmask 1 KiB`` / ``unmask 64 KiB`` / ``unmask 1 MiB``: XOR a payload with a
  4-byte key. Functions that return a new object ("copy") and functions that
  overwrite their input ("in place") are both measured; the table compares
  each peer with the fastws function of the same kind.
* ``parse 10,000 x 32 B``: a server turns one buffer of 10,000 masked 32-byte
  binary client frames into 10,000 message objects, through each library's
  most direct server-side entry point.
* ``encode 32 B``: frame one 32-byte binary message as a server does
  (unmasked) and hand the bytes over.

``extra_info`` carries what the table needs: the ``library`` (table row), the
``mode`` of a masking function, and the ``bytes`` or ``frames`` one call
handles. Each case checks its output once before it is timed, and parse cases
also check the message count of the last timed call, so a fast wrong answer
fails the run. Nothing here asserts a duration. A peer that is not installed
is skipped (``pip install -e '.[bench]'`` installs them all).
"""
from __future__ import annotations

import asyncio
import collections
import ctypes
import logging
import random
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from fastws.ws._frame import FrameParser, apply_mask, apply_mask_inplace, encode_frame

MASK_KEY = bytes((0x37, 0xFA, 0x21, 0x3D))
UNMASK_SIZES = {"1 KiB": 1 << 10, "64 KiB": 1 << 16, "1 MiB": 1 << 20}
PARSE_FRAMES = 10_000
FRAME_PAYLOAD = 32
OP_BINARY = 0x2
PARSE_GROUP = f"parse {PARSE_FRAMES:,} x {FRAME_PAYLOAD} B"
ENCODE_GROUP = f"encode {FRAME_PAYLOAD} B"


def _xor(data: bytes, key: bytes) -> bytes:
    """Reference masking in plain Python (one big-integer XOR): the oracle for every case."""
    stream = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


def _client_frame(payload: bytes, key: bytes) -> bytes:
    """One masked binary frame (payload under 126 bytes), built without any codec under test."""
    return bytes((0x80 | OP_BINARY, 0x80 | len(payload))) + key + _xor(payload, key)


# Seeded so every run, and every peer, sees the same bytes.
_rng = random.Random(20261126)
PAYLOADS = [_rng.randbytes(FRAME_PAYLOAD) for _ in range(PARSE_FRAMES)]
_KEYS = [_rng.randbytes(4) for _ in range(16)]
CLIENT_BUFFER = b"".join(_client_frame(p, _KEYS[i % len(_KEYS)]) for i, p in enumerate(PAYLOADS))
ENCODE_PAYLOAD = PAYLOADS[0]
SERVER_FRAME = bytes((0x80 | OP_BINARY, FRAME_PAYLOAD)) + ENCODE_PAYLOAD


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop that is never run: some peers want one at construction."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


class SinkTransport:
    """Stands in for an asyncio transport: keeps the last write and never blocks.

    Its methods are bound builtins, so a peer pays no Python-level call for
    them, as with uvloop's C transports.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sink: collections.deque[Any] = collections.deque(maxlen=1)
        self.write = self.sink.append
        # A non-empty buffer makes picows queue through write() instead of
        # trying send() on our unconnected socket: a failing syscall per frame
        # would time the kernel, not the codec.
        self.get_write_buffer_size = (1).__int__
        self.is_closing = bool   # bool() is False
        self.get_extra_info = {
            "socket": sock,
            "peername": ("127.0.0.1", 1),
            "sockname": ("127.0.0.1", 2),
            "ssl_object": None,
        }.get

    def last(self) -> bytes:
        """The most recent write."""
        return bytes(self.sink[0])


@dataclass(frozen=True)
class Case:
    """One benchmarked call ``fn(*args)``; ``output(returned)`` gives the bytes to check."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    output: Callable[[Any], Any]


# ---------------------------------------------------------------- unmask

def _unmask_fastws_copy(data: bytes) -> Case:
    return Case(apply_mask, (data, MASK_KEY), bytes)


def _unmask_fastws_inplace(data: bytes) -> Case:
    buf = bytearray(data)
    return Case(apply_mask_inplace, (buf, MASK_KEY), lambda _: bytes(buf))


def _unmask_websockets(data: bytes) -> Case:
    speedups = pytest.importorskip("websockets.speedups")
    return Case(speedups.apply_mask, (data, MASK_KEY), bytes)


def _unmask_aiohttp(data: bytes) -> Case:
    mask = pytest.importorskip("aiohttp._websocket.mask")
    buf = bytearray(data)
    return Case(mask._websocket_mask_cython, (MASK_KEY, buf), lambda _: bytes(buf))


def _unmask_wsproto(data: bytes) -> Case:
    frame_protocol = pytest.importorskip("wsproto.frame_protocol")
    # process() rotates its key by len % 4; every size here is a multiple of 4,
    # so one masker stays valid across calls.
    return Case(frame_protocol.XorMaskerSimple(MASK_KEY).process, (data,), bytes)


def _unmask_picows(data: bytes) -> Case:
    # picows masks inside Cython with no Python entry point, but its SIMD
    # kernel is an exported C symbol, so ctypes reaches it. The ctypes call
    # costs a fixed fraction of a microsecond: it dominates at 1 KiB and
    # vanishes at 1 MiB.
    picows_ext = pytest.importorskip("picows.picows")
    lib = ctypes.CDLL(picows_ext.__file__)
    lib.get_apply_mask_fast_fn.restype = ctypes.c_void_p
    kernel_type = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                                   ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p)
    kernel = kernel_type(lib.get_apply_mask_fast_fn())
    align = lib.get_apply_mask_fast_alignment()
    # The kernel loads and stream-stores whole aligned vectors, as picows's
    # read buffer is laid out: give it that alignment and a size it covers.
    assert len(data) % align == 0
    raw = ctypes.create_string_buffer(len(data) + align)
    addr = -(-ctypes.addressof(raw) // align) * align
    ctypes.memmove(addr, data, len(data))
    key32 = int.from_bytes(MASK_KEY, "little")

    def output(_: Any) -> bytes:
        assert raw   # keeps the buffer alive as long as the case
        return ctypes.string_at(addr, len(data))
    return Case(kernel, (addr, len(data), 0, key32, addr), output)


# test id -> (library, mode, maker)
UNMASK_PEERS: dict[str, tuple[str, str, Callable[[bytes], Case]]] = {
    "fastws apply_mask_inplace": ("fastws", "in place", _unmask_fastws_inplace),
    "fastws apply_mask": ("fastws, copying", "copy", _unmask_fastws_copy),
    "websockets speedups.apply_mask": ("websockets", "copy", _unmask_websockets),
    "aiohttp _websocket_mask_cython": ("aiohttp", "in place", _unmask_aiohttp),
    "wsproto XorMaskerSimple.process": ("wsproto", "copy", _unmask_wsproto),
    "picows mask kernel via ctypes": ("picows", "in place", _unmask_picows),
}


@pytest.mark.parametrize("size_label", list(UNMASK_SIZES))
@pytest.mark.parametrize("peer", list(UNMASK_PEERS))
def test_unmask(benchmark: Any, peer: str, size_label: str) -> None:
    """Throughput of XOR-unmasking one payload of 1 KiB, 64 KiB or 1 MiB."""
    library, mode, make = UNMASK_PEERS[peer]
    size = UNMASK_SIZES[size_label]
    data = random.Random(size).randbytes(size)
    case = make(data)
    assert case.output(case.fn(*case.args)) == _xor(data, MASK_KEY)
    benchmark.group = f"unmask {size_label}"
    benchmark.extra_info.update(library=library, api=peer, mode=mode, bytes=size)
    benchmark(case.fn, *case.args)


# ---------------------------------------------------------------- parse

@dataclass(frozen=True)
class Parse:
    """``run()`` parses CLIENT_BUFFER and returns how many messages it made;
    ``peek()`` does the same untimed and returns the message payloads."""

    run: Callable[[], int]
    peek: Callable[[], list[bytes]]


def _parse_fastws(loop: Any, sock: socket.socket) -> Parse:
    feed = FrameParser().feed

    def run() -> int:
        return len(feed(CLIENT_BUFFER))

    def peek() -> list[bytes]:
        events = feed(CLIENT_BUFFER)
        assert {kind for kind, _ in events} == {OP_BINARY}
        return [value for _, value in events]
    return Parse(run, peek)


def _parse_websockets(loop: Any, sock: socket.socket) -> Parse:
    server = pytest.importorskip("websockets.server")
    protocol_mod = pytest.importorskip("websockets.protocol")
    proto = server.ServerProtocol(state=protocol_mod.State.OPEN)

    def run() -> int:
        proto.receive_data(CLIENT_BUFFER)
        return len(proto.events_received())

    def peek() -> list[bytes]:
        proto.receive_data(CLIENT_BUFFER)
        return [frame.data for frame in proto.events_received()]
    return Parse(run, peek)


def _parse_aiohttp(loop: Any, sock: socket.socket) -> Parse:
    reader_mod = pytest.importorskip("aiohttp._websocket.reader")
    owner = type("ReadingOwner", (), {"_reading_paused": True})()
    # A limit of 2 * (2**31 - 1) bytes keeps the reader from ever stalling:
    # the messages are dropped after each call instead of being awaited.
    queue = reader_mod.WebSocketDataQueue(owner, 2**31 - 1, loop=loop)
    reader = reader_mod.WebSocketReader(queue, 1 << 20, compress=False, decode_text=True)
    queued = queue._buffer   # (message, size) pairs

    def run() -> int:
        reader.feed_data(CLIENT_BUFFER)
        n = len(queued)
        queued.clear()
        return n

    def peek() -> list[bytes]:
        reader.feed_data(CLIENT_BUFFER)
        payloads = [message.data for message, _ in queued]
        queued.clear()
        return payloads
    return Parse(run, peek)


def _parse_wsproto(loop: Any, sock: socket.socket) -> Parse:
    frame_protocol = pytest.importorskip("wsproto.frame_protocol")
    proto = frame_protocol.FrameProtocol(client=False, extensions=[])

    def run() -> int:
        proto.receive_bytes(CLIENT_BUFFER)
        return len(list(proto.received_frames()))

    def peek() -> list[bytes]:
        proto.receive_bytes(CLIENT_BUFFER)
        return [bytes(frame.payload) for frame in proto.received_frames()]
    return Parse(run, peek)


def _parse_picows(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> Parse:
    picows = pytest.importorskip("picows")
    picows_ext = pytest.importorskip("picows.picows")

    class Collector(picows.WSListener):
        """Turns each frame into a bytes message, as a picows app written in Python does."""

        def __init__(self) -> None:
            self.messages: list[bytes] = []

        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            self.messages.append(frame.get_payload_as_bytes())

    listener = Collector()

    async def make() -> Any:
        # WSProtocol asks for the running loop in __init__. Arguments: host,
        # path, client side, listener factory, logger, disconnect on exception,
        # handshake timeout, auto-ping (off) and its timings, auto-pong,
        # max frame size, extra headers, initial read buffer size.
        return picows_ext.WSProtocol(
            None, None, False, lambda request: listener, logging.getLogger("bench.picows"),
            True, None, False, 10.0, 10.0, picows.WSAutoPingStrategy.PING_WHEN_IDLE,
            True, 1 << 20, None, 1 << 20)

    proto = loop.run_until_complete(make())
    transport = SinkTransport(sock)
    proto.connection_made(transport)
    upgrade = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n")
    proto.get_buffer(-1)[: len(upgrade)] = upgrade
    proto.buffer_updated(len(upgrade))
    assert transport.last().startswith(b"HTTP/1.1 101")
    n = len(CLIENT_BUFFER)
    messages = listener.messages

    def run() -> int:
        # uvloop would recv() straight into this buffer; the copy stands in for it.
        proto.get_buffer(-1)[:n] = CLIENT_BUFFER
        proto.buffer_updated(n)
        count = len(messages)
        messages.clear()
        return count

    def peek() -> list[bytes]:
        proto.get_buffer(-1)[:n] = CLIENT_BUFFER
        proto.buffer_updated(n)
        payloads = list(messages)
        messages.clear()
        return payloads
    return Parse(run, peek)


# test id -> (library, maker)
PARSE_PEERS: dict[str, tuple[str, Callable[[Any, socket.socket], Parse]]] = {
    "fastws FrameParser.feed": ("fastws", _parse_fastws),
    "websockets ServerProtocol": ("websockets", _parse_websockets),
    "aiohttp WebSocketReader": ("aiohttp", _parse_aiohttp),
    "wsproto FrameProtocol": ("wsproto", _parse_wsproto),
    "picows WSProtocol": ("picows", _parse_picows),
}


@pytest.mark.parametrize("peer", list(PARSE_PEERS))
def test_parse(benchmark: Any, loop: asyncio.AbstractEventLoop, idle_socket: socket.socket,
               peer: str) -> None:
    """Messages per second out of one buffer of 10,000 masked 32-byte frames."""
    library, make = PARSE_PEERS[peer]
    parse = make(loop, idle_socket)
    assert parse.peek() == PAYLOADS
    benchmark.group = PARSE_GROUP
    benchmark.extra_info.update(library=library, api=peer, frames=PARSE_FRAMES)
    assert benchmark(parse.run) == PARSE_FRAMES


# ---------------------------------------------------------------- encode

def _encode_fastws(loop: Any, sock: socket.socket) -> Case:
    return Case(encode_frame, (OP_BINARY, ENCODE_PAYLOAD), bytes)


def _encode_websockets(loop: Any, sock: socket.socket) -> Case:
    frames = pytest.importorskip("websockets.frames")
    frame_cls, opcode = frames.Frame, frames.Opcode.BINARY

    def serialize() -> bytes:
        return frame_cls(opcode, ENCODE_PAYLOAD).serialize(mask=False)
    return Case(serialize, (), bytes)


def _encode_aiohttp(loop: Any, sock: socket.socket) -> Case:
    writer_mod = pytest.importorskip("aiohttp._websocket.writer")
    transport = SinkTransport(sock)
    writer = writer_mod.WebSocketWriter(object(), transport, use_mask=False)
    # The synchronous framing step behind the public async send_frame().
    return Case(writer._write_websocket_frame, (ENCODE_PAYLOAD, OP_BINARY, 0),
                lambda _: transport.last())


def _encode_wsproto(loop: Any, sock: socket.socket) -> Case:
    frame_protocol = pytest.importorskip("wsproto.frame_protocol")
    proto = frame_protocol.FrameProtocol(client=False, extensions=[])
    return Case(proto.send_data, (ENCODE_PAYLOAD,), bytes)


def _encode_picows(loop: Any, sock: socket.socket) -> Case:
    picows = pytest.importorskip("picows")
    picows_ext = pytest.importorskip("picows.picows")
    transport = SinkTransport(sock)
    ws = picows_ext.WSTransport(False, transport, logging.getLogger("bench.picows"), loop)
    return Case(ws.send, (picows.WSMsgType.BINARY, ENCODE_PAYLOAD), lambda _: transport.last())


# test id -> (library, maker)
ENCODE_PEERS: dict[str, tuple[str, Callable[[Any, socket.socket], Case]]] = {
    "fastws encode_frame": ("fastws", _encode_fastws),
    "websockets Frame.serialize": ("websockets", _encode_websockets),
    "aiohttp WebSocketWriter": ("aiohttp", _encode_aiohttp),
    "wsproto FrameProtocol.send_data": ("wsproto", _encode_wsproto),
    "picows WSTransport.send": ("picows", _encode_picows),
}


@pytest.mark.parametrize("peer", list(ENCODE_PEERS))
def test_encode(benchmark: Any, loop: asyncio.AbstractEventLoop, idle_socket: socket.socket,
                peer: str) -> None:
    """Server frames per second, one 32-byte binary message each."""
    library, make = ENCODE_PEERS[peer]
    case = make(loop, idle_socket)
    assert case.output(case.fn(*case.args)) == SERVER_FRAME
    benchmark.group = ENCODE_GROUP
    benchmark.extra_info.update(library=library, api=peer, frames=1)
    benchmark(case.fn, *case.args)
