"""Client frames written byte by byte, without touching ``fastws``: the one
helper library of the unit tests (codec against an independent reading of
RFC 6455) and of the integration tests (raw clients on a real socket). They can
write what the encoder refuses to: reserved bits, unknown opcodes, unmasked or
oversized control frames, lengths in a non-minimal form or that lie."""

from __future__ import annotations

import struct

#: Mask key used when a test does not care which key masks a frame. No zero
#: byte, so a bug that skips masking cannot go unnoticed.
MASK_KEY = b"\x37\xfa\x21\x3d"


def ref_mask(data: bytes, key: bytes, phase: int = 0) -> bytes:
    """XOR ``data`` with ``key``, starting at key byte ``phase`` (RFC 6455 §5.3)."""
    return bytes(b ^ key[(i + phase) % 4] for i, b in enumerate(data))


def length_field(n: int, form: int | None = None) -> tuple[int, bytes]:
    """The 7-bit length code and the extended length bytes for ``n``.

    ``form`` forces the 7-bit, 16-bit or 64-bit form (7, 16, 64); by default
    the minimal one, as a conforming sender writes it.
    """
    if form is None:
        form = 7 if n < 126 else 16 if n < 65536 else 64
    if form == 7:
        return n, b""
    if form == 16:
        return 126, struct.pack("!H", n)
    return 127, struct.pack("!Q", n)


def client_frame(
    opcode: int,
    payload: bytes | str = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask_key: bytes | None = MASK_KEY,
    length: int | None = None,
    form: int | None = None,
) -> bytes:
    """One frame as a client sends it: masked with ``mask_key`` unless None.

    ``rsv`` is the three reserved bits as a number 0-7 (4 = RSV1). ``length``
    overrides the announced payload length (the payload bytes are written
    as given), for frames that lie about their size.
    """
    if isinstance(payload, str):
        payload = payload.encode()
    announced = len(payload) if length is None else length
    code, extended = length_field(announced, form)
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F),
                  (0x80 if mask_key is not None else 0) | code]) + extended
    if mask_key is None:
        return head + payload
    return head + mask_key + ref_mask(payload, mask_key)


def close_payload(code: int, reason: bytes | str = b"") -> bytes:
    """A close frame's payload: the code in network order, then the reason."""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack("!H", code) + reason
