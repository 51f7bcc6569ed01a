"""The encoder, and encode -> feed round trips as hypothesis properties.

Encoder output is checked byte for byte against the independent builder in
``conftest``; round trips then push random conversations (text and binary
messages cut into random fragments, control frames between the fragments,
random mask keys) through ``encode_frame`` and back through ``FrameParser``
with the byte stream split at random points.
"""

from __future__ import annotations

import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.ws._frame import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    encode_close,
    encode_frame,
    frame_header,
    is_valid_close_code,
)

from ..conftest import MASK_KEY, client_frame, feed_split, length_field

SETTINGS = settings(max_examples=200, deadline=None)
OPCODES = [OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]
BAD_OPCODES = [-1, 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF, 16, 0x81]
LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 65537]


# --- headers -----------------------------------------------------------------

def expected_header(opcode: int, n: int, fin: bool = True, rsv1: bool = False) -> bytes:
    """An unmasked header as RFC 6455 §5.2 lays it out."""
    code, extended = length_field(n)
    return bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode, code]) + extended


@pytest.mark.parametrize("n", LENGTHS + [1 << 32, (1 << 63) - 1])
def test_frame_header_length_forms(n):
    header = frame_header(OP_BINARY, n)
    assert header == expected_header(OP_BINARY, n)
    assert len(header) == (2 if n <= 125 else 4 if n <= 65535 else 10)


@pytest.mark.parametrize("n", LENGTHS)
def test_encode_frame_length_forms(n):
    payload = bytes(range(256)) * (n // 256) + bytes(range(n % 256))
    frame = encode_frame(OP_BINARY, payload)
    assert frame == expected_header(OP_BINARY, n) + payload
    assert frame == frame_header(OP_BINARY, n) + payload


@pytest.mark.parametrize("fin", [True, False])
@pytest.mark.parametrize("rsv1", [True, False])
@pytest.mark.parametrize("opcode", [OP_CONT, OP_TEXT, OP_BINARY])
def test_fin_and_rsv1_bits(fin, rsv1, opcode):
    frame = encode_frame(opcode, b"abc", fin=fin, rsv1=rsv1)
    assert frame == expected_header(opcode, 3, fin, rsv1) + b"abc"
    assert frame_header(opcode, 3, fin=fin, rsv1=rsv1) == frame[:2]
    # RSV2 and RSV3 are never set by the encoder.
    assert frame[0] & 0x30 == 0


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_control_frames_encode(opcode):
    assert encode_frame(opcode, b"c" * 125) == expected_header(opcode, 125) + b"c" * 125
    assert encode_frame(opcode, b"") == bytes([0x80 | opcode, 0])


@pytest.mark.parametrize("text", ["", "ascii", "héllo wörld", "€😀\U0010ffff", "é" * 70000])
def test_str_payload_is_utf8(text):
    data = text.encode()
    assert encode_frame(OP_TEXT, text) == expected_header(OP_TEXT, len(data)) + data


def test_str_subclass_payload_is_utf8():
    class Name(str):
        pass

    assert encode_frame(OP_TEXT, Name("né")) == encode_frame(OP_TEXT, "né")


def test_str_with_lone_surrogate_is_refused():
    with pytest.raises(UnicodeEncodeError):
        encode_frame(OP_TEXT, "\ud800")


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_bytes_like_payloads(wrap):
    assert encode_frame(OP_BINARY, wrap(b"\x00\xff" * 100)) == \
        expected_header(OP_BINARY, 200) + b"\x00\xff" * 100


def test_payload_must_be_bytes_like_or_str():
    with pytest.raises(TypeError):
        encode_frame(OP_BINARY, 12345)


@pytest.mark.parametrize("opcode", BAD_OPCODES)
def test_bad_opcode_raises(opcode):
    with pytest.raises(ValueError, match="opcode"):
        encode_frame(opcode, b"")
    with pytest.raises(ValueError, match="opcode"):
        frame_header(opcode, 0)


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
@pytest.mark.parametrize("payload", [
    b"x" * 126,
    "x" * 126,
    "é" * 63,                                   # 63 characters, 126 bytes
    memoryview(array.array("I", range(32))),    # 32 items, 128 bytes
], ids=["bytes", "str", "str-multibyte", "wide-memoryview"])
def test_oversized_control_payload_raises(opcode, payload):
    with pytest.raises(ValueError, match="125"):
        encode_frame(opcode, payload)
    with pytest.raises(ValueError, match="125"):
        encode_frame(opcode, payload, mask_key=MASK_KEY)


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_oversized_control_header_raises(opcode):
    assert frame_header(opcode, 125) == expected_header(opcode, 125)
    with pytest.raises(ValueError, match="125"):
        frame_header(opcode, 126)


def test_negative_length_raises():
    with pytest.raises(ValueError):
        frame_header(OP_BINARY, -1)


# --- masked (client) encoding --------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 3, 4, 5, 125, 126, 1000, 65536])
@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, list])
def test_masked_encoding_matches_builder(n, wrap):
    payload = bytes((i * 3) & 0xFF for i in range(n))
    frame = encode_frame(OP_BINARY, payload, mask_key=wrap(MASK_KEY))
    assert frame == client_frame(OP_BINARY, payload)


def test_masked_str_payload():
    assert encode_frame(OP_TEXT, "héllo", mask_key=MASK_KEY) == client_frame(OP_TEXT, "héllo")


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_mask_key_length_checked(key):
    with pytest.raises(ValueError, match="4 bytes"):
        encode_frame(OP_BINARY, b"data", mask_key=key)


def test_mask_key_int_refused():
    with pytest.raises(TypeError):
        encode_frame(OP_BINARY, b"data", mask_key=4)


# --- encode_close and close codes ----------------------------------------------

def test_encode_close_default():
    assert encode_close() == b"\x88\x02\x03\xe8"


@pytest.mark.parametrize("code", [1000, 1001, 1003, 1011, 1014, 3000, 4999])
def test_encode_close_with_reason(code):
    reason = "gone ✓"
    payload = code.to_bytes(2, "big") + reason.encode()
    assert encode_close(code, reason) == expected_header(OP_CLOSE, len(payload)) + payload


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_encode_close_refuses_codes_not_for_the_wire(code):
    with pytest.raises(ValueError, match="close code"):
        encode_close(code)


def test_encode_close_reason_limit_is_in_bytes():
    assert len(encode_close(1000, "r" * 123)) == 2 + 125
    assert len(encode_close(1000, "é" * 61 + "r")) == 2 + 125
    with pytest.raises(ValueError, match="123"):
        encode_close(1000, "r" * 124)
    with pytest.raises(ValueError, match="123"):
        encode_close(1000, "é" * 62)


def test_encode_close_reason_must_be_str():
    with pytest.raises(TypeError):
        encode_close(1000, b"bytes")


def test_is_valid_close_code_everywhere():
    wire = set(range(1000, 1004)) | set(range(1007, 1015)) | set(range(3000, 5000))
    for code in range(-5, 70000):
        assert is_valid_close_code(code) == (code in wire), code


# --- round trips -----------------------------------------------------------------

control_payloads = st.binary(max_size=125)
mask_keys = st.binary(min_size=4, max_size=4)


@st.composite
def conversations(draw):
    """A list of ``(frames, expected_events)`` pairs making one conversation.

    Each data message is cut into fragments at random byte offsets (text
    included, so fragments end mid-character), with control frames between
    fragments. Frames are ``(opcode, payload, fin)`` with a mask key each.
    """
    frames = []
    events = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
        if kind in ("ping", "pong"):
            opcode = OP_PING if kind == "ping" else OP_PONG
            payload = draw(control_payloads)
            frames.append((opcode, payload, True, draw(mask_keys)))
            events.append((opcode, payload))
            continue
        if kind == "text":
            value = draw(st.text(max_size=60))
            data, opcode = value.encode(), OP_TEXT
        else:
            value = data = draw(st.binary(max_size=300))
            opcode = OP_BINARY
        cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=4))))
        bounds = [0] + cuts + [len(data)]
        pieces = [data[a:b] for a, b in zip(bounds, bounds[1:])]
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            frames.append((opcode if i == 0 else OP_CONT, piece, last, draw(mask_keys)))
            if not last and draw(st.booleans()):
                ping = draw(control_payloads)
                frames.append((OP_PING, ping, True, draw(mask_keys)))
                events.append((OP_PING, ping))
        events.append((opcode, value))
    if draw(st.booleans()):
        code = draw(st.sampled_from([1000, 1001, 1008, 1011, 3000, 4999]))
        reason = draw(st.text(max_size=20).filter(lambda r: len(r.encode()) <= 123))
        frames.append((OP_CLOSE, encode_close(code, reason)[2:], True, draw(mask_keys)))
        events.append((OP_CLOSE, (code, reason)))
    return frames, events


@SETTINGS
@given(conversation=conversations(), feeds=st.lists(st.integers(0, 2000), max_size=10))
def test_round_trip_masked(conversation, feeds):
    frames, expected = conversation
    stream = b"".join(encode_frame(op, payload, fin=fin, mask_key=key)
                      for op, payload, fin, key in frames)
    assert feed_split(FrameParser(), stream, feeds) == expected


@SETTINGS
@given(conversation=conversations(), feeds=st.lists(st.integers(0, 2000), max_size=10))
def test_round_trip_unmasked(conversation, feeds):
    # Server-style frames, read back by a parser that does not require masks.
    frames, expected = conversation
    stream = b"".join(encode_frame(op, payload, fin=fin) for op, payload, fin, _ in frames)
    parser = FrameParser(mask_required=False)
    assert feed_split(parser, stream, feeds) == expected


@SETTINGS
@given(conversation=conversations(), feeds=st.lists(st.integers(0, 2000), max_size=10))
def test_round_trip_with_str_payloads(conversation, feeds):
    # Unfragmented text messages handed to the encoder as str (fragments of
    # text may end mid-character, so those stay bytes).
    frames, expected = conversation
    chunks = []
    for op, payload, fin, key in frames:
        if op == OP_TEXT and fin:
            payload = payload.decode()
        chunks.append(encode_frame(op, payload, fin=fin, mask_key=key))
    assert feed_split(FrameParser(), b"".join(chunks), feeds) == expected


@SETTINGS
@given(opcode=st.sampled_from(OPCODES), payload=st.binary(max_size=200), fin=st.booleans(),
       rsv1=st.booleans(), key=st.one_of(st.none(), mask_keys))
def test_encoder_matches_builder(opcode, payload, fin, rsv1, key):
    if opcode >= 0x8:
        payload = payload[:125]
        if not fin or rsv1:
            # RFC 6455 §5.5: control frames are never fragmented, and
            # permessage-deflate never applies to them.
            with pytest.raises(ValueError, match="control frames"):
                encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=key)
            with pytest.raises(ValueError, match="control frames"):
                frame_header(opcode, len(payload), fin=fin, rsv1=rsv1)
            return
    frame = encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask_key=key)
    assert frame == client_frame(opcode, payload, fin=fin, rsv=4 if rsv1 else 0, mask_key=key)
    if key is None:
        assert frame == frame_header(opcode, len(payload), fin=fin, rsv1=rsv1) + payload


@SETTINGS
@given(data=st.binary(max_size=3000), feeds=st.lists(st.integers(0, 3100), max_size=8))
def test_split_points_never_change_the_events(data, feeds):
    # Arbitrary bytes, valid or not: how they are cut must not matter.
    whole = FrameParser(mask_required=False).feed(data)
    split = feed_split(FrameParser(mask_required=False), data, feeds)
    assert _comparable(split) == _comparable(whole)


def _comparable(events: list) -> list:
    """Events with each ProtocolError reduced to its code (errors are fresh objects)."""
    return [(kind, value.code if kind == -1 else value) for kind, value in events]
