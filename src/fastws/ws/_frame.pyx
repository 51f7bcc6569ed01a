# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Sans-I/O RFC 6455 frame codec: bytes in, messages and control frames out.

``FrameParser.feed(data)`` accepts the bytes a server reads from a client, split
at any point, and returns a list of events ``(kind, value)``:

====================  ===============================================
kind                  value
====================  ===============================================
``OP_TEXT``           ``str``: a complete text message
``OP_BINARY``         ``bytes``: a complete binary message
``OP_PING``           ``bytes``: ping payload
``OP_PONG``           ``bytes``: pong payload
``OP_CLOSE``          ``(code, reason)``; code 1005 when the frame had none
``ERROR``             ``ProtocolError``: close the connection with ``.code``
====================  ===============================================

After an ``ERROR`` event the parser is spent: later ``feed`` calls return an
empty list. The codec knows nothing of sockets or event loops.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE, PyBUF_WRITABLE
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint32_t, uint64_t

# The C opcodes under their own names: the module's OP_* are Python objects, for callers.
from fastws._constants cimport (OP_CONT as C_OP_CONT, OP_TEXT as C_OP_TEXT, OP_BINARY as C_OP_BINARY,
                                OP_CLOSE as C_OP_CLOSE, OP_PING as C_OP_PING, OP_PONG as C_OP_PONG,
                                CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_DATA,
                                CLOSE_MESSAGE_TOO_BIG, CLOSE_NO_STATUS)
from fastws._constants import Opcode
from fastws.errors import ProtocolError

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL
    bint PyBytes_CheckExact(object o)
    bint PyUnicode_CheckExact(object o)

__all__ = [
    "OP_CONT", "OP_TEXT", "OP_BINARY", "OP_CLOSE", "OP_PING", "OP_PONG", "ERROR",
    "ProtocolError", "FrameParser", "encode_frame", "frame_header", "encode_close",
    "apply_mask", "apply_mask_inplace", "is_valid_close_code",
]

# The event kinds of feed(), for Python callers: the opcodes by their names
# (the values are the C enum's, declared once in _constants.pxd), and ERROR.
OP_CONT = Opcode.OP_CONT
OP_TEXT = Opcode.OP_TEXT
OP_BINARY = Opcode.OP_BINARY
OP_CLOSE = Opcode.OP_CLOSE
OP_PING = Opcode.OP_PING
OP_PONG = Opcode.OP_PONG
ERROR = -1

cdef enum:
    MAX_CONTROL = 125
    # Above this many bytes the unmask loop runs without the GIL: below it the
    # release/reacquire costs more than it frees (measured: at 64 KiB the
    # release alone was ~50 ns of a ~1.3 us unmask).
    NOGIL_THRESHOLD = 1 << 20
    # Single-frame text messages up to this size are unmasked on the stack.
    STACK_TEXT = 2048


cdef inline size_t _xor(unsigned char *dst, const unsigned char *src, size_t n,
                        const unsigned char *key, size_t phase) noexcept:
    """XOR with the mask key from ``phase``; the one place that decides when
    the GIL is let go. Returns the phase after ``n`` bytes."""
    if n >= NOGIL_THRESHOLD:
        with nogil:
            return fastws_mask(dst, src, n, key, phase)
    return fastws_mask(dst, src, n, key, phase)


cpdef bint is_valid_close_code(int code) noexcept:
    """Whether ``code`` may appear in a close frame on the wire (RFC 6455 §7.4).

    1005, 1006 and 1015 are reserved for local use; 1004 and 1016-2999 are
    unassigned or reserved for future standards; 3000-4999 are for libraries
    and applications.
    """
    if 1000 <= code <= 1003 or 1007 <= code <= 1014:
        return True
    return 3000 <= code <= 4999


cdef inline bint _is_ascii(const unsigned char *s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if s[i] >= 0x80:
            return False
    return True


cdef class FrameParser:
    """Incremental parser for frames sent by a client to a server.

    ``max_message_size`` bounds a data message's total payload across all of
    its fragments (default 1 MiB, ``None`` for no limit); it is enforced from
    each frame's header, before the payload is buffered, and answered with
    1009. ``mask_required`` (default True) rejects unmasked client frames with
    1002, as RFC 6455 §5.1 demands of servers.
    """

    def __cinit__(self):
        self._msg = NULL
        self._msg_len = 0
        self._msg_cap = 0

    def __init__(self, *, max_message_size=1 << 20, bint mask_required=True, inflater=None):
        if max_message_size is None:
            self._max_size = 0
        else:
            if max_message_size <= 0:
                raise ValueError(
                    f"max_message_size must be a positive number of bytes or None, got {max_message_size!r}")
            self._max_size = max_message_size
        self.mask_required = mask_required
        self.error = None
        self._inflater = inflater

    def __dealloc__(self):
        if self._msg != NULL:
            PyMem_Free(self._msg)
            self._msg = NULL
        if self._ctrl != NULL:
            PyMem_Free(self._ctrl)
            self._ctrl = NULL

    @property
    def max_message_size(self):
        """The message size limit in bytes, or None for no limit."""
        return self._max_size if self._max_size else None

    @property
    def buffered(self):
        """Bytes held for an incomplete message or frame (for memory accounting)."""
        return self._msg_len + self._hdr_len + self._ctrl_len

    cdef void _reset_message(self) noexcept:
        self._msg_opcode = 0
        self._msg_len = 0
        self._utf8 = 0
        self._compressed = False
        self._parts = None
        # Give the buffer back: idle connections should cost nothing here.
        if self._msg != NULL:
            PyMem_Free(self._msg)
            self._msg = NULL
            self._msg_cap = 0

    cdef int _grow(self, size_t need) except -1:
        cdef size_t cap
        cdef unsigned char *p
        if need <= self._msg_cap:
            return 0
        cap = self._msg_cap * 2 if self._msg_cap else 256
        if cap < need:
            cap = need
        p = <unsigned char *>PyMem_Realloc(self._msg, cap)
        if p == NULL:
            raise MemoryError()
        self._msg = p
        self._msg_cap = cap
        return 0

    cdef int _fail(self, list out, int code, str reason) except -1:
        self.error = ProtocolError(code, reason)
        out.append((ERROR, self.error))
        self._reset_message()
        return 0

    cpdef list feed(self, object data):
        """Parse ``data`` (bytes-like) and return the events it completes."""
        cdef list out = []
        cdef Py_buffer view
        cdef const unsigned char *p
        cdef Py_ssize_t n, pos = 0, take, need, used
        cdef bint release = False
        cdef const unsigned char *src
        cdef unsigned char *dst

        if self.error is not None:
            return out
        if PyBytes_CheckExact(data):
            p = <const unsigned char *>PyBytes_AS_STRING(data)
            n = PyBytes_GET_SIZE(data)
        else:
            PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
            release = True
            p = <const unsigned char *>view.buf
            n = view.len
        try:
            while pos < n:
                if not self._in_payload:
                    if self._hdr_len == 0:
                        # Common case: the header starts in this chunk.
                        used = self._header(p + pos, n - pos, out)
                        if used < 0:
                            return out
                        if used == 0:
                            memcpy(self._hdr, p + pos, n - pos)
                            self._hdr_len = n - pos
                            return out
                        pos += used
                    else:
                        # Header straddles chunks: top up the saved bytes.
                        take = n - pos
                        if take > 14 - self._hdr_len:
                            take = 14 - self._hdr_len
                        memcpy(self._hdr + self._hdr_len, p + pos, take)
                        need = self._hdr_len
                        self._hdr_len += take
                        used = self._header(self._hdr, self._hdr_len, out)
                        if used < 0:
                            return out
                        if used == 0:
                            pos += take
                            continue
                        pos += used - need
                        self._hdr_len = 0
                    if not self._in_payload:
                        continue   # handled whole by the fast path, or empty payload
                # Payload bytes of the current frame.
                take = n - pos
                if <uint64_t>take > self._remaining:
                    take = <Py_ssize_t>self._remaining
                src = p + pos
                if self._opcode >= C_OP_CLOSE:
                    dst = self._ctrl + self._ctrl_len
                    self._ctrl_len += take
                else:
                    self._grow(self._msg_len + take)
                    dst = self._msg + self._msg_len
                    self._msg_len += take
                if self._masked:
                    self._phase = _xor(dst, src, take, self._key, self._phase)
                else:
                    memcpy(dst, src, take)
                if self._msg_opcode == C_OP_TEXT and self._opcode < C_OP_CLOSE and not self._compressed:
                    # Fail fast: judge text bytes as they arrive, not at the end.
                    if fastws_utf8_check(dst, take, &self._utf8) < 0:
                        self._fail(out, CLOSE_INVALID_DATA, "invalid UTF-8 in text message")
                        return out
                pos += take
                self._remaining -= take
                if self._remaining == 0:
                    self._in_payload = False
                    self._frame_done(out)
                    if self.error is not None:
                        return out
            return out
        finally:
            if release:
                PyBuffer_Release(&view)

    cdef Py_ssize_t _header(self, const unsigned char *p, Py_ssize_t avail, list out) except -2:
        """Parse one header at ``p``; 0 if incomplete, -1 after a failure.

        On success returns the bytes consumed: the header alone, or header and
        payload when the whole frame was present and handled on the spot.
        """
        cdef unsigned char b0, b1
        cdef int opcode
        cdef bint fin, masked
        cdef Py_ssize_t hlen
        cdef uint64_t length
        cdef const unsigned char *payload
        cdef bytes blob
        cdef unsigned char stack[STACK_TEXT]
        cdef unsigned char *tmp
        cdef object text

        if avail < 2:
            return 0
        b0 = p[0]
        b1 = p[1]
        fin = (b0 & 0x80) != 0
        opcode = b0 & 0x0F
        masked = (b1 & 0x80) != 0
        length = b1 & 0x7F
        hlen = 2
        if length == 126:
            hlen = 4
        elif length == 127:
            hlen = 10
        if masked:
            hlen += 4
        if avail < hlen:
            return 0
        if length == 126:
            length = (<uint64_t>p[2] << 8) | p[3]
        elif length == 127:
            if p[2] & 0x80:
                self._fail(out, CLOSE_PROTOCOL_ERROR, "frame length has the most significant bit set")
                return -1
            length = ((<uint64_t>p[2] << 56) | (<uint64_t>p[3] << 48) | (<uint64_t>p[4] << 40) |
                      (<uint64_t>p[5] << 32) | (<uint64_t>p[6] << 24) | (<uint64_t>p[7] << 16) |
                      (<uint64_t>p[8] << 8) | <uint64_t>p[9])

        cdef bint rsv1 = (b0 & 0x40) != 0
        if b0 & 0x30 or (rsv1 and self._inflater is None):
            self._fail(out, CLOSE_PROTOCOL_ERROR, "reserved bits set without a negotiated extension")
            return -1
        if rsv1 and not (opcode == C_OP_TEXT or opcode == C_OP_BINARY):
            self._fail(out, CLOSE_PROTOCOL_ERROR, "RSV1 set on a continuation or control frame")
            return -1
        if opcode >= C_OP_CLOSE:
            if opcode > C_OP_PONG:
                self._fail(out, CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
                return -1
            if not fin:
                self._fail(out, CLOSE_PROTOCOL_ERROR, "fragmented control frame")
                return -1
            if length > MAX_CONTROL:
                self._fail(out, CLOSE_PROTOCOL_ERROR, "control frame payload over 125 bytes")
                return -1
        elif opcode == C_OP_CONT:
            if self._msg_opcode == 0:
                self._fail(out, CLOSE_PROTOCOL_ERROR, "continuation frame without a message to continue")
                return -1
        elif opcode <= C_OP_BINARY:
            if self._msg_opcode != 0:
                self._fail(out, CLOSE_PROTOCOL_ERROR, "new data frame inside a fragmented message")
                return -1
        else:
            self._fail(out, CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
            return -1
        if self.mask_required and not masked:
            self._fail(out, CLOSE_PROTOCOL_ERROR, "client frame is not masked")
            return -1
        if opcode < C_OP_CLOSE and self._max_size and \
                length > self._max_size - self._msg_len:
            self._fail(out, CLOSE_MESSAGE_TOO_BIG, f"message over {self._max_size} bytes")
            return -1

        self._opcode = opcode
        self._fin = fin
        self._masked = masked
        if masked:
            memcpy(self._key, p + hlen - 4, 4)
        self._phase = 0
        self._remaining = length

        if opcode != C_OP_CONT and opcode < C_OP_CLOSE and fin and <uint64_t>(avail - hlen) >= length:
            # Fast path: a whole single-frame message in hand, one copy out.
            payload = p + hlen
            if rsv1:
                blob = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                self._unmask_into(<unsigned char *>PyBytes_AS_STRING(blob), payload,
                                  <Py_ssize_t>length)
                self._msg_opcode = opcode
                self._compressed = True
                self._parts = None
                if self._inflate(out, blob, True) is None:
                    return -1
                self._inflated_done(out, True)
                if self.error is not None:
                    return -1
                self._remaining = 0
                return hlen + <Py_ssize_t>length
            if opcode == C_OP_BINARY:
                blob = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                tmp = <unsigned char *>PyBytes_AS_STRING(blob)
                self._unmask_into(tmp, payload, <Py_ssize_t>length)
                out.append((<int>C_OP_BINARY, blob))
            else:
                if length <= STACK_TEXT:
                    tmp = stack
                    self._unmask_into(tmp, payload, <Py_ssize_t>length)
                else:
                    blob = PyBytes_FromStringAndSize(NULL, <Py_ssize_t>length)
                    tmp = <unsigned char *>PyBytes_AS_STRING(blob)
                    self._unmask_into(tmp, payload, <Py_ssize_t>length)
                try:
                    text = PyUnicode_DecodeUTF8(<const char *>tmp, <Py_ssize_t>length, NULL)
                except UnicodeDecodeError:
                    self._fail(out, CLOSE_INVALID_DATA, "invalid UTF-8 in text message")
                    return -1
                out.append((<int>C_OP_TEXT, text))
            self._remaining = 0
            return hlen + <Py_ssize_t>length
        if opcode >= C_OP_CLOSE:
            self._ctrl_len = 0
            if self._ctrl == NULL:
                # Made for the frame and freed after it: an idle connection
                # holds no control buffer (pings come every few seconds at most).
                self._ctrl = <unsigned char *>PyMem_Malloc(MAX_CONTROL)
                if self._ctrl == NULL:
                    raise MemoryError()
        elif opcode != C_OP_CONT:
            self._msg_opcode = opcode
            self._utf8 = 0
            if rsv1:
                self._compressed = True
                self._parts = None
        if length == 0:
            self._frame_done(out)
            if self.error is not None:
                return -1
        else:
            self._in_payload = True
        return hlen

    cdef inline void _unmask_into(self, unsigned char *dst, const unsigned char *src, Py_ssize_t n):
        if self._masked:
            _xor(dst, src, n, self._key, 0)
        else:
            memcpy(dst, src, n)

    cdef int _frame_done(self, list out) except -1:
        """A frame's payload is complete: emit a control frame or message."""
        if self._opcode >= C_OP_CLOSE:
            try:
                self._control(out, self._ctrl, self._ctrl_len)
            finally:
                self._ctrl_len = 0
                PyMem_Free(self._ctrl)
                self._ctrl = NULL
            return 0
        if self._compressed:
            # Inflate each fragment as it completes, so the size bound and
            # the UTF-8 check act before the whole message is in.
            chunk = PyBytes_FromStringAndSize(<const char *>self._msg, self._msg_len)
            self._msg_len = 0
            if self._inflate(out, chunk, False) is None:
                return 0
            if self._fin:
                self._inflated_done(out, False)
            return 0
        if self._fin:
            self._finish_message(out, <const char *>self._msg, self._msg_len, None)
        return 0

    cdef int _finish_message(self, list out, const char *data, Py_ssize_t n,
                             object whole) except -1:
        """Emit the complete data message in ``data[:n]`` (``whole``: the same
        bytes as an object, when there is one to hand out without a copy)."""
        cdef object value
        if self._msg_opcode == C_OP_TEXT:
            if self._utf8 != 0:
                self._fail(out, CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence")
                return 0
            # Already validated as it arrived, so this cannot raise.
            value = PyUnicode_DecodeUTF8(data, n, NULL)
        elif whole is not None:
            value = whole
        else:
            value = PyBytes_FromStringAndSize(data, n)
        out.append((self._msg_opcode, value))
        self._reset_message()
        return 0

    cdef object _inflate(self, list out, object payload, bint whole):
        """Inflate compressed bytes of the open message into ``_parts``
        (``payload`` None: end the message's stream); None after a failure
        (the error event is already in ``out``).

        The pieces are gathered in one bytearray, not kept one object each: a
        message sent as a million one-byte compressed fragments held a bytes
        object per fragment, about 130 bytes of memory per byte of message."""
        cdef bytes data
        cdef object limit = self._max_size if self._max_size else None
        try:
            if payload is None:
                data = self._inflater.finish(limit)
            elif whole:
                data = self._inflater.decompress(payload, limit)
            else:
                data = self._inflater.feed(payload, limit)
        except Exception as exc:
            code = getattr(exc, "code", None)
            if code is None:
                raise
            self._fail(out, code, exc.reason)
            return None
        if data:
            if self._msg_opcode == C_OP_TEXT and \
                    fastws_utf8_check(<const unsigned char *>PyBytes_AS_STRING(data),
                                      PyBytes_GET_SIZE(data), &self._utf8) < 0:
                self._fail(out, CLOSE_INVALID_DATA, "invalid UTF-8 in text message")
                return None
            parts = self._parts
            if parts is None:
                self._parts = data              # one piece (the usual case): kept as it is
            elif type(parts) is bytes:
                self._parts = bytearray(parts)
                self._parts += data
            else:
                parts += data
        return True

    cdef int _inflated_done(self, list out, bint ended) except -1:
        """The last fragment of a compressed message is in: end the inflate
        stream (unless ``decompress`` already did) and emit the message."""
        cdef bytes whole
        if not ended and self._inflate(out, None, False) is None:
            return 0
        parts, self._parts = self._parts, None
        if parts is None:
            whole = b""
        elif type(parts) is bytes:
            whole = parts
        else:
            whole = bytes(parts)
            del parts               # its memory back before the message is handed on
        self._finish_message(out, PyBytes_AS_STRING(whole), PyBytes_GET_SIZE(whole), whole)
        return 0

    cdef int _control(self, list out, const unsigned char *p, Py_ssize_t n) except -1:
        cdef int code
        cdef uint32_t state = 0
        cdef object reason
        if self._opcode == C_OP_PING:
            out.append((<int>C_OP_PING, PyBytes_FromStringAndSize(<const char *>p, n)))
        elif self._opcode == C_OP_PONG:
            out.append((<int>C_OP_PONG, PyBytes_FromStringAndSize(<const char *>p, n)))
        else:
            if n == 0:
                out.append((<int>C_OP_CLOSE, (<int>CLOSE_NO_STATUS, "")))
                return 0
            if n == 1:
                self._fail(out, CLOSE_PROTOCOL_ERROR, "close frame payload of 1 byte")
                return 0
            code = (p[0] << 8) | p[1]
            if not is_valid_close_code(code):
                self._fail(out, CLOSE_PROTOCOL_ERROR, f"invalid close code {code}")
                return 0
            if fastws_utf8_check(p + 2, n - 2, &state) < 0 or state != 0:
                self._fail(out, CLOSE_INVALID_DATA, "close reason is not valid UTF-8")
                return 0
            reason = PyUnicode_DecodeUTF8(<const char *>p + 2, n - 2, NULL)
            out.append((<int>C_OP_CLOSE, (code, reason)))
        return 0


cdef inline Py_ssize_t _write_header(unsigned char *h, int opcode, Py_ssize_t n,
                                     bint fin, bint rsv1, bint masked) noexcept nogil:
    cdef unsigned char mbit = 0x80 if masked else 0
    h[0] = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (opcode & 0x0F)
    if n < 126:
        h[1] = mbit | <unsigned char>n
        return 2
    if n < 65536:
        h[1] = mbit | 126
        h[2] = (n >> 8) & 0xFF
        h[3] = n & 0xFF
        return 4
    h[1] = mbit | 127
    cdef int i
    cdef uint64_t v = <uint64_t>n
    for i in range(8):
        h[9 - i] = v & 0xFF
        v >>= 8
    return 10


cdef bytes build_frame(int opcode, const char *data, Py_ssize_t n, bint fin, bint rsv1):
    """Header and payload in one bytes object: one allocation, one write."""
    cdef unsigned char h[10]
    cdef Py_ssize_t hlen = _write_header(h, opcode, n, fin, rsv1, False)
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, hlen + n)
    cdef char *out = PyBytes_AS_STRING(frame)
    memcpy(out, h, hlen)
    if n:
        memcpy(out + hlen, data, n)
    return frame


cdef int _check_opcode(int opcode, bint fin=True, bint rsv1=False) except -1:
    if opcode not in (0, 1, 2, 8, 9, 10):
        raise ValueError(f"opcode must be one of 0, 1, 2, 8, 9, 10, got {opcode}")
    if opcode >= C_OP_CLOSE and (not fin or rsv1):
        raise ValueError("control frames cannot be fragmented (fin=False) or compressed (rsv1=True)")
    return 0


cdef int _check_control_length(int opcode, Py_ssize_t n) except -1:
    # Judged on the encoded byte count: len() of a str or of a memoryview with
    # wide items counts something else.
    if opcode >= C_OP_CLOSE and n > MAX_CONTROL:
        raise ValueError("control frame payload must be at most 125 bytes")
    return 0


cdef bytes _mask_key_bytes(object mask_key):
    """``mask_key`` as a 4-byte ``bytes`` the caller keeps alive while using it."""
    if PyBytes_CheckExact(mask_key) and PyBytes_GET_SIZE(mask_key) == 4:
        return <bytes>mask_key      # the common case skips a bytes() call
    if isinstance(mask_key, int):
        # bytes(4) would be four zero bytes: a key that masks nothing.
        raise TypeError("mask_key must be 4 bytes, not an int")
    cdef bytes key = bytes(mask_key)
    if len(key) != 4:
        raise ValueError("mask_key must be 4 bytes")
    return key


cpdef bytes encode_frame(int opcode, object payload, bint fin=True, bint rsv1=False,
                         object mask_key=None):
    """Frame ``payload`` (bytes-like, or ``str`` encoded as UTF-8) as one bytes
    object, header included, ready for ``transport.write``.

    Server frames are unmasked. ``mask_key`` (4 bytes) masks the frame as a
    client would, for tests and load generators.
    """
    cdef Py_buffer view
    cdef const char *data
    cdef Py_ssize_t n
    cdef bytes frame
    cdef unsigned char h[14]
    cdef Py_ssize_t hlen
    cdef const unsigned char *key
    cdef bytes key_bytes
    _check_opcode(opcode, fin, rsv1)
    if PyUnicode_CheckExact(payload) or isinstance(payload, str):
        data = PyUnicode_AsUTF8AndSize(payload, &n)
        _check_control_length(opcode, n)
        if mask_key is None:
            return build_frame(opcode, data, n, fin, rsv1)
        payload = data[:n]
    PyObject_GetBuffer(payload, &view, PyBUF_SIMPLE)
    try:
        data = <const char *>view.buf
        n = view.len
        _check_control_length(opcode, n)
        if mask_key is None:
            return build_frame(opcode, data, n, fin, rsv1)
        # A named reference keeps the key alive while `key` points into it.
        key_bytes = _mask_key_bytes(mask_key)
        key = <const unsigned char *>PyBytes_AS_STRING(key_bytes)
        hlen = _write_header(h, opcode, n, fin, rsv1, True)
        memcpy(h + hlen, key, 4)
        hlen += 4
        frame = PyBytes_FromStringAndSize(NULL, hlen + n)
        memcpy(PyBytes_AS_STRING(frame), h, hlen)
        _xor(<unsigned char *>PyBytes_AS_STRING(frame) + hlen, <const unsigned char *>data, n, key, 0)
        return frame
    finally:
        PyBuffer_Release(&view)


cpdef bytes frame_header(int opcode, Py_ssize_t length, bint fin=True, bint rsv1=False):
    """The header of an unmasked frame of ``length`` payload bytes.

    Lets a caller write header and a large payload as two writes instead of
    concatenating them.
    """
    cdef unsigned char h[10]
    _check_opcode(opcode, fin, rsv1)
    if length < 0:
        raise ValueError("length must be >= 0")
    if opcode >= C_OP_CLOSE and length > MAX_CONTROL:
        raise ValueError("control frame payload must be at most 125 bytes")
    return PyBytes_FromStringAndSize(<const char *>h, _write_header(h, opcode, length, fin, rsv1, False))


def encode_close(int code=1000, str reason=""):
    """A complete close frame (server side, unmasked).

    ``code`` must be sendable on the wire (see ``is_valid_close_code``);
    ``reason`` is UTF-8 encoded and must fit the 123 bytes left by the code.
    """
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent (valid: 1000-1003, 1007-1014, 3000-4999)")
    cdef bytes r = reason.encode("utf-8")
    if len(r) > 123:
        raise ValueError(f"close reason is {len(r)} bytes encoded; at most 123 fit a close frame")
    cdef bytes payload = bytes(((code >> 8) & 0xFF, code & 0xFF)) + r
    return build_frame(C_OP_CLOSE, PyBytes_AS_STRING(payload), len(payload), True, False)


def apply_mask(data, mask_key):
    """Return ``data`` XOR-ed with the 4-byte ``mask_key`` (masking and unmasking
    are the same operation), as a new ``bytes``."""
    cdef Py_buffer view
    cdef bytes key = _mask_key_bytes(mask_key)
    cdef bytes out
    cdef Py_ssize_t n
    if PyBytes_CheckExact(data):
        n = PyBytes_GET_SIZE(data)
        out = PyBytes_FromStringAndSize(NULL, n)
        _xor(<unsigned char *>PyBytes_AS_STRING(out),
             <const unsigned char *>PyBytes_AS_STRING(data), n,
             <const unsigned char *>PyBytes_AS_STRING(key), 0)
        return out
    PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
    try:
        out = PyBytes_FromStringAndSize(NULL, view.len)
        _xor(<unsigned char *>PyBytes_AS_STRING(out), <const unsigned char *>view.buf,
             view.len, <const unsigned char *>PyBytes_AS_STRING(key), 0)
        return out
    finally:
        PyBuffer_Release(&view)


def apply_mask_inplace(buffer, mask_key):
    """XOR a writable buffer (``bytearray``, writable ``memoryview``) with
    ``mask_key`` in place: no copy."""
    cdef Py_buffer view
    cdef bytes key = _mask_key_bytes(mask_key)
    # Through the buffer protocol even for a bytearray: while it is exported it
    # cannot be resized, and _xor lets the GIL go for large buffers, when
    # another thread could otherwise resize (and free) it under the loop.
    PyObject_GetBuffer(buffer, &view, PyBUF_WRITABLE)
    try:
        _xor(<unsigned char *>view.buf, <const unsigned char *>view.buf, view.len,
             <const unsigned char *>PyBytes_AS_STRING(key), 0)
    finally:
        PyBuffer_Release(&view)
