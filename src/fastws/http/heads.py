"""HTTP/1.1 response heads: the status line and the header lines HTTP can carry.

Every response fastws writes goes through ``response_head``: its own
(``Response.encode``), the 101 of an upgrade (``handshake.response_101``) and
what a mounted ASGI app sends (``fastws.asgi``). A header value comes from
user code often enough (a cookie, a redirect built from a query) that the
check is made once, here, for all of them: a line break in a value would let
whoever controls it write headers, or a whole response, of their own.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Iterable, Iterator

__all__ = ["check_header", "decode_pairs", "response_head", "status_line"]

# RFC 9110 §5.1: a field name is a token. §5.5: a value must not hold CR, LF
# or NUL; and a head is written in Latin-1, so nothing above U+00FF fits.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_UNSENDABLE = re.compile(r"[\r\n\x00]|[^\x00-\xff]")

# status -> "HTTP/1.1 <status> <phrase>"; bounded, as an ASGI app may send any number.
_STATUS_LINES: dict[int, str] = {}
_STATUS_LINES_MAX = 128


def status_line(status: int) -> str:
    """``HTTP/1.1 <status> <reason>``: the reason is the registered phrase, or
    empty for a status that has none (RFC 9112 §4 lets the reason be empty)."""
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}"
        if len(_STATUS_LINES) < _STATUS_LINES_MAX:
            _STATUS_LINES[status] = line
    return line


def check_header(name: object, value: object) -> None:
    """Raise ValueError, naming the header, if ``name: value`` cannot be sent
    as an HTTP/1.1 header line as it is (a name or value that is not a str
    included: compiled, a ``str`` annotation here would raise TypeError first)."""
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ValueError(f"header name {name!r} is not an HTTP token")
    if not isinstance(value, str):
        raise ValueError(f"header {name!r} has a {type(value).__name__} value, not a str")
    bad = _UNSENDABLE.search(value)
    if bad is not None:
        raise ValueError(f"header {name!r} contains {bad.group()!r}, which HTTP cannot carry "
                         f"(value {value!r})")


def response_head(status: int, headers: Iterable[tuple[str, str]], ours: Iterable[str] = (),
                  first: Iterable[str] = ()) -> bytes:
    """The head of a response: the status line, ``first``, ``headers`` (each
    checked with ``check_header``; ValueError for one HTTP cannot carry), then
    ``ours``, then the blank line. ``first`` and ``ours`` are lines the server
    wrote itself (a handshake's, framing, Connection), sent as they are."""
    lines = [status_line(status), *first]
    for name, value in headers:
        check_header(name, value)
        lines.append(f"{name}: {value}")
    lines.extend(ours)
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1")


def decode_pairs(headers: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[str, str]]:
    """Byte-string headers (ASGI's) as the text a head is checked and written in:
    Latin-1 maps every byte to one character and back."""
    for name, value in headers:
        yield bytes(name).decode("latin-1"), bytes(value).decode("latin-1")
