"""The backplane's envelope (``fastws.cluster.envelope``): what one node writes on
a room's channel and what every other node reads back, as bytes only."""

from __future__ import annotations

import pytest

from fastws.cluster import ENVELOPE_VERSION, HEADER_SIZE
from fastws.cluster.envelope import NODE_ID_SIZE, header, origin, pack, unpack

NODE = bytes(range(1, 9))
OTHER = b"\xff" * 8


@pytest.mark.parametrize("opcode, payload", [
    (1, b"hello"),
    (1, "h\u00e9llo \u2603 \U0001f600".encode()),
    (2, b"\x00\x01\xfe\xff" * 100),
    (2, b""),
    (1, b""),
    (2, b"\r\n$5\r\n*1\r\n"),          # RESP-looking bytes are just payload
])
def test_round_trip_keeps_node_opcode_and_payload(opcode, payload):
    data = pack(NODE, opcode, payload)
    assert len(data) == HEADER_SIZE + len(payload)
    assert unpack(data) == (NODE, opcode, payload)


def test_the_layout_is_version_node_opcode_payload():
    assert (ENVELOPE_VERSION, NODE_ID_SIZE, HEADER_SIZE) == (1, 8, 10)
    assert pack(NODE, 2, b"xy") == b"\x01" + NODE + b"\x02" + b"xy"
    assert header(NODE, 1) == b"\x01" + NODE + b"\x01"
    # A node knows its own echo by this prefix alone, whatever the opcode.
    assert origin(NODE) == b"\x01" + NODE
    assert pack(NODE, 1, b"a").startswith(origin(NODE))
    assert pack(NODE, 2, b"a").startswith(origin(NODE))
    assert not pack(OTHER, 1, b"a").startswith(origin(NODE))


def test_text_payload_is_sent_as_utf8_and_binary_as_given():
    room_text = "sal\u00fct \u4e16\u754c"
    assert unpack(pack(NODE, 1, room_text)) == (NODE, 1, room_text.encode("utf-8"))
    assert unpack(pack(NODE, 2, bytearray(b"\x80\x81"))) == (NODE, 2, b"\x80\x81")
    assert unpack(pack(NODE, 2, memoryview(b"abc"))) == (NODE, 2, b"abc")
    # The same bytes as text and as binary stay apart: only the opcode differs.
    text, binary = pack(NODE, 1, b"same"), pack(NODE, 2, b"same")
    assert text != binary and unpack(text)[1] == 1 and unpack(binary)[1] == 2


def test_unicode_room_names_do_not_enter_the_envelope():
    # The room is the channel's name (its UTF-8 after the prefix), not a field
    # of the envelope: a message on a unicode room's channel reaches that room.
    room = "caf\u00e9 \u2603 \U0001f600 \u05e9\u05dc\u05d5\u05dd"
    relay, delivered, loop = relay_with_registry(max_message_size=1024)
    try:
        relay.room_opened(room)
        channel = relay.channel_of(room)
        assert channel == b"fastws:r:" + room.encode("utf-8")
        relay._on_push([b"message", channel, pack(OTHER, 1, room)])
        relay._on_push([b"message", b"fastws:r:" + room.encode("utf-16"), pack(OTHER, 1, b"x")])
    finally:
        loop.close()
    assert delivered == [(room, 1, room.encode("utf-8"))]


@pytest.mark.parametrize("data, says", [
    (b"", "0 bytes is shorter than its 10-byte header"),
    (b"\x01" + NODE, "9 bytes is shorter than its 10-byte header"),
    (b"\x02" + NODE + b"\x01payload", "version 2 is not 1"),
    (b"\x00" + NODE + b"\x01", "version 0 is not 1"),
    (b"\x01" + NODE + b"\x00payload", "opcode 0 is not 1 (text), 2 (binary) or 3 (JSON text)"),
    (b"\x01" + NODE + b"\x08", "opcode 8 is not"),       # a close frame's opcode
    (b"\x01" + NODE + b"\x09", "opcode 9 is not"),
    ("\x01" + "n" * 8 + "\x01", "an envelope is bytes, not str"),
    (bytearray(b"\x01" + NODE + b"\x01"), "an envelope is bytes, not bytearray"),
    (None, "an envelope is bytes, not NoneType"),
])
def test_malformed_envelopes_are_refused_with_what_is_wrong(data, says):
    with pytest.raises(ValueError) as info:
        unpack(data)
    assert says in str(info.value)


def test_a_header_alone_is_an_empty_message():
    assert unpack(b"\x01" + NODE + b"\x02") == (NODE, 2, b"")


@pytest.mark.parametrize("node", [b"short", b"x" * 9, "abcdefgh", None])
def test_a_node_id_is_eight_bytes(node):
    with pytest.raises(ValueError, match="a node id is 8 bytes"):
        pack(node, 1, b"x")
    with pytest.raises(ValueError, match="a node id is 8 bytes"):
        origin(node)


@pytest.mark.parametrize("opcode", [0, 4, 8, 9, 10, -1, 256])
def test_only_text_binary_and_json_text_are_packed(opcode):
    with pytest.raises(ValueError, match=r"1 \(text\), 2 \(binary\) or 3 \(JSON text\)"):
        pack(NODE, opcode, b"x")


def test_json_text_crosses_as_opcode_3():
    # fastws.v1 clients on the other nodes are told the payload is a JSON value.
    assert unpack(pack(NODE, 3, b'{"a":1}')) == (NODE, 3, b'{"a":1}')


@pytest.mark.parametrize("payload", [None, 12, 1.5, ["a"], {"k": "v"}])
def test_payloads_other_than_bytes_or_str_are_a_type_error(payload):
    with pytest.raises(TypeError, match="bytes-like or str"):
        pack(NODE, 2, payload)


def relay_with_registry(max_message_size: int = 16):
    """A RedisRelay over a registry that records deliveries; never connected."""
    import asyncio
    from types import SimpleNamespace

    from fastws.cluster.options import BackplaneOptions
    from fastws.cluster.relay import RedisRelay

    delivered: list = []

    class Registry:
        def deliver(self, room, opcode, payload, skip=None, position=None):
            delivered.append((room, opcode, payload))

        def size(self, room):
            return 0

    loop = asyncio.new_event_loop()
    hub = SimpleNamespace(rooms=Registry(), loop=loop,
                          options=SimpleNamespace(max_message_size=max_message_size,
                                                  history_size=0))
    return RedisRelay(hub, BackplaneOptions("redis://127.0.0.1:6379/0")), delivered, loop


def test_the_relay_counts_bad_envelopes_and_drops_them_without_delivering():
    # The relay's reader over unpack: a malformed envelope is counted and
    # dropped, the next good one still delivered; the node's own echo is
    # dropped before anything else is read.
    relay, delivered, loop = relay_with_registry(max_message_size=16)
    try:
        relay.room_opened("room")
        channel = relay.channel_of("room")
        for data in (b"\x01" + OTHER + b"\x05bad",          # unknown opcode
                     b"\x01" + OTHER,                       # shorter than the header
                     b"\x07" + OTHER + b"\x01old",          # another version
                     pack(relay._nid, 1, b"mine"),          # our own echo
                     pack(OTHER, 2, b"x" * 17),             # over max_message_size
                     pack(OTHER, 1, b"good"),
                     pack(OTHER, 2, b"\x00\xff")):
            relay._on_push([b"message", channel, data])
    finally:
        loop.close()
    assert delivered == [("room", 1, b"good"), ("room", 2, b"\x00\xff")]
    assert {k: relay.stats[k] for k in ("echoes", "bad_envelopes", "oversized", "received")} == \
        {"echoes": 1, "bad_envelopes": 3, "oversized": 1, "received": 2}
