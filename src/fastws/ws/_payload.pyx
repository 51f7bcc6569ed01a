# cython: language_level=3
"""What goes on the wire for a Python value.

The send rule, in one place (``payload_of``): ``str`` is a text message,
``bytes``/``bytearray``/``memoryview`` a binary one, anything else goes
through the serializer (``dumps``, which may return str or UTF-8 bytes) and is
text. Then the frame, plain (``encode_message``) or through a connection's
permessage-deflate compressor (``deflated_frame``). ``WebSocket.send`` and the
room registry's broadcast both use these, so a broadcast is serialized and
framed by the same rule as a send, once for every member.
"""

from fastws._constants cimport OP_TEXT, OP_BINARY
from fastws.ws._frame cimport encode_frame

__all__ = ["encode_message", "encode_payload"]


cdef object payload_of(object data, object dumps, int *opcode):
    """The payload to frame for ``data``; sets ``opcode[0]``."""
    if type(data) is str:
        opcode[0] = OP_TEXT
        return data
    if type(data) is bytes or isinstance(data, (bytearray, memoryview)):
        opcode[0] = OP_BINARY
        return data
    opcode[0] = OP_TEXT
    if isinstance(data, str):
        return str(data)
    return dumps(data)


cpdef tuple encode_payload(object data, object dumps):
    """(opcode, payload) for ``data``, by the send rule."""
    cdef int opcode
    payload = payload_of(data, dumps, &opcode)
    return (opcode, payload)


cpdef bytes encode_message(object data, object dumps):
    """The frame for ``data``, by the send rule."""
    cdef int opcode
    payload = payload_of(data, dumps, &opcode)
    return encode_frame(opcode, payload)


cdef bytes deflated_frame(object deflater, int opcode, object payload):
    """The frame for ``payload`` through a connection's deflater (which sends
    messages under its ``compress_min_size`` as they are, RSV1 clear)."""
    if type(payload) is str:
        payload = (<str>payload).encode("utf-8")
    elif type(payload) is not bytes:
        payload = bytes(payload)
    data, rsv1 = deflater.encode(payload)
    return encode_frame(opcode, data, True, rsv1)
