"""Every RFC 6455 rule a server's frame parser must enforce, one test each.

Frames are built by the pure-Python helpers in ``conftest`` (not by the codec's
own encoder), so a rule is checked against an independent reading of the RFC.
Header rules are checked with only the header fed, to show the parser judges a
frame before waiting for (or buffering) its payload.
"""

from __future__ import annotations

import pytest

from fastws.ws._frame import (
    ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    FrameParser,
    ProtocolError,
)

from ..conftest import (
    client_frame,
    close_payload,
    error_code,
    feed_bytewise,
    feed_split,
    parse,
)

UNKNOWN_OPCODES = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]
CONTROL_OPCODES = [OP_CLOSE, OP_PING, OP_PONG]
INVALID_CLOSE_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999,
                       5000, 65535]
VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                     1014, 3000, 3999, 4000, 4999]


def header_of(frame: bytes) -> bytes:
    """The header of a masked ``client_frame`` (mask key included), no payload."""
    code = frame[1] & 0x7F
    return frame[:2 + {126: 2, 127: 8}.get(code, 0) + 4]


def assert_error(events: list, code: int) -> ProtocolError:
    """``events`` end in exactly one ERROR carrying close ``code``."""
    assert error_code(events) == code, events
    error = events[-1][1]
    assert isinstance(error, ProtocolError)
    # The reason goes out in a close frame: ASCII and within 123 bytes.
    assert error.reason and error.reason.isascii() and len(error.reason) <= 123
    return error


# --- masking ---------------------------------------------------------------

@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE])
def test_unmasked_client_frame_is_1002(opcode):
    frame = client_frame(opcode, b"", mask_key=None)
    assert_error(parse(frame), 1002)


def test_unmasked_continuation_is_1002():
    stream = client_frame(OP_TEXT, "a", fin=False) + client_frame(OP_CONT, "b", mask_key=None)
    events = parse(stream)
    assert_error(events, 1002)
    assert len(events) == 1


def test_unmasked_frame_judged_from_its_header():
    # 16-bit length, unmasked: the 4-byte header is all the parser needs.
    frame = client_frame(OP_BINARY, b"x" * 300, mask_key=None)
    assert_error(parse(frame[:4]), 1002)


def test_unmasked_frames_accepted_when_masking_not_required():
    stream = (client_frame(OP_TEXT, "hi", mask_key=None)
              + client_frame(OP_PING, b"p", mask_key=None))
    assert parse(stream, mask_required=False) == [(OP_TEXT, "hi"), (OP_PING, b"p")]


# --- reserved bits -----------------------------------------------------------

@pytest.mark.parametrize("rsv", range(1, 8))
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_reserved_bits_without_extension_are_1002(rsv, opcode):
    frame = client_frame(opcode, b"", rsv=rsv)
    assert_error(parse(frame), 1002)


@pytest.mark.parametrize("rsv", [4, 2, 1])
def test_reserved_bit_on_continuation_is_1002(rsv):
    stream = client_frame(OP_BINARY, b"a", fin=False) + client_frame(OP_CONT, b"b", rsv=rsv)
    assert_error(parse(stream), 1002)


def test_reserved_bit_judged_from_header():
    frame = client_frame(OP_BINARY, b"z" * 1000, rsv=4)
    assert_error(parse(header_of(frame)), 1002)


# --- opcodes -----------------------------------------------------------------

@pytest.mark.parametrize("opcode", UNKNOWN_OPCODES)
def test_unknown_opcode_is_1002(opcode):
    frame = client_frame(opcode, b"payload")
    assert_error(parse(frame), 1002)
    assert_error(parse(header_of(frame)), 1002)


@pytest.mark.parametrize("opcode", UNKNOWN_OPCODES)
def test_unknown_opcode_inside_fragmented_message_is_1002(opcode):
    stream = client_frame(OP_TEXT, "a", fin=False) + client_frame(opcode, b"")
    assert_error(parse(stream), 1002)


# --- control frames ----------------------------------------------------------

@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_control_frame_of_125_bytes_accepted(opcode):
    payload = close_payload(1000, b"r" * 123) if opcode == OP_CLOSE else b"c" * 125
    (kind, value), = parse(client_frame(opcode, payload))
    assert kind == opcode
    assert value == ((1000, "r" * 123) if opcode == OP_CLOSE else payload)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
@pytest.mark.parametrize("size", [126, 200, 65535, 65536])
def test_control_frame_over_125_bytes_is_1002(opcode, size):
    frame = client_frame(opcode, b"c" * size)
    assert_error(parse(header_of(frame)), 1002)
    assert_error(parse(frame), 1002)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_control_frame_with_long_length_form_over_125_is_1002(opcode):
    # A 64-bit length field announcing 126 bytes is still too long.
    frame = client_frame(opcode, b"c" * 126, form=64)
    assert_error(parse(frame), 1002)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_fragmented_control_frame_is_1002(opcode):
    frame = client_frame(opcode, b"", fin=False)
    assert_error(parse(frame), 1002)


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_fragmented_control_frame_inside_message_is_1002(opcode):
    stream = client_frame(OP_BINARY, b"a", fin=False) + client_frame(opcode, b"x", fin=False)
    assert_error(parse(stream), 1002)


def test_control_frames_interleaved_in_fragmented_message():
    stream = b"".join([
        client_frame(OP_TEXT, "frag", fin=False),
        client_frame(OP_PING, b"ping-1"),
        client_frame(OP_CONT, "men", fin=False),
        client_frame(OP_PONG, b"pong"),
        client_frame(OP_PING, b""),
        client_frame(OP_CONT, "ted"),
        client_frame(OP_BINARY, b"\x00\x01", fin=False),
        client_frame(OP_PING, b"ping-2"),
        client_frame(OP_CONT, b"\x02"),
    ])
    expected = [
        (OP_PING, b"ping-1"), (OP_PONG, b"pong"), (OP_PING, b""),
        (OP_TEXT, "fragmented"), (OP_PING, b"ping-2"), (OP_BINARY, b"\x00\x01\x02"),
    ]
    assert parse(stream) == expected
    assert feed_bytewise(FrameParser(), stream) == expected


def test_close_frame_inside_fragmented_message_is_delivered():
    # A close frame is a control frame, so RFC 6455 §5.4 allows it between
    # fragments; the connection layer decides what to do with the open message.
    stream = client_frame(OP_TEXT, "a", fin=False) + client_frame(OP_CLOSE, close_payload(1001))
    assert parse(stream) == [(OP_CLOSE, (1001, ""))]


# --- fragmentation -----------------------------------------------------------

@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start_is_1002(fin):
    frame = client_frame(OP_CONT, b"orphan", fin=fin)
    assert_error(parse(header_of(frame)), 1002)
    assert_error(parse(frame), 1002)


def test_continuation_after_finished_message_is_1002():
    stream = client_frame(OP_TEXT, "a", fin=False) + client_frame(OP_CONT, "b") + \
        client_frame(OP_CONT, "c")
    events = parse(stream)
    assert events[0] == (OP_TEXT, "ab")
    assert_error(events, 1002)


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second_fin", [True, False])
def test_new_data_frame_inside_fragmented_message_is_1002(first, second, second_fin):
    stream = client_frame(first, b"a", fin=False) + client_frame(second, b"b", fin=second_fin)
    events = parse(stream)
    assert_error(events, 1002)
    assert len(events) == 1


def test_new_data_frame_after_control_inside_fragmented_message_is_1002():
    stream = (client_frame(OP_BINARY, b"a", fin=False) + client_frame(OP_PING, b"")
              + client_frame(OP_BINARY, b"b"))
    events = parse(stream)
    assert events[0] == (OP_PING, b"")
    assert_error(events, 1002)


def test_empty_fragments_assemble():
    stream = b"".join([
        client_frame(OP_TEXT, b"", fin=False),
        client_frame(OP_CONT, b"", fin=False),
        client_frame(OP_CONT, b""),
        client_frame(OP_BINARY, b"", fin=False),
        client_frame(OP_CONT, b""),
    ])
    assert parse(stream) == [(OP_TEXT, ""), (OP_BINARY, b"")]


# --- lengths -----------------------------------------------------------------

@pytest.mark.parametrize("length", [1 << 63, (1 << 64) - 1, (1 << 63) + 5])
def test_64bit_length_with_top_bit_set_is_1002(length):
    frame = client_frame(OP_BINARY, b"", length=length)
    # Only the header exists: the parser must not wait for 2**63 bytes.
    assert_error(parse(frame), 1002)
    assert_error(parse(frame, max_message_size=None), 1002)


def test_non_minimal_length_forms_accepted():
    # RFC 6455 §5.2 asks *senders* to use the minimal form; a receiver can
    # parse the others unambiguously, so they are accepted.
    stream = (client_frame(OP_BINARY, b"a" * 5, form=16)
              + client_frame(OP_TEXT, "b" * 5, form=64)
              + client_frame(OP_PING, b"c", form=16))
    assert parse(stream) == [(OP_BINARY, b"aaaaa"), (OP_TEXT, "bbbbb"), (OP_PING, b"c")]


# --- close frames ------------------------------------------------------------

def test_close_payload_of_one_byte_is_1002():
    assert_error(parse(client_frame(OP_CLOSE, b"\x03")), 1002)


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_code_is_1002(code):
    assert_error(parse(client_frame(OP_CLOSE, close_payload(code))), 1002)
    assert_error(parse(client_frame(OP_CLOSE, close_payload(code, "why"))), 1002)


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_code_accepted(code):
    assert parse(client_frame(OP_CLOSE, close_payload(code))) == [(OP_CLOSE, (code, ""))]
    assert parse(client_frame(OP_CLOSE, close_payload(code, "bye ✓"))) == \
        [(OP_CLOSE, (code, "bye ✓"))]


@pytest.mark.parametrize("reason", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80", b"abc\xe2\x82",
                                    b"\xf4\x90\x80\x80", b"\x80"])
def test_close_reason_not_utf8_is_1007(reason):
    assert_error(parse(client_frame(OP_CLOSE, close_payload(1000, reason))), 1007)


def test_invalid_close_code_wins_over_bad_reason():
    # The code is judged first; either way the connection fails.
    assert_error(parse(client_frame(OP_CLOSE, close_payload(1005, b"\xff"))), 1002)


def test_empty_close_is_1005():
    assert parse(client_frame(OP_CLOSE, b"")) == [(OP_CLOSE, (1005, ""))]


# --- after an error ----------------------------------------------------------

def test_feed_returns_nothing_after_error():
    parser = FrameParser()
    events = parser.feed(client_frame(OP_TEXT, "ok") + client_frame(5, b""))
    assert events[0] == (OP_TEXT, "ok")
    error = assert_error(events, 1002)
    assert parser.error is error
    assert error.code == 1002 and str(error).startswith("1002: ")
    assert parser.feed(client_frame(OP_TEXT, "more")) == []
    assert parser.feed(b"") == []
    assert parser.error is error


def test_bytes_after_error_in_the_same_chunk_are_ignored():
    stream = client_frame(OP_BINARY, b"a") + client_frame(OP_CONT, b"") + client_frame(OP_PING, b"")
    events = parse(stream)
    assert events[0] == (OP_BINARY, b"a")
    assert_error(events, 1002)
    assert len(events) == 2


def test_error_drops_buffered_message():
    parser = FrameParser()
    assert parser.feed(client_frame(OP_BINARY, b"x" * 500, fin=False)) == []
    assert parser.buffered == 500
    assert_error(parser.feed(client_frame(OP_TEXT, "y")), 1002)
    assert parser.buffered == 0


def test_no_error_state_on_a_fresh_parser():
    parser = FrameParser()
    assert parser.error is None
    assert parser.buffered == 0
    assert parser.feed(b"") == []


# --- max_message_size --------------------------------------------------------

def test_header_announcing_too_much_is_1009_from_the_header_alone():
    frame = client_frame(OP_BINARY, b"", length=1001)
    events = FrameParser(max_message_size=1000).feed(frame)
    assert_error(events, 1009)


def test_default_limit_is_one_mebibyte():
    assert FrameParser().max_message_size == 1 << 20
    assert_error(parse(client_frame(OP_BINARY, b"", length=(1 << 20) + 1)), 1009)
    assert_error(parse(client_frame(OP_TEXT, b"", length=1 << 40)), 1009)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_message_exactly_at_limit_accepted(opcode):
    payload = b"a" * 1000
    expected = payload.decode() if opcode == OP_TEXT else payload
    assert parse(client_frame(opcode, payload), max_message_size=1000) == [(opcode, expected)]
    stream = (client_frame(opcode, payload[:400], fin=False)
              + client_frame(OP_CONT, payload[400:999], fin=False)
              + client_frame(OP_CONT, payload[999:]))
    assert parse(stream, max_message_size=1000) == [(opcode, expected)]
    # And again with the message split one byte per feed.
    assert feed_bytewise(FrameParser(max_message_size=1000), stream) == [(opcode, expected)]


def test_fragments_crossing_limit_fail_at_the_crossing_fragment():
    parser = FrameParser(max_message_size=1000)
    assert parser.feed(client_frame(OP_BINARY, b"a" * 600, fin=False)) == []
    assert parser.feed(client_frame(OP_PING, b"still fine")) == [(OP_PING, b"still fine")]
    assert parser.feed(client_frame(OP_CONT, b"b" * 400, fin=False)) == []
    # 1000 bytes held; a one-byte fragment crosses the limit. Its header alone
    # must trigger the failure, before any payload is buffered.
    crossing = client_frame(OP_CONT, b"c" * 10)
    assert_error(parser.feed(header_of(crossing)), 1009)
    assert parser.buffered == 0


def test_limit_counts_whole_message_not_frame():
    stream = client_frame(OP_TEXT, "a" * 60, fin=False) + client_frame(OP_CONT, "b" * 60)
    events = parse(stream, max_message_size=100)
    assert_error(events, 1009)
    assert len(events) == 1


def test_limit_resets_between_messages():
    stream = b"".join(client_frame(OP_BINARY, b"m" * 100) for _ in range(5))
    assert parse(stream, max_message_size=100) == [(OP_BINARY, b"m" * 100)] * 5


def test_control_frames_do_not_count_toward_limit():
    stream = (client_frame(OP_BINARY, b"a" * 100, fin=False)
              + client_frame(OP_PING, b"p" * 125)
              + client_frame(OP_CONT, b""))
    assert parse(stream, max_message_size=100) == [(OP_PING, b"p" * 125), (OP_BINARY, b"a" * 100)]


def test_no_limit_with_none():
    parser = FrameParser(max_message_size=None)
    assert parser.max_message_size is None   # reads back as it was given
    size = (1 << 20) + 1
    events = parser.feed(client_frame(OP_BINARY, b"", length=1 << 40))
    assert events == []   # a 1 TiB frame header is fine; the payload never comes
    stream = client_frame(OP_BINARY, b"x" * size)
    assert parse(stream, max_message_size=None) == [(OP_BINARY, b"x" * size)]
    assert_error(parse(stream), 1009)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_message_size_must_be_positive(bad):
    with pytest.raises(ValueError, match="max_message_size"):
        FrameParser(max_message_size=bad)


# --- input types and splitting ----------------------------------------------

MIXED_STREAM = b"".join([
    client_frame(OP_TEXT, "héllo"),
    client_frame(OP_BINARY, bytes(range(256))),
    client_frame(OP_PING, b"\x00ping"),
    client_frame(OP_TEXT, "frag ", fin=False),
    client_frame(OP_PONG, b""),
    client_frame(OP_CONT, "ment 😀"),
    client_frame(OP_CLOSE, close_payload(1000, "done")),
])
MIXED_EVENTS = [
    (OP_TEXT, "héllo"), (OP_BINARY, bytes(range(256))), (OP_PING, b"\x00ping"),
    (OP_PONG, b""), (OP_TEXT, "frag ment 😀"), (OP_CLOSE, (1000, "done")),
]


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview,
                                  lambda b: memoryview(bytearray(b"pad" + b + b"pad"))[3:-3]],
                         ids=["bytes", "bytearray", "memoryview", "memoryview-slice"])
def test_feed_accepts_bytes_like(wrap):
    assert FrameParser().feed(wrap(MIXED_STREAM)) == MIXED_EVENTS


def test_feed_rejects_str():
    with pytest.raises(TypeError):
        FrameParser().feed("not bytes")


def test_results_do_not_alias_the_input_buffer():
    buf = bytearray(MIXED_STREAM)
    events = FrameParser().feed(memoryview(buf))
    buf[:] = bytes(len(buf))
    assert events == MIXED_EVENTS


ONE_OF_EACH = {
    "text-empty": (client_frame(OP_TEXT, ""), [(OP_TEXT, "")]),
    "text-7bit": (client_frame(OP_TEXT, "ünïcode 😀"), [(OP_TEXT, "ünïcode 😀")]),
    "text-16bit": (client_frame(OP_TEXT, "é" * 1000), [(OP_TEXT, "é" * 1000)]),
    "text-64bit": (client_frame(OP_TEXT, "€" * 30000), [(OP_TEXT, "€" * 30000)]),
    "binary-empty": (client_frame(OP_BINARY, b""), [(OP_BINARY, b"")]),
    "binary-7bit": (client_frame(OP_BINARY, b"\xff\x00" * 10), [(OP_BINARY, b"\xff\x00" * 10)]),
    "binary-16bit": (client_frame(OP_BINARY, bytes(range(256)) * 4),
                     [(OP_BINARY, bytes(range(256)) * 4)]),
    "binary-64bit": (client_frame(OP_BINARY, b"\x81" * 70000), [(OP_BINARY, b"\x81" * 70000)]),
    "ping": (client_frame(OP_PING, b"p" * 125), [(OP_PING, b"p" * 125)]),
    "ping-empty": (client_frame(OP_PING, b""), [(OP_PING, b"")]),
    "pong": (client_frame(OP_PONG, b"pong"), [(OP_PONG, b"pong")]),
    "close": (client_frame(OP_CLOSE, close_payload(4000, "bye")), [(OP_CLOSE, (4000, "bye"))]),
    "close-empty": (client_frame(OP_CLOSE, b""), [(OP_CLOSE, (1005, ""))]),
    "fragmented-text": (client_frame(OP_TEXT, "a😀", fin=False)
                        + client_frame(OP_PING, b"!") + client_frame(OP_CONT, "z"),
                        [(OP_PING, b"!"), (OP_TEXT, "a😀z")]),
    "fragmented-binary": (client_frame(OP_BINARY, b"12", fin=False)
                          + client_frame(OP_CONT, b"34" * 100, fin=False)
                          + client_frame(OP_CONT, b"5"),
                          [(OP_BINARY, b"12" + b"34" * 100 + b"5")]),
    "unmasked-error": (client_frame(OP_TEXT, "x", mask_key=None), None),
    "mixed": (MIXED_STREAM, MIXED_EVENTS),
}


@pytest.mark.parametrize("name", list(ONE_OF_EACH))
def test_one_byte_at_a_time(name):
    stream, expected = ONE_OF_EACH[name]
    events = feed_bytewise(FrameParser(), stream)
    if expected is None:
        assert_error(events, 1002)
    else:
        assert events == expected
        assert FrameParser().feed(stream) == expected


@pytest.mark.parametrize("name", ["text-16bit", "binary-64bit", "mixed", "fragmented-text"])
@pytest.mark.parametrize("chunk", [2, 3, 5, 13, 14, 15, 127])
def test_fixed_chunk_sizes(name, chunk):
    stream, expected = ONE_OF_EACH[name]
    cuts = range(chunk, len(stream), chunk)
    assert feed_split(FrameParser(), stream, cuts) == expected


@pytest.mark.parametrize("chunk", [1000, 4093, 65536 + 7])
def test_large_binary_frame_in_small_chunks(chunk):
    payload = bytes(range(251)) * (5 * (1 << 20) // 251)     # ~5 MiB, not key-aligned
    stream = client_frame(OP_BINARY, payload) + client_frame(OP_PING, b"after")
    parser = FrameParser(max_message_size=8 << 20)
    events = feed_split(parser, stream, range(chunk, len(stream), chunk))
    assert events == [(OP_BINARY, payload), (OP_PING, b"after")]
    assert parser.buffered == 0


def test_large_fragmented_text_in_small_chunks():
    # 3 MiB of mixed-width characters in fragments cut at arbitrary byte
    # offsets, so UTF-8 sequences straddle fragments and feed() calls.
    text = ("aé€😀" * (3 * (1 << 20) // 10))
    data = text.encode()
    cuts = [0, 1, 777_777, 1_500_001, 2_999_999, len(data)]
    stream = b"".join(
        client_frame(OP_TEXT if i == 0 else OP_CONT, data[a:b], fin=(b == len(data)))
        + (client_frame(OP_PING, b"%d" % i) if b != len(data) else b"")
        for i, (a, b) in enumerate(zip(cuts, cuts[1:]))
    )
    events = feed_split(FrameParser(max_message_size=None), stream, range(4099, len(stream), 4099))
    assert events == [(OP_PING, b"%d" % i) for i in range(4)] + [(OP_TEXT, text)]


def test_large_single_text_frame_in_one_feed():
    text = "ß" * (2 << 20)
    assert parse(client_frame(OP_TEXT, text), max_message_size=None) == [(OP_TEXT, text)]
