# cython: language_level=3, boundscheck=False, wraparound=False
"""Encode-once fan-out: one framed ``bytes`` object written to many transports.

The frame is built once by the caller (``encode_frame``); this loop only hands
the same object to each recipient's ``write``, so a broadcast costs no
per-recipient serialization, framing or copying.
"""

__all__ = ["write_all"]


cpdef Py_ssize_t write_all(bytes frame, object transports, object skip=None) except -1:
    """Write ``frame`` to every transport in ``transports`` except ``skip``.

    Transports that are closing are passed over. Returns how many got it.
    """
    cdef Py_ssize_t sent = 0
    for t in transports:
        if t is skip or t.is_closing():
            continue
        t.write(frame)
        sent += 1
    return sent
