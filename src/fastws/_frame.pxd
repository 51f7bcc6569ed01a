# Public C-level interface of the frame codec, so the protocol (and users who
# cimport fastws) reach the parser and encoder without Python call overhead.
from libc.stdint cimport uint8_t, uint32_t, uint64_t

cdef extern from "_bytes.h":
    size_t fastws_mask(unsigned char *dst, const unsigned char *src, size_t n,
                       const unsigned char *key, size_t phase) nogil
    int fastws_utf8_check(const unsigned char *s, size_t n, uint32_t *state) nogil


cdef class FrameParser:
    # limits and negotiated features
    cdef uint64_t _max_size                   # 0 means no limit
    cdef readonly bint mask_required
    # header being assembled when it straddles two feed() calls
    cdef unsigned char _hdr[14]
    cdef Py_ssize_t _hdr_len
    # frame in progress (payload state)
    cdef bint _in_payload
    cdef int _opcode
    cdef bint _fin
    cdef bint _masked
    cdef unsigned char _key[4]
    cdef size_t _phase
    cdef uint64_t _remaining
    # message being assembled across frames or reads
    cdef int _msg_opcode                      # 0 when no data message is open
    cdef unsigned char *_msg
    cdef size_t _msg_len
    cdef size_t _msg_cap
    cdef uint32_t _utf8
    # control frame being assembled (at most 125 bytes by rule)
    cdef unsigned char _ctrl[125]
    cdef Py_ssize_t _ctrl_len
    cdef readonly object error                # the ProtocolError that stopped us
    # permessage-deflate (RFC 7692): set when negotiated
    cdef object _inflater
    cdef bint _compressed                     # the open message has RSV1
    cdef list _parts                          # its inflated fragments so far

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
