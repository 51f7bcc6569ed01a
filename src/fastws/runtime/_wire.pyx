# cython: language_level=3, boundscheck=False, wraparound=False
"""The ``fastws.v1`` wire forms of room messages (docs/protocol.md).

A room message to a ``fastws.v1`` member is one JSON object carrying the room,
the position (when the room keeps history) and the payload in a field that
names its kind: ``data`` (a JSON value), ``text`` (a str) or ``bytes``
(base64). The registry makes it once per message and node, by concatenation:
the payload a JSON value was serialized to is spliced in as it is, and a
str is escaped only when it holds a character JSON must escape.
"""

import binascii
import json

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

__all__ = ["KIND_JSON", "json_string", "room_message", "sent_notice", "kind_of"]

_TEXT, _BINARY = 1, 2


cpdef bytes json_string(object text):
    """``text`` (str, or UTF-8 bytes) as a JSON string, UTF-8 encoded."""
    cdef bytes raw = (<str>text).encode("utf-8") if type(text) is str else bytes(text)
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(raw)
    for i in range(n):
        # Bytes of multi-byte UTF-8 are all >= 0x80: valid in a JSON string.
        if p[i] < 0x20 or p[i] == 34 or p[i] == 92 or p[i] == 0x7f:
            return json.dumps(raw.decode("utf-8"), ensure_ascii=False).encode("utf-8")
    return b'"' + raw + b'"'


cdef bytes _room_json(object room):
    if type(room) is str:
        return json_string(room)
    if type(room) is int:
        return str(room).encode()
    return json.dumps(room, ensure_ascii=False).encode("utf-8")


cdef bytes _position_json(object position):
    # The epoch is hex (ours), the offset an int: nothing to escape.
    epoch, offset = position
    return b',"epoch":"' + (<str>epoch).encode() + b'","offset":' + str(offset).encode()


cpdef bytes room_message(object room, object position, int kind, object payload):
    """The ``fastws.message`` for one room message: ``position`` is (epoch,
    offset) or None; ``kind`` 1 text, 2 binary, KIND_JSON."""
    cdef bytes head = b'{"type":"fastws.message","room":' + _room_json(room)
    if position is not None:
        head += _position_json(position)
    if kind == KIND_JSON:
        body = payload.encode("utf-8") if type(payload) is str else bytes(payload)
        return head + b',"data":' + body + b'}'
    if kind == _TEXT:
        return head + b',"text":' + json_string(payload) + b'}'
    return head + b',"bytes":"' + binascii.b2a_base64(payload, newline=False) + b'"}'


cpdef bytes sent_notice(object room, object position):
    """The ``fastws.sent`` a fastws.v1 sender gets for its own ``ws.broadcast``."""
    return b'{"type":"fastws.sent","room":' + _room_json(room) + _position_json(position) + b'}'


def kind_of(data) -> int:
    """The kind the send rule gives ``data``: 1 str, 2 bytes-like, KIND_JSON."""
    if isinstance(data, str):
        return _TEXT
    if isinstance(data, (bytes, bytearray, memoryview)):
        return _BINARY
    return KIND_JSON
