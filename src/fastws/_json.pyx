# cython: language_level=3
"""The default JSON serializer and parser: orjson where it gives what the
stdlib's json module gives, the json module itself everywhere else.

Chat servers spend much of a message in JSON: the event a client sends is
parsed, the dict a handler broadcasts is serialized. orjson does both in a
fraction of the json module's time, but differs from it on some values; each of
those goes through the json module, so what a client receives and what a
handler is given do not change with the library:

- ``dumps``: values orjson refuses (integers past 64 bits, dict keys that are
  not str, subclasses of str/int/float/dict/list such as IntEnum and StrEnum,
  dataclasses and dates, which the stdlib refuses too, strings with lone
  surrogates) raise in orjson and are serialized by the stdlib, which then
  gives its own answer or error. NaN and the infinities, which orjson writes as
  ``null`` where the stdlib writes ``NaN``/``Infinity``, are caught by looking
  for ``null`` in orjson's output: such output is made again by the stdlib. The
  text may differ in a float's spelling (``1e-07`` against ``1e-7``): the same
  number. Two kinds of value orjson serializes and the stdlib refuses: plain
  ``Enum`` members (their value) and ``uuid.UUID`` (its string).
- ``loads``: text orjson refuses (``NaN``, ``Infinity``, numbers too large for
  a double, lone surrogates, nesting past 1,024) is parsed by the stdlib, which
  gives its own value or error. An integer literal of 19 digits or more, which
  orjson would make a float past 64 bits, sends the whole text to the stdlib.

Where orjson is not installed (no wheel for the platform) both are the json
module's. ``websocket(dumps=..., loads=...)`` replaces either.
"""

import json as _json

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_GET_LENGTH

cdef extern from "string.h" nogil:
    void *memmem(const void *haystack, size_t haystacklen, const void *needle, size_t needlelen)

cdef extern from "Python.h":
    void *PyUnicode_DATA(object o)
    int PyUnicode_KIND(object o)
    Py_UCS4 PyUnicode_READ(int kind, void *data, Py_ssize_t index)

__all__ = ["dumps", "loads", "FAST"]

# json.dumps with any non-default argument builds a new encoder per call; one
# made here gives the same text in two thirds of the time.
_encode = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_decode = _json.loads

try:
    import orjson as _orjson
except ImportError:                 # pragma: no cover - no wheel for this platform
    _orjson = None

#: The library behind the fast path: "orjson", or "json" where orjson is missing.
FAST = "orjson" if _orjson is not None else "json"

cdef object _o_dumps = _orjson.dumps if _orjson is not None else None
cdef object _o_loads = _orjson.loads if _orjson is not None else None
# Subclasses, dataclasses and dates raise in orjson too, so the stdlib decides.
cdef object _o_options = (_orjson.OPT_PASSTHROUGH_SUBCLASS | _orjson.OPT_PASSTHROUGH_DATACLASS
                          | _orjson.OPT_PASSTHROUGH_DATETIME) if _orjson is not None else 0
cdef object _o_error = _orjson.JSONDecodeError if _orjson is not None else ValueError

# An integer of this many digits may be past 64 bits.
cdef enum:
    LONG_DIGITS = 19


def dumps(obj):
    """JSON for ``obj``: compact, non-ASCII kept as is; UTF-8 bytes from orjson
    or a str from the json module, the same JSON either way (module doc)."""
    if _o_dumps is None:
        return _encode(obj)
    try:
        out = _o_dumps(obj, None, _o_options)
    except TypeError:
        return _encode(obj)
    if memmem(PyBytes_AS_STRING(out), PyBytes_GET_SIZE(out), b"null", 4) is not NULL:
        # None, or a NaN or an infinity orjson wrote as null: the stdlib knows.
        return _encode(obj)
    return out


cdef bint _long_digits(str text):
    """Whether ``text`` has a run of LONG_DIGITS digits or more."""
    cdef Py_ssize_t i, n = PyUnicode_GET_LENGTH(text), run = 0
    cdef int kind = PyUnicode_KIND(text)
    cdef void *data = PyUnicode_DATA(text)
    cdef Py_UCS4 c
    if n < LONG_DIGITS:
        return False
    for i in range(n):
        c = PyUnicode_READ(kind, data, i)
        if 48 <= c <= 57:
            run += 1
            if run >= LONG_DIGITS:
                return True
        else:
            run = 0
    return False


def loads(text):
    """The value of the JSON ``text`` (str, bytes or bytearray), as the json
    module gives it (module doc)."""
    if _o_loads is None or (type(text) is str and _long_digits(<str>text)):
        return _decode(text)
    if type(text) is not str:
        return _decode(text)
    try:
        return _o_loads(text)
    except _o_error:
        return _decode(text)
