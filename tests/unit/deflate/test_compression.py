"""permessage-deflate (RFC 7692): negotiation, bounded inflate, encode-once deflate.

Compressed data on the client's side comes from the stdlib ``zlib`` driven as
the RFC describes, from the RFC's own examples, and from the ``websockets``
library's client-side extension, so the module is checked against readings of
RFC 7692 other than its own.
"""

from __future__ import annotations

import os
import random
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension

from fastws.deflate.permessage import (
    DeflateKey,
    DeflateOptions,
    Deflater,
    InflateError,
    Inflater,
    MessageTooBig,
    Negotiated,
    negotiate,
    shared_deflater,
)

TAIL = b"\x00\x00\xff\xff"
DEFAULT_RESPONSE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
#: Options that leave every parameter to the client, so responses echo offers.
LAX = DeflateOptions(server_no_context_takeover=False, client_no_context_takeover=False)


def chat_json(n: int, seed: int = 0) -> bytes:
    """``n`` bytes of chat-like JSON text: compressible, like real traffic."""
    rng = random.Random(seed)
    words = "hello lunch deploy review the a to of tomorrow websocket thanks ok".split()
    out = []
    size = 0
    while size < n:
        item = ('{"type":"message","user":"user%04d","text":"%s"}'
                % (rng.randrange(10000), " ".join(rng.choice(words) for _ in range(12))))
        out.append(item)
        size += len(item) + 1
    return ("[" + ",".join(out) + "]").encode()[:n]


def client_compress(messages: list[bytes], bits: int = 15, context: bool = True) -> list[bytes]:
    """Messages compressed as RFC 7692 §7.2.1 says a client does, with zlib."""
    zobj = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
    out = []
    for message in messages:
        if not context:
            zobj = zlib.compressobj(6, zlib.DEFLATED, -max(bits, 9))
        data = zobj.compress(message) + zobj.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(TAIL)
        out.append(data[:-4])
    return out


def raw_inflate(payload: bytes, bits: int = 15) -> bytes:
    """A client's inflate of one message with a fresh stream (§7.2.2)."""
    return zlib.decompressobj(-bits).decompress(payload + TAIL)


def agreed(server_nct: bool = True, client_nct: bool = True, server_bits: int = 15,
           client_bits: int = 15, **kwargs) -> Negotiated:
    return Negotiated(server_nct, client_nct, server_bits, client_bits, **kwargs)


# ---------------------------------------------------------------------------
# Options


@pytest.mark.parametrize("name, value", [
    ("enabled", 1), ("server_no_context_takeover", "yes"), ("client_no_context_takeover", None),
    ("server_max_window_bits", 7), ("server_max_window_bits", 16), ("server_max_window_bits", 12.0),
    ("client_max_window_bits", 7), ("client_max_window_bits", True),
    ("mem_level", 0), ("mem_level", 10), ("level", -1), ("level", 10),
    ("compress_min_size", -1), ("compress_min_size", "128"),
])
def test_options_reject_bad_values_naming_the_option(name, value):
    with pytest.raises(ValueError, match=name):
        DeflateOptions(**{name: value})


def test_option_defaults():
    options = DeflateOptions()
    assert (options.enabled, options.server_no_context_takeover, options.client_no_context_takeover,
            options.server_max_window_bits, options.client_max_window_bits, options.mem_level,
            options.level, options.compress_min_size) == (True, True, True, 15, 15, 8, 6, 128)


# ---------------------------------------------------------------------------
# Negotiation

ACCEPTED = [
    # Firefox and Chrome offers.
    (["permessage-deflate"], DEFAULT_RESPONSE),
    (["permessage-deflate; client_max_window_bits"], DEFAULT_RESPONSE),
    (["permessage-deflate; server_no_context_takeover"], DEFAULT_RESPONSE),
    (["permessage-deflate; client_no_context_takeover"], DEFAULT_RESPONSE),
    # §7.1.2.1: an offered server limit is answered, also when it is 15.
    (["permessage-deflate; server_max_window_bits=10"], DEFAULT_RESPONSE + "; server_max_window_bits=10"),
    (["permessage-deflate; server_max_window_bits=15"], DEFAULT_RESPONSE + "; server_max_window_bits=15"),
    (["permessage-deflate; server_max_window_bits=8"], DEFAULT_RESPONSE + "; server_max_window_bits=8"),
    # §7.1.2.2: a client's hint is taken as its limit.
    (["permessage-deflate; client_max_window_bits=10"], DEFAULT_RESPONSE + "; client_max_window_bits=10"),
    (["permessage-deflate; client_max_window_bits=8"], DEFAULT_RESPONSE + "; client_max_window_bits=8"),
    (['permessage-deflate; client_max_window_bits="12"'], DEFAULT_RESPONSE + "; client_max_window_bits=12"),
    (['permessage-deflate; server_max_window_bits="1\\1"'], DEFAULT_RESPONSE + "; server_max_window_bits=11"),
    (["permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
      "server_max_window_bits=10; client_max_window_bits=11"],
     DEFAULT_RESPONSE + "; server_max_window_bits=10; client_max_window_bits=11"),
    # Case, whitespace and empty list elements.
    (["Permessage-Deflate; Server_Max_Window_Bits=9"], DEFAULT_RESPONSE + "; server_max_window_bits=9"),
    (["permessage-deflate ;client_max_window_bits = 10 "], DEFAULT_RESPONSE + "; client_max_window_bits=10"),
    (["\tpermessage-deflate\t;\tclient_max_window_bits"], DEFAULT_RESPONSE),
    ([" , ,permessage-deflate , "], DEFAULT_RESPONSE),
    # The first acceptable offer wins; others are skipped, not failed.
    (["permessage-deflate; server_max_window_bits=10, permessage-deflate"],
     DEFAULT_RESPONSE + "; server_max_window_bits=10"),
    (["permessage-deflate; server_max_window_bits=16, permessage-deflate; client_max_window_bits=9"],
     DEFAULT_RESPONSE + "; client_max_window_bits=9"),
    (["x-webkit-deflate-frame, permessage-deflate; client_max_window_bits"], DEFAULT_RESPONSE),
    (["foo; bar=baz", "permessage-deflate"], DEFAULT_RESPONSE),
    (['permessage-deflate; x="a, b", permessage-deflate; server_max_window_bits=12'],
     DEFAULT_RESPONSE + "; server_max_window_bits=12"),
    (["permessage-deflate; =5, permessage-deflate"], DEFAULT_RESPONSE),
    (['permessage-deflate; a="unterminated, b', "permessage-deflate"], DEFAULT_RESPONSE),
    (["foo/1, permessage-deflate"], DEFAULT_RESPONSE),
]

DECLINED = [
    [],
    [""],
    [" , "],
    ["x-webkit-deflate-frame"],
    ["permessage-deflate-x"],
    # §7: bad values.
    ["permessage-deflate; client_max_window_bits=7"],
    ["permessage-deflate; client_max_window_bits=16"],
    ["permessage-deflate; client_max_window_bits=08"],
    ["permessage-deflate; client_max_window_bits=+9"],
    ["permessage-deflate; client_max_window_bits=1a"],
    ['permessage-deflate; client_max_window_bits=""'],
    ['permessage-deflate; client_max_window_bits="1 0"'],
    ["permessage-deflate; server_max_window_bits"],
    ["permessage-deflate; server_max_window_bits=7"],
    ["permessage-deflate; server_max_window_bits=16"],
    ["permessage-deflate; server_no_context_takeover=1"],
    ['permessage-deflate; server_no_context_takeover=""'],
    ["permessage-deflate; client_no_context_takeover=true"],
    # §7: repeated parameters, also in another case.
    ["permessage-deflate; server_no_context_takeover; server_no_context_takeover"],
    ["permessage-deflate; client_max_window_bits; CLIENT_MAX_WINDOW_BITS=10"],
    ["permessage-deflate; server_max_window_bits=10; server_max_window_bits=10"],
    # §7: parameters not defined for an offer.
    ["permessage-deflate; foo"],
    ["permessage-deflate; foo=bar"],
    # Syntax errors.
    ["permessage-deflate;"],
    ["permessage-deflate; client_max_window_bits="],
    ["permessage-deflate client_max_window_bits"],
    ["permessage-deflate; server_max_window_bits=10 10"],
    ['permessage-deflate; client_max_window_bits="10'],
    ["permessage-deflate; server_max_window_bits=1\u0669"],
    ["permessage-deflate; server_max_window_bits=10; ; client_no_context_takeover"],
]


@pytest.mark.parametrize("headers, response", ACCEPTED)
def test_negotiate_accepts(headers, response):
    got, params = negotiate(headers, DeflateOptions())
    assert got == response
    assert params is not None


@pytest.mark.parametrize("headers", DECLINED)
def test_negotiate_declines(headers):
    assert negotiate(headers, DeflateOptions()) == (None, None)


def test_negotiate_disabled():
    assert negotiate(["permessage-deflate"], DeflateOptions(enabled=False)) == (None, None)


@pytest.mark.parametrize("offer, options, response, params", [
    # Defaults: both sides compress each message alone, full windows.
    ("permessage-deflate", DeflateOptions(), DEFAULT_RESPONSE, (True, True, 15, 15)),
    # Lax options echo what the client asked for and nothing more.
    ("permessage-deflate", LAX, "permessage-deflate", (False, False, 15, 15)),
    ("permessage-deflate; server_no_context_takeover", LAX,
     "permessage-deflate; server_no_context_takeover", (True, False, 15, 15)),
    ("permessage-deflate; client_no_context_takeover", LAX,
     "permessage-deflate; client_no_context_takeover", (False, True, 15, 15)),
    # Our server window: announced when under 15, lowered to the client's.
    ("permessage-deflate", DeflateOptions(server_max_window_bits=10),
     DEFAULT_RESPONSE + "; server_max_window_bits=10", (True, True, 10, 15)),
    ("permessage-deflate; server_max_window_bits=12", DeflateOptions(server_max_window_bits=10),
     DEFAULT_RESPONSE + "; server_max_window_bits=10", (True, True, 10, 15)),
    ("permessage-deflate; server_max_window_bits=9", DeflateOptions(server_max_window_bits=10),
     DEFAULT_RESPONSE + "; server_max_window_bits=9", (True, True, 9, 15)),
    # The client window: only told to clients that offered the parameter.
    ("permessage-deflate", DeflateOptions(client_max_window_bits=10),
     DEFAULT_RESPONSE, (True, True, 15, 15)),
    ("permessage-deflate; client_max_window_bits", DeflateOptions(client_max_window_bits=10),
     DEFAULT_RESPONSE + "; client_max_window_bits=10", (True, True, 15, 10)),
    ("permessage-deflate; client_max_window_bits=12", DeflateOptions(client_max_window_bits=10),
     DEFAULT_RESPONSE + "; client_max_window_bits=10", (True, True, 15, 10)),
    ("permessage-deflate; client_max_window_bits=9", DeflateOptions(client_max_window_bits=10),
     DEFAULT_RESPONSE + "; client_max_window_bits=9", (True, True, 15, 9)),
])
def test_negotiate_agreed_parameters(offer, options, response, params):
    got, agreed_params = negotiate([offer], options)
    assert got == response
    assert (agreed_params.server_no_context_takeover, agreed_params.client_no_context_takeover,
            agreed_params.server_max_window_bits, agreed_params.client_max_window_bits) == params
    assert (agreed_params.level, agreed_params.mem_level, agreed_params.compress_min_size) == (
        options.level, options.mem_level, options.compress_min_size)


#: Header text built from the pieces offers are made of, so that random
#: strings often come close to a valid offer.
OFFER_PIECES = st.sampled_from([
    "permessage-deflate", "x-foo", ";", ",", " ", "\t", "=", '"', "\\", "8", "9", "10", "15", "16",
    "08", "server_no_context_takeover", "client_no_context_takeover", "server_max_window_bits",
    "client_max_window_bits", "Client_Max_Window_Bits", "bogus",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(OFFER_PIECES, max_size=12).map("".join), max_size=3))
def test_negotiate_never_raises_and_answers_in_valid_syntax(headers):
    response, params = negotiate(headers, DeflateOptions())
    assert (response is None) == (params is None)
    if response is not None:
        [(name, response_params)] = parse_extension(response)
        assert name == "permessage-deflate"
        assert len({n for n, _ in response_params}) == len(response_params)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=60), max_size=3))
def test_negotiate_never_raises_on_arbitrary_text(headers):
    response, params = negotiate(headers, DeflateOptions())
    assert (response is None) == (params is None)


# ---------------------------------------------------------------------------
# Negotiated.key and the shared compressor


def test_key_is_none_with_server_context_takeover():
    assert agreed(server_nct=False).key is None
    assert agreed(server_nct=True).key == DeflateKey(15, 6, 8)


def test_keys_group_connections_that_can_share_a_frame():
    # 8 is deflated with zlib's 9 (see test_window_8_is_deflated_within_256_bytes).
    assert agreed(server_bits=8).key == agreed(server_bits=9).key
    # The client's side of the agreement does not change what we send.
    assert agreed(client_nct=False, client_bits=10).key == agreed().key
    assert agreed(server_bits=10).key != agreed().key
    assert agreed(level=1).key != agreed().key
    assert agreed(mem_level=4).key != agreed().key


def test_equal_keys_share_one_compressor():
    a, b = agreed(), agreed(client_bits=9)
    assert shared_deflater(a.key) is shared_deflater(b.key)
    assert shared_deflater(agreed(server_bits=11).key) is not shared_deflater(a.key)


def test_shared_compressor_output_decodes_for_every_window_of_the_key():
    payload = chat_json(5000)
    for bits in (9, 10, 15):
        frame = shared_deflater(agreed(server_bits=bits).key).compress(payload)
        assert raw_inflate(frame, bits) == payload


# ---------------------------------------------------------------------------
# Inflate


@pytest.mark.parametrize("payload", [
    b"\xf2\x48\xcd\xc9\xc9\x07\x00",  # §7.2.3.1: one compressed block
    b"\x00\x05\x00\xfa\xff\x48\x65\x6c\x6c\x6f\x00",  # §7.2.3.3: a stored block
    b"\xf3\x48\xcd\xc9\xc9\x07\x00\x00",  # §7.2.3.4: a block with BFINAL set
    b"\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00",  # §7.2.3.5: two blocks
])
@pytest.mark.parametrize("client_nct", [True, False])
def test_rfc_examples_inflate_to_hello(payload, client_nct):
    inflater = Inflater(agreed(client_nct=client_nct))
    assert inflater.decompress(payload, 100) == b"Hello"
    # The stream is usable for the next message either way.
    assert inflater.decompress(b"\xf2\x48\xcd\xc9\xc9\x07\x00", 100) == b"Hello"


def test_rfc_example_of_a_shared_window():
    # §7.2.3.2: the second "Hello" is a back reference into the first.
    inflater = Inflater(agreed(client_nct=False))
    assert inflater.decompress(b"\xf2\x48\xcd\xc9\xc9\x07\x00", 100) == b"Hello"
    assert inflater.decompress(b"\xf2\x00\x11\x00\x00", 100) == b"Hello"


def test_client_context_takeover_across_messages():
    messages = [chat_json(700, seed=1)] * 3 + [chat_json(300, seed=2)]
    compressed = client_compress(messages, context=True)
    # Repeats compress to a few bytes: they refer to the previous message.
    assert len(compressed[1]) < 20
    inflater = Inflater(agreed(client_nct=False))
    assert [inflater.decompress(c, None) for c in compressed] == messages


def test_client_no_context_takeover_resets_the_stream_each_message():
    messages = [chat_json(700, seed=1)] * 2
    # A client that keeps its context although told not to: its second message
    # refers to data our fresh stream does not have.
    compressed = client_compress(messages, context=True)
    inflater = Inflater(agreed(client_nct=True))
    assert inflater.decompress(compressed[0], None) == messages[0]
    with pytest.raises(InflateError):
        inflater.decompress(compressed[1], None)
    # A conforming client is read message after message.
    inflater = Inflater(agreed(client_nct=True))
    for c in client_compress(messages * 2, context=False):
        assert inflater.decompress(c, None) == messages[0]


@pytest.mark.parametrize("cuts", [[1], [4], [1, 2, 3], [10, 10, 500], list(range(0, 800, 7))])
def test_fragmented_message_fed_in_pieces(cuts):
    message = chat_json(3000)
    [compressed] = client_compress([message])
    inflater = Inflater(agreed(client_nct=False))
    for _ in range(2):
        out = []
        start = 0
        for cut in sorted(cuts) + [len(compressed)]:
            out.append(inflater.feed(compressed[start:cut], 10_000))
            start = max(start, cut)
        out.append(inflater.finish(10_000))
        assert b"".join(out) == message
        assert inflater.size == 0


def test_fragments_of_a_streaming_sender():
    # A sender that flushes each fragment keeps the tail on all but the last.
    zobj = zlib.compressobj(6, zlib.DEFLATED, -15)
    parts = [b"first part, ", b"second part, ", b"last part"]
    fragments = [zobj.compress(p) + zobj.flush(zlib.Z_SYNC_FLUSH) for p in parts]
    fragments[-1] = fragments[-1][:-4]
    inflater = Inflater(agreed())
    out = b"".join(inflater.feed(f, 1000) for f in fragments) + inflater.finish(1000)
    assert out == b"".join(parts)


def test_limit_is_the_decompressed_size_exactly():
    message = chat_json(5000)
    [compressed] = client_compress([message])
    assert Inflater(agreed()).decompress(compressed, 5000) == message
    with pytest.raises(MessageTooBig) as info:
        Inflater(agreed()).decompress(compressed, 4999)
    assert info.value.code == 1009


def test_limit_counts_all_fragments_of_a_message():
    message = chat_json(1200)
    [compressed] = client_compress([message])
    inflater = Inflater(agreed())
    first = inflater.feed(compressed[:len(compressed) // 2], 1000)
    assert 0 < len(first) <= 1000
    with pytest.raises(MessageTooBig):
        inflater.feed(compressed[len(compressed) // 2:], 1000)
        inflater.finish(1000)


def test_limit_applies_per_message():
    message = chat_json(900)
    inflater = Inflater(agreed(client_nct=False))
    for c in client_compress([message] * 5, context=True):
        assert inflater.decompress(c, 1000) == message


def _zeros_bomb(size: int) -> bytes:
    zobj = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = zobj.compress(bytes(size)) + zobj.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]


def test_bomb_in_one_frame_stops_at_the_limit():
    bomb = _zeros_bomb(64 << 20)  # 64 MiB of zeros in ~64 KB
    assert len(bomb) < 100_000
    limit = 256 << 10
    inflater = Inflater(agreed())
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooBig):
            inflater.decompress(bomb, limit)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Output stopped one byte past the limit, and memory never held the
    # 64 MiB (the bomb and zlib's 32 KiB window come on top of the limit).
    assert inflater.size == limit + 1
    assert peak < limit + 4 * len(bomb) + (1 << 20)


def test_one_kilobyte_frame_of_a_bomb_inflates_no_further_than_the_limit():
    bomb = _zeros_bomb(1 << 20)
    frame = bomb[:1024]
    # Without a limit this one frame holds about a megabyte.
    assert len(zlib.decompressobj(-15).decompress(frame)) > 500_000
    inflater = Inflater(agreed())
    with pytest.raises(MessageTooBig):
        inflater.feed(frame, 4096)
    assert inflater.size == 4097


def test_bomb_fed_in_fragments_fails_at_the_fragment_that_crosses_the_limit():
    bomb = _zeros_bomb(16 << 20)
    limit = 100_000
    inflater = Inflater(agreed())
    fragments = [bomb[i:i + 1024] for i in range(0, len(bomb), 1024)]
    produced = 0
    with pytest.raises(MessageTooBig):
        for count, fragment in enumerate(fragments, 1):
            produced += len(inflater.feed(fragment, limit))
            assert produced == inflater.size <= limit
    # Each 1 KiB fragment inflates to about 1 MB: the first one crosses.
    assert count == 1
    assert inflater.size == limit + 1


@pytest.mark.parametrize("payload", [
    b"\xff\xff\xff\xff",  # reserved block type 3
    b"\x00\x05\x00\x00\x00hello",  # stored block whose length check fails
    b"\xfc\xff\xff",  # dynamic block announcing 288 literal/length codes
])
def test_corrupt_input_is_1007(payload):
    with pytest.raises(InflateError) as info:
        Inflater(agreed()).decompress(payload, 1 << 20)
    assert info.value.code == 1007
    reason = info.value.reason
    assert reason.isascii() and len(reason.encode()) <= 123


def test_reference_beyond_the_window_into_an_earlier_message_is_1007():
    message = os.urandom(600)
    # The second message is a reference 600 bytes back, into the first.
    compressed = client_compress([message, message], bits=15)
    inflater = Inflater(agreed(client_nct=False, client_bits=10))
    assert [inflater.decompress(c, None) for c in compressed] == [message, message]
    inflater = Inflater(agreed(client_nct=False, client_bits=9))
    assert inflater.decompress(compressed[0], None) == message
    with pytest.raises(InflateError):
        inflater.decompress(compressed[1], None)


def test_empty_messages():
    inflater = Inflater(agreed(client_nct=False))
    [hello] = client_compress([b"hello"])
    # The §7.2.1 form of an empty message, and no bytes at all.
    assert inflater.decompress(b"\x00", 10) == b""
    assert inflater.decompress(b"", 10) == b""
    assert inflater.feed(b"", 10) == b"" and inflater.finish(10) == b""
    # None of them disturbs the stream for the next message.
    assert inflater.decompress(hello, 10) == b"hello"
    assert Inflater(agreed()).decompress(Deflater(agreed()).compress(b""), 0) == b""


# ---------------------------------------------------------------------------
# Deflate


@pytest.mark.parametrize("size", [1, 10, 127, 128, 1000, 70_000])
@pytest.mark.parametrize("server_nct", [True, False])
def test_deflater_output_inflates_raw(size, server_nct):
    payload = chat_json(size)
    compressed = Deflater(agreed(server_nct=server_nct)).compress(payload)
    assert not compressed.endswith(TAIL) or size > 1000
    assert raw_inflate(compressed) == payload


def test_empty_message_compresses_to_one_byte():
    for server_nct in (True, False):
        deflater = Deflater(agreed(server_nct=server_nct))
        assert deflater.compress(b"") == b"\x00"
        assert raw_inflate(deflater.compress(b"")) == b""


def test_no_context_takeover_messages_decode_alone():
    message = chat_json(800)
    deflater = Deflater(agreed(server_nct=True))
    frames = [deflater.compress(message) for _ in range(4)]
    # Each repeat is compressed in full and decodes with a fresh stream.
    assert all(len(f) == len(frames[0]) for f in frames)
    assert all(raw_inflate(f) == message for f in frames)


def test_context_takeover_messages_refer_to_earlier_ones():
    message = chat_json(800)
    deflater = Deflater(agreed(server_nct=False))
    frames = [deflater.compress(message) for _ in range(3)]
    assert len(frames[1]) < len(frames[0]) // 10
    stream = zlib.decompressobj(-15)
    assert [stream.decompress(f + TAIL) for f in frames] == [message] * 3
    with pytest.raises(zlib.error):
        raw_inflate(frames[1])


def strict_inflate(payload: bytes, bits: int) -> bytes:
    """Inflate one output byte per call, so that every back reference must
    come from the ``2^bits`` window (zlib does not check a distance against
    the window while it still has the data in its output buffer)."""
    stream = zlib.decompressobj(-bits)
    out = []
    data = payload + TAIL
    while data:
        out.append(stream.decompress(data, 1))
        data = stream.unconsumed_tail
    while byte := stream.decompress(b"", 1):
        out.append(byte)
    return b"".join(out)


def test_window_8_is_deflated_within_256_bytes():
    # Repeats 100 to 400 bytes back. zlib's 9-bit deflate uses those up to
    # 250 bytes back and never farther, so an 8-bit inflater can read it.
    rng = random.Random(3)
    payload = b"".join(bytes(rng.randrange(256) for _ in range(n)) * 3 for n in range(100, 400, 7))
    wide = (lambda z: (z.compress(payload) + z.flush(zlib.Z_SYNC_FLUSH))[:-4])(
        zlib.compressobj(9, zlib.DEFLATED, -10))
    assert strict_inflate(wide, 10) == payload
    with pytest.raises(zlib.error, match="too far back"):
        strict_inflate(wide, 8)
    for server_nct in (True, False):
        compressed = Deflater(agreed(server_nct=server_nct, server_bits=8)).compress(payload)
        assert len(compressed) < len(payload) * 4 // 5  # random bytes: only repeats shrink
        assert strict_inflate(compressed, 8) == payload


def test_encode_threshold_and_incompressible_data():
    options = agreed(compress_min_size=128)
    deflater = Deflater(options)
    small = chat_json(127)
    assert deflater.encode(small) == (small, False)
    data, rsv1 = deflater.encode(chat_json(128))
    assert rsv1 and len(data) < 128 and raw_inflate(data) == chat_json(128)
    noise = os.urandom(4096)
    # At or over the threshold everything is compressed, even what cannot
    # shrink: stored blocks cost a few bytes, and clients can predict RSV1.
    data, rsv1 = deflater.encode(noise)
    assert rsv1 and len(data) <= len(noise) + 16 and raw_inflate(data) == noise
    keeper = Deflater(agreed(server_nct=False, compress_min_size=128))
    data, rsv1 = keeper.encode(noise)
    assert rsv1 and raw_inflate(data) == noise


def test_idle_connections_hold_no_zlib_memory_by_default():
    """The memory promise of the defaults, measured with tracemalloc (which
    sees zlib's allocations): per idle connection, almost nothing; with
    context takeover both ways, the zlib streams."""
    def per_pair(negotiated: Negotiated) -> float:
        message = chat_json(1024)
        [incoming] = client_compress([message], context=False)
        Deflater(negotiated).compress(message)  # the shared compressor exists before
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            pairs = []
            for _ in range(50):
                inflater, deflater = Inflater(negotiated), Deflater(negotiated)
                inflater.decompress(incoming, None)
                deflater.compress(message)
                pairs.append((inflater, deflater))
            return (tracemalloc.get_traced_memory()[0] - before) / len(pairs)
        finally:
            tracemalloc.stop()

    assert per_pair(agreed()) < 1024
    assert per_pair(agreed(server_nct=False, client_nct=False)) > 200_000


# ---------------------------------------------------------------------------
# Round trips


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(st.one_of(st.binary(max_size=3000),
                                st.integers(0, 6000).map(chat_json)), min_size=1, max_size=4),
    context=st.booleans(),
    bits=st.integers(8, 15),
    cut_seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_deflater_to_inflater(messages, context, bits, cut_seed):
    # Our deflater on one side and our inflater on the other, with the same
    # agreement in both directions, fragments cut at random places.
    deflater = Deflater(agreed(server_nct=not context, server_bits=bits))
    inflater = Inflater(agreed(client_nct=not context, client_bits=bits))
    rng = random.Random(cut_seed)
    for message in messages:
        compressed = deflater.compress(message)
        cuts = sorted(rng.randrange(len(compressed) + 1) for _ in range(rng.randrange(4)))
        pieces = [compressed[a:b] for a, b in zip([0] + cuts, cuts + [len(compressed)])]
        out = b"".join(inflater.feed(p, len(message)) for p in pieces) + inflater.finish(len(message))
        assert out == message


@settings(max_examples=60, deadline=None)
@given(message=st.binary(max_size=5000) | st.integers(0, 20000).map(chat_json),
       limit=st.integers(0, 20000))
def test_limit_property(message, limit):
    [compressed] = client_compress([message])
    inflater = Inflater(agreed())
    if len(message) <= limit:
        assert inflater.decompress(compressed, limit) == message
    else:
        with pytest.raises(MessageTooBig):
            inflater.decompress(compressed, limit)
        assert inflater.size == limit + 1


# ---------------------------------------------------------------------------
# Against the websockets library's client-side permessage-deflate

WEBSOCKETS_CLIENTS = [
    {},
    {"client_max_window_bits": None},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 8},
    {"server_max_window_bits": 10, "client_max_window_bits": 9},
    {"server_no_context_takeover": True, "client_no_context_takeover": True,
     "server_max_window_bits": 12, "client_max_window_bits": 11},
]


def _websockets_pair(client_kwargs: dict, options: DeflateOptions):
    factory = ClientPerMessageDeflateFactory(**client_kwargs)
    offer = build_extension([(factory.name, factory.get_request_params())])
    response, negotiated = negotiate([offer], options)
    assert response is not None, offer
    [(name, params)] = parse_extension(response)
    client = factory.process_response_params(params, [])
    return client, negotiated


def _messages() -> list[bytes]:
    rng = random.Random(5)
    long_range = b"".join(bytes(rng.randrange(256) for _ in range(300)) * 2 for _ in range(4))
    return [chat_json(200), chat_json(200), b"", chat_json(40_000, seed=9), long_range,
            os.urandom(3000), chat_json(200)]


@pytest.mark.parametrize("client_kwargs", WEBSOCKETS_CLIENTS)
@pytest.mark.parametrize("options", [DeflateOptions(), LAX, DeflateOptions(server_max_window_bits=9,
                                                                           client_max_window_bits=10)],
                         ids=["defaults", "lax", "small-windows"])
def test_websockets_client_to_us(client_kwargs, options):
    client, negotiated = _websockets_pair(client_kwargs, options)
    inflater = Inflater(negotiated)
    for message in _messages():
        frame = client.encode(Frame(Opcode.BINARY, message))
        assert frame.rsv1
        assert inflater.decompress(bytes(frame.data), 1 << 20) == message
    # A fragmented message: the client compresses each fragment in turn.
    message = chat_json(9000, seed=4)
    frames = [client.encode(Frame(Opcode.TEXT, message[:3000], fin=False)),
              client.encode(Frame(Opcode.CONT, message[3000:6000], fin=False)),
              client.encode(Frame(Opcode.CONT, message[6000:], fin=True))]
    out = b"".join(inflater.feed(bytes(f.data), 1 << 20) for f in frames) + inflater.finish(1 << 20)
    assert out == message


@pytest.mark.parametrize("client_kwargs", WEBSOCKETS_CLIENTS)
@pytest.mark.parametrize("options", [DeflateOptions(), LAX, DeflateOptions(server_max_window_bits=9,
                                                                           client_max_window_bits=10)],
                         ids=["defaults", "lax", "small-windows"])
def test_us_to_websockets_client(client_kwargs, options):
    client, negotiated = _websockets_pair(client_kwargs, options)
    deflater = Deflater(negotiated)
    for message in _messages() * 2:
        frame = Frame(Opcode.BINARY, deflater.compress(message), rsv1=True)
        assert bytes(client.decode(frame, max_size=None).data) == message
