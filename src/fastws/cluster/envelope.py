"""The backplane's envelope: how one broadcast is framed on a room's Redis channel.

    version (1 byte, 1) | node id (8 bytes) | opcode (1 byte: 1 text, 2 binary, 3 JSON) | payload

A message of a room whose history Redis keeps (``cluster.history``) is put on
the channel by Redis itself, once it has numbered it, with ``KEPT`` added to the
opcode and its position before the payload, as ASCII:

    version | node id | opcode + 16 | <publish seq>:<epoch>:<offset>: | payload

(the seq lets the sending node find which of its sockets sent it, to skip).

The payload is the broadcast's bytes as the sender's registry delivered them
locally (a text broadcast is its UTF-8); the opcode says which frame the
receiving nodes make of it, and 3 (text that is a serialized JSON value) lets
them tell ``fastws.v1`` clients the payload's type. The node id comes first after the version so that a
node recognises its own echo by one prefix test (``origin``) before reading
anything else. Pure bytes: nothing here knows Redis, rooms or the loop.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENVELOPE_VERSION", "HEADER_SIZE", "KEPT", "NODE_ID_SIZE", "header", "origin", "pack",
           "unpack", "unpack_kept"]

ENVELOPE_VERSION = 1
NODE_ID_SIZE = 8
HEADER_SIZE = 2 + NODE_ID_SIZE         # version, node id, opcode
_OPCODES = (1, 2, 3)                   # text, binary, JSON text
#: Added to the opcode of a message Redis numbered (its position follows the header).
KEPT = 16
_ALL = _OPCODES + tuple(op + KEPT for op in _OPCODES)


def _check_node(node_id: bytes) -> None:
    if type(node_id) is not bytes or len(node_id) != NODE_ID_SIZE:
        raise ValueError(f"a node id is {NODE_ID_SIZE} bytes, got {node_id!r}")


def origin(node_id: bytes) -> bytes:
    """What every envelope ``node_id`` sends starts with (its echo test)."""
    _check_node(node_id)
    return bytes((ENVELOPE_VERSION,)) + node_id


def header(node_id: bytes, opcode: int) -> bytes:
    """The 10 bytes before the payload of ``node_id``'s envelopes of ``opcode``
    (1 text, 2 binary, 3 JSON text; plus KEPT for a numbered one): a relay makes
    them once and writes them before each payload."""
    if opcode not in _ALL:
        raise ValueError(f"an envelope's opcode is 1 (text), 2 (binary) or 3 (JSON text), "
                         f"got {opcode!r}")
    return origin(node_id) + bytes((opcode,))


def pack(node_id: bytes, opcode: int, payload: Any) -> bytes:
    """The whole envelope of one broadcast: ``payload`` is bytes-like, or str
    (sent as its UTF-8)."""
    if type(payload) is str:
        payload = payload.encode()
    elif not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"an envelope's payload is bytes-like or str, not {type(payload).__name__}")
    return header(node_id, opcode) + payload


def unpack(data: bytes) -> tuple[bytes, int, bytes]:
    """(node id, opcode, payload) of an envelope; ValueError naming what is wrong
    for anything that is not one (too short, another version, an unknown opcode)."""
    if type(data) is not bytes:
        raise ValueError(f"an envelope is bytes, not {type(data).__name__}")
    if len(data) < HEADER_SIZE:
        raise ValueError(f"an envelope of {len(data)} bytes is shorter than its "
                         f"{HEADER_SIZE}-byte header")
    if data[0] != ENVELOPE_VERSION:
        raise ValueError(f"envelope version {data[0]} is not {ENVELOPE_VERSION}")
    opcode = data[HEADER_SIZE - 1]
    if opcode not in _ALL:
        raise ValueError(f"envelope opcode {opcode} is not 1 (text), 2 (binary) or 3 (JSON text)")
    return data[1:HEADER_SIZE - 1], opcode, data[HEADER_SIZE:]


def unpack_kept(rest: bytes) -> tuple[int, str, int, bytes]:
    """(publish seq, epoch, offset, payload) of what follows the header of a
    KEPT envelope; ValueError when it is not ``<seq>:<epoch>:<offset>:``."""
    parts = rest.split(b":", 3)
    if len(parts) != 4 or not parts[0].isdigit() or not parts[2].isdigit() or not parts[1]:
        raise ValueError("a numbered envelope's position is not <seq>:<epoch>:<offset>:")
    return int(parts[0]), parts[1].decode("ascii", "replace"), int(parts[2]), parts[3]
