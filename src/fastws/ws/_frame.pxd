# Public C-level interface of the frame codec, so the protocol (and users who
# cimport fastws) reach the parser and encoder without Python call overhead.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "_bytes.h":
    size_t fastws_mask(unsigned char *dst, const unsigned char *src, size_t n,
                       const unsigned char *key, size_t phase) nogil
    int fastws_utf8_check(const unsigned char *s, size_t n, uint32_t *state) nogil


cdef class FrameParser:
    # Word-sized fields first, then the small ones, so the object packs tight:
    # every connection holds one.
    cdef uint64_t _max_size                   # 0 means no limit
    cdef Py_ssize_t _hdr_len                  # header bytes saved when it straddles feed() calls
    cdef size_t _phase                        # payload state of the frame in progress
    cdef uint64_t _remaining
    # message being assembled across frames or reads
    cdef unsigned char *_msg
    cdef size_t _msg_len
    cdef size_t _msg_cap
    # control frame being assembled: MAX_CONTROL bytes while one is read, else NULL
    cdef unsigned char *_ctrl
    cdef Py_ssize_t _ctrl_len
    cdef readonly object error                # the ProtocolError that stopped us
    # permessage-deflate (RFC 7692): set when negotiated
    cdef object _inflater
    cdef object _parts                        # the open message's inflated bytes so far: None, bytes, or a bytearray once there are two pieces
    cdef uint32_t _utf8
    cdef readonly bint mask_required
    cdef unsigned char _hdr[14]
    cdef unsigned char _key[4]
    cdef unsigned char _in_payload
    cdef unsigned char _opcode
    cdef unsigned char _fin
    cdef unsigned char _masked
    cdef unsigned char _msg_opcode            # 0 when no data message is open
    cdef unsigned char _compressed            # the open message has RSV1

    cpdef list feed(self, object data)
    cdef int _fail(self, list out, int code, str reason) except -1
    cdef Py_ssize_t _header(self, const unsigned char *p, Py_ssize_t avail, list out) except -2
    cdef int _frame_done(self, list out) except -1
    cdef int _finish_message(self, list out, const char *data, Py_ssize_t n, object whole) except -1
    cdef int _inflated_done(self, list out, bint ended) except -1
    cdef object _inflate(self, list out, object payload, bint whole)
    cdef int _control(self, list out, const unsigned char *p, Py_ssize_t n) except -1
    cdef int _grow(self, size_t need) except -1
    cdef void _reset_message(self) noexcept
    cdef inline void _unmask_into(self, unsigned char *dst, const unsigned char *src, Py_ssize_t n)


cpdef bytes encode_frame(int opcode, object payload, bint fin=*, bint rsv1=*, object mask_key=*)
cpdef bytes frame_header(int opcode, Py_ssize_t length, bint fin=*, bint rsv1=*)
cdef bytes build_frame(int opcode, const char *data, Py_ssize_t n, bint fin, bint rsv1)
