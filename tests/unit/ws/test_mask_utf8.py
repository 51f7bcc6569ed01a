"""The codec's two byte loops: XOR masking and incremental UTF-8 validation.

Masking is compared with a pure-Python XOR at every length near the word and
SIMD boundaries, at every key phase a split frame can produce. UTF-8 checking
is compared with Python's own decoder, and its fail-fast promise (an invalid
sequence is reported by the feed that delivers its first impossible byte) is
checked against an exact reference built from the set of every valid prefix of
every UTF-8 encoded code point.
"""

from __future__ import annotations

import codecs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastws.ws._frame import (
    OP_BINARY,
    OP_CONT,
    OP_PING,
    OP_TEXT,
    FrameParser,
    apply_mask,
    apply_mask_inplace,
)

from ..conftest import MASK_KEY, client_frame, error_code, feed_split, parse, ref_mask

SETTINGS = settings(max_examples=200, deadline=None)
KEYS = [MASK_KEY, b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x02\x04\x08"]


# --- masking -----------------------------------------------------------------

@pytest.mark.parametrize("key", KEYS)
def test_apply_mask_matches_reference_for_small_lengths(key):
    data = bytes((i * 7 + 3) & 0xFF for i in range(301))
    for n in range(301):
        assert apply_mask(data[:n], key) == ref_mask(data[:n], key), n


@pytest.mark.parametrize("n", [65535, 65536, 65537, (1 << 20) + 3, 3 * (1 << 20) + 1])
def test_apply_mask_matches_reference_for_large_sizes(n):
    # Sizes around the point where the loop runs without the GIL.
    data = bytes(range(256)) * (n // 256) + bytes(n % 256)
    expected = ref_mask(data, MASK_KEY) if n < 70000 else _fast_ref_mask(data, MASK_KEY)
    assert apply_mask(data, MASK_KEY) == expected


def _fast_ref_mask(data: bytes, key: bytes) -> bytes:
    """Big-integer XOR: same result as ``ref_mask``, fast enough for MiBs."""
    stream = (key * (len(data) // 4 + 1))[:len(data)]
    out = int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")
    return out.to_bytes(len(data), "big")


def test_fast_reference_agrees_with_reference():
    data = bytes(range(256)) * 3 + b"tail"
    assert _fast_ref_mask(data, MASK_KEY) == ref_mask(data, MASK_KEY)


def test_apply_mask_is_its_own_inverse():
    data = bytes(range(256)) * 5
    assert apply_mask(apply_mask(data, MASK_KEY), MASK_KEY) == data


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_apply_mask_accepts_bytes_like(wrap):
    data = b"some payload bytes!"
    result = apply_mask(wrap(data), wrap(MASK_KEY))
    assert type(result) is bytes
    assert result == ref_mask(data, MASK_KEY)


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_apply_mask_rejects_wrong_key_length(key):
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"data", key)
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask_inplace(bytearray(b"data"), key)


def test_mask_key_must_not_be_an_int():
    # bytes(4) is four zero bytes: an int key would silently mask nothing.
    with pytest.raises(TypeError):
        apply_mask(b"data", 4)
    with pytest.raises(TypeError):
        apply_mask_inplace(bytearray(b"data"), 4)


@pytest.mark.parametrize("offset", range(8))
def test_apply_mask_inplace_matches_reference_at_any_alignment(offset):
    # A memoryview slice puts the data at every alignment a word loop can meet.
    for n in list(range(0, 80)) + [255, 256, 257, 1000, 65536, 65541]:
        data = bytes((i * 13 + n) & 0xFF for i in range(n))
        buf = bytearray(b"\xaa" * offset + data + b"\xbb" * 8)
        apply_mask_inplace(memoryview(buf)[offset:offset + n], MASK_KEY)
        assert buf[:offset] == b"\xaa" * offset
        assert buf[offset + n:] == b"\xbb" * 8
        assert bytes(buf[offset:offset + n]) == ref_mask(data, MASK_KEY), n


def test_apply_mask_inplace_on_bytearray():
    buf = bytearray(b"hello, world")
    assert apply_mask_inplace(buf, MASK_KEY) is None
    assert bytes(buf) == ref_mask(b"hello, world", MASK_KEY)


@pytest.mark.parametrize("readonly", [b"frozen", memoryview(b"frozen")])
def test_apply_mask_inplace_needs_writable_buffer(readonly):
    with pytest.raises((BufferError, TypeError)):
        apply_mask_inplace(readonly, MASK_KEY)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 67])
def test_frame_split_at_every_offset_unmasks_at_every_phase(n):
    # Each split leaves the key at a different phase for the second feed.
    payload = bytes((i * 31 + 5) & 0xFF for i in range(n))
    frame = client_frame(OP_BINARY, payload)
    for cut in range(1, len(frame)):
        events = feed_split(FrameParser(), frame, [cut])
        assert events == [(OP_BINARY, payload)], cut


def test_frame_split_at_every_pair_of_offsets():
    payload = bytes(range(40))
    frame = client_frame(OP_BINARY, payload)
    for a in range(1, len(frame)):
        for b in range(a + 1, len(frame)):
            assert feed_split(FrameParser(), frame, [a, b]) == [(OP_BINARY, payload)], (a, b)


@pytest.mark.parametrize("phase", range(4))
def test_large_payload_resumed_at_each_phase(phase):
    # The tail after the first `phase` payload bytes is over the no-GIL
    # threshold, so the big-chunk loop runs at every phase.
    payload = bytes(range(256)) * 600 + b"odd"
    frame = client_frame(OP_BINARY, payload)
    header = len(frame) - len(payload)
    for cuts in ([header + phase], [header + phase, header + phase + 70001]):
        events = feed_split(FrameParser(), frame, cuts)
        assert events == [(OP_BINARY, payload)]


@pytest.mark.parametrize("key", KEYS)
def test_control_and_text_frames_unmask_with_any_key(key):
    stream = (client_frame(OP_TEXT, "key test ✓", mask_key=key)
              + client_frame(OP_PING, b"\x00\xff", mask_key=key))
    for cut in range(1, len(stream)):
        assert feed_split(FrameParser(), stream, [cut]) == [(OP_TEXT, "key test ✓"),
                                                            (OP_PING, b"\x00\xff")]


# --- UTF-8: an exact reference -----------------------------------------------

def _valid_prefixes() -> frozenset[bytes]:
    """Every proper prefix of the UTF-8 encoding of every scalar value.

    A proper prefix of an n-byte sequence depends only on the code point's
    bits above the last six, so code points in steps of 64 (plus the 2-byte
    range in full) reach all of them.
    """
    prefixes = set()
    for cp in list(range(0x80, 0x800)) + list(range(0x800, 0x110000, 64)):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        encoded = chr(cp).encode()
        prefixes.update(encoded[:k] for k in range(1, len(encoded)))
    return frozenset(prefixes)


VALID_PREFIXES = _valid_prefixes()


def first_invalid_index(data: bytes) -> int | None:
    """Index of the first byte after which ``data`` cannot begin valid UTF-8.

    Python's incremental decoder raises on most impossible bytes at once but
    holds ED A0..BF (a surrogate's first two bytes) for a third byte, so its
    held-back tail is also checked against the set of valid prefixes.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    for i in range(len(data)):
        try:
            decoder.decode(data[i:i + 1], False)
        except UnicodeDecodeError:
            return i
        tail = decoder.getstate()[0]
        if tail and tail not in VALID_PREFIXES:
            return i
    return None


def test_reference_knows_the_prefix_boundaries():
    assert first_invalid_index("aé€😀".encode()) is None
    assert first_invalid_index(b"\xf0\x9f\x98") is None           # incomplete, not invalid
    assert first_invalid_index(b"ab\xed\xa0\x80") == 3            # surrogate: at its 2nd byte
    assert first_invalid_index(b"\xf4\x90") == 1
    assert first_invalid_index(b"\xc3\xa9\xa9") == 2
    assert len(VALID_PREFIXES) > 17000


# Each case: bytes and the index of the first byte that makes them invalid.
INVALID_SEQUENCES = {
    "overlong-2-C0": (b"\xc0\x80", 0),
    "overlong-2-C1": (b"\xc1\xbf", 0),
    "overlong-3": (b"\xe0\x80\x80", 1),
    "overlong-3-max": (b"\xe0\x9f\xbf", 1),
    "overlong-4": (b"\xf0\x80\x80\x80", 1),
    "overlong-4-max": (b"\xf0\x8f\xbf\xbf", 1),
    "overlong-slash": (b"a\xc0\xafb", 1),
    "surrogate-low": (b"\xed\xa0\x80", 1),
    "surrogate-high": (b"\xed\xbf\xbf", 1),
    "surrogate-pair": (b"\xed\xa0\xbd\xed\xb8\x80", 1),
    "above-10FFFF-F4": (b"\xf4\x90\x80\x80", 1),
    "above-10FFFF-F5": (b"\xf5\x80\x80\x80", 0),
    "lead-F7": (b"\xf7\xbf\xbf\xbf", 0),
    "lead-F8": (b"\xf8\x88\x80\x80\x80", 0),
    "lead-FE": (b"\xfe", 0),
    "lead-FF": (b"x\xff", 1),
    "stray-continuation": (b"\x80", 0),
    "stray-continuation-after-ascii": (b"abc\xbf", 3),
    "extra-continuation": (b"\xc3\xa9\xa9", 2),
    "missing-continuation": (b"\xe2\x28\xa1", 1),
    "ascii-after-lead": (b"\xc3(", 1),
    "lead-after-lead": (b"\xe2\x82\xe2\x82\xac", 2),
    "after-long-ascii-run": (b"a" * 37 + b"\x80" + b"a" * 40, 37),
}
TRUNCATED_AT_END = [b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"ok\xf4\x8f\xbf", b"\xe0\xa0"]
BOUNDARY_CHARS = ["\x00", "\x7f", "\x80", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\ufffd",
                  "\uffff", "\U00010000", "\U0001f600", "\U0010ffff"]


def test_case_table_matches_reference():
    for name, (data, index) in INVALID_SEQUENCES.items():
        assert first_invalid_index(data) == index, name


@pytest.mark.parametrize("name", list(INVALID_SEQUENCES))
def test_invalid_sequence_in_single_frame_is_1007(name):
    data, _ = INVALID_SEQUENCES[name]
    assert error_code(parse(client_frame(OP_TEXT, data))) == 1007
    # Also when the frame's payload arrives in pieces (the incremental path).
    frame = client_frame(OP_TEXT, data)
    assert error_code(feed_split(FrameParser(), frame, range(7, len(frame)))) == 1007


@pytest.mark.parametrize("name", list(INVALID_SEQUENCES))
def test_invalid_sequence_fails_fast_in_unfinished_message(name):
    # The first fragment ends with the invalid byte and no final frame ever
    # comes: the parser must still answer 1007 now.
    data, index = INVALID_SEQUENCES[name]
    parser = FrameParser()
    events = parser.feed(client_frame(OP_TEXT, data[:index + 1], fin=False))
    assert error_code(events) == 1007
    # One byte short of the invalid one, nothing is wrong yet.
    parser = FrameParser()
    assert parser.feed(client_frame(OP_TEXT, data[:index], fin=False)) == []


@pytest.mark.parametrize("name", list(INVALID_SEQUENCES))
def test_invalid_sequence_fails_fast_across_fragments(name):
    # One byte per fragment, with pings between, and the message left open.
    data, index = INVALID_SEQUENCES[name]
    parser = FrameParser()
    for i in range(index + 1):
        opcode = OP_TEXT if i == 0 else OP_CONT
        events = parser.feed(client_frame(opcode, data[i:i + 1], fin=False)
                             + client_frame(OP_PING, b"%d" % i))
        if i < index:
            assert events == [(OP_PING, b"%d" % i)]
        else:
            assert error_code(events) == 1007 and len(events) == 1


@pytest.mark.parametrize("name", list(INVALID_SEQUENCES))
def test_invalid_sequence_fails_fast_within_one_frame(name):
    # A single unfinished frame whose payload arrives one byte per feed.
    data, index = INVALID_SEQUENCES[name]
    frame = client_frame(OP_TEXT, data + b"....", fin=False)
    header = len(frame) - len(data) - 4
    parser = FrameParser()
    assert parser.feed(frame[:header]) == []
    for i in range(index):
        assert parser.feed(frame[header + i:header + i + 1]) == []
    assert error_code(parser.feed(frame[header + index:header + index + 1])) == 1007


@pytest.mark.parametrize("data", TRUNCATED_AT_END)
def test_sequence_truncated_at_message_end_is_1007(data):
    assert error_code(parse(client_frame(OP_TEXT, data))) == 1007
    # Unfinished message: still a valid beginning, so no verdict yet.
    parser = FrameParser()
    assert parser.feed(client_frame(OP_TEXT, data, fin=False)) == []
    assert error_code(parser.feed(client_frame(OP_CONT, b""))) == 1007


def test_sequence_completed_in_next_fragment_is_fine():
    stream = client_frame(OP_TEXT, b"\xe2\x82", fin=False) + client_frame(OP_CONT, b"\xac")
    assert parse(stream) == [(OP_TEXT, "€")]


def test_boundary_code_points_accepted():
    text = "".join(BOUNDARY_CHARS)
    assert parse(client_frame(OP_TEXT, text)) == [(OP_TEXT, text)]
    frames = b"".join(client_frame(OP_TEXT if i == 0 else OP_CONT, c,
                                   fin=i == len(BOUNDARY_CHARS) - 1)
                      for i, c in enumerate(BOUNDARY_CHARS))
    assert parse(frames) == [(OP_TEXT, text)]


@pytest.mark.parametrize("char", ["é", "€", "\ud7ff", "\U00010000", "😀", "\U0010ffff"])
def test_multibyte_char_split_across_every_fragment_boundary(char):
    data = ("a" + char + "b").encode()
    for a in range(len(data) + 1):
        for b in range(a, len(data) + 1):
            stream = (client_frame(OP_TEXT, data[:a], fin=False)
                      + client_frame(OP_PING, b"")
                      + client_frame(OP_CONT, data[a:b], fin=False)
                      + client_frame(OP_CONT, data[b:]))
            assert parse(stream) == [(OP_PING, b""), (OP_TEXT, "a" + char + "b")], (a, b)


@pytest.mark.parametrize("char", ["é", "€", "😀", "\U0010ffff"])
def test_multibyte_char_split_across_every_feed_boundary(char):
    frame = client_frame(OP_TEXT, "a" + char + "b")
    for a in range(1, len(frame)):
        for b in range(a, len(frame)):
            assert feed_split(FrameParser(), frame, [a, b]) == [(OP_TEXT, "a" + char + "b")]


def test_utf8_state_resets_between_messages():
    # A continuation byte opening the next message is stray, not the end of
    # the previous message's character: each message is judged on its own.
    stream = client_frame(OP_TEXT, "é") + client_frame(OP_TEXT, b"\xa9")
    events = parse(stream)
    assert events[0] == (OP_TEXT, "é")
    assert error_code(events) == 1007


def test_binary_messages_are_not_utf8_checked():
    data = b"\xff\xfe\xed\xa0\x80\xc0"
    stream = client_frame(OP_BINARY, data[:3], fin=False) + client_frame(OP_CONT, data[3:])
    assert parse(stream) == [(OP_BINARY, data)]
    assert parse(client_frame(OP_PING, data)) == [(OP_PING, data)]


# --- UTF-8: against Python's decoder on random bytes -----------------------

# Mostly-valid text with occasional raw bytes spliced in finds the interesting
# boundaries far more often than uniform random bytes.
utf8ish = st.one_of(
    st.binary(max_size=40),
    st.lists(st.one_of(st.text(max_size=6).map(str.encode),
                       st.binary(min_size=1, max_size=2),
                       st.sampled_from([b"\xed\xa0", b"\xf4\x90", b"\xe0\x9f", b"\xf0\x8f",
                                        b"\xc0", b"\xc1", b"\xf5", b"\x80", b"\xbf"])),
             max_size=10).map(b"".join),
)


def python_verdict(data: bytes) -> str | None:
    """The message Python's strict decoder makes of ``data``, None if invalid."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outcome(events: list):
    """``(OP_TEXT, text)`` or ``1007`` or whatever else happened, for comparing."""
    if error_code(events) is not None:
        return error_code(events)
    return events


@SETTINGS
@given(data=utf8ish)
def test_single_frame_text_agrees_with_python(data):
    expected = python_verdict(data)
    result = outcome(parse(client_frame(OP_TEXT, data)))
    assert result == (1007 if expected is None else [(OP_TEXT, expected)])


@SETTINGS
@given(data=utf8ish, frags=st.lists(st.integers(0, 40), max_size=5),
       feeds=st.lists(st.integers(1, 200), max_size=6))
def test_fragmented_text_agrees_with_python(data, frags, feeds):
    expected = python_verdict(data)
    cuts = sorted({0, len(data), *(c for c in frags if c <= len(data))})
    stream = b"".join(client_frame(OP_TEXT if i == 0 else OP_CONT, data[a:b],
                                   fin=b == len(data))
                      for i, (a, b) in enumerate(zip(cuts, cuts[1:])))
    if len(cuts) == 1:   # empty data: one empty frame
        stream = client_frame(OP_TEXT, b"")
    result = outcome(feed_split(FrameParser(), stream, feeds))
    assert result == (1007 if expected is None else [(OP_TEXT, expected)])


@SETTINGS
@given(data=utf8ish)
def test_fail_fast_position_is_exact(data):
    # Feed an unfinished text frame's payload one byte at a time: the error
    # must come with exactly the first byte that no continuation can save.
    bad = first_invalid_index(data)
    frame = client_frame(OP_TEXT, data, fin=False)
    header = len(frame) - len(data)
    parser = FrameParser()
    assert parser.feed(frame[:header]) == []
    for i in range(len(data)):
        events = parser.feed(frame[header + i:header + i + 1])
        if i == bad:
            assert error_code(events) == 1007
            return
        assert events == [], i
    assert bad is None
    # Whole bytes valid so far: ending the message judges the tail.
    final = outcome(parser.feed(client_frame(OP_CONT, b"")))
    expected = python_verdict(data)
    assert final == (1007 if expected is None else [(OP_TEXT, expected)])


@SETTINGS
@given(prefix=st.text(max_size=5), reason=utf8ish)
def test_close_reason_agrees_with_python(prefix, reason):
    reason = prefix.encode()[:100] + reason[:20]
    expected = python_verdict(reason)
    events = parse(client_frame(0x8, b"\x03\xe8" + reason))
    assert outcome(events) == (1007 if expected is None else [(0x8, (1000, expected))])
