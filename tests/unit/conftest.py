"""What the codec tests share: the frame writers of ``tests/wire.py`` (written
without fastws, so a parse of their output checks the Cython codec against an
independent reading of RFC 6455) and ways to feed a parser."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from fastws.ws._frame import ERROR, FrameParser

from tests.wire import MASK_KEY, client_frame, close_payload, length_field, ref_mask  # noqa: F401


def feed_split(parser: FrameParser, data: bytes, cuts: Iterable[int]) -> list:
    """Feed ``data`` cut at the offsets in ``cuts`` and collect all events."""
    events: list = []
    start = 0
    for cut in sorted(set(cuts)):
        if 0 < cut < len(data):
            events += parser.feed(data[start:cut])
            start = cut
    events += parser.feed(data[start:])
    return events


def feed_bytewise(parser: FrameParser, data: bytes) -> list:
    """Feed ``data`` one byte per call and collect all events."""
    events: list = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    return events


def parse(data: bytes, **options) -> list:
    """Events from a fresh parser fed ``data`` in one call."""
    return FrameParser(**options).feed(data)


def error_code(events: Sequence) -> int | None:
    """The close code of the ERROR event ending ``events``, or None without one.

    Also checks the parser's contract that nothing follows an ERROR.
    """
    codes = [value.code for kind, value in events if kind == ERROR]
    if not codes:
        return None
    assert len(codes) == 1 and events[-1][0] == ERROR, events
    return codes[0]
