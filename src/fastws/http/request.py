"""Reading HTTP/1.1 requests: httptools' callbacks, the caps on a request's
size, and the queue of parsed requests that ``HttpProtocol`` answers in order.

The caps are generous for browsers and small enough that a hostile client
cannot make us buffer much; a request that breaks one is refused: the
callback raises ``HTTPError`` with the status that says which, and the
protocol answers it and closes.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, NamedTuple

import httptools

from fastws.errors import HTTPError
from fastws.http.context import Headers

if TYPE_CHECKING:
    import asyncio
    from collections import deque

    from fastws.serve.server import Server

__all__ = ["MAX_BODY", "MAX_HEADERS", "MAX_HEADER_BYTES", "MAX_HEAD_BYTES", "MAX_PIPELINED",
           "MAX_URL", "Request", "RequestReader"]

log = logging.getLogger("fastws")

# Request size caps: generous for browsers, small enough that a hostile
# client cannot make us buffer much.
MAX_URL = 8192
MAX_HEADERS = 100
MAX_HEADER_BYTES = 16384
# Every byte of a request that is not body (its head: request line, header
# lines, their line ends; a chunk's size line; the trailer fields), counted as
# it is fed to the parser: httptools reports a header or trailer field only
# once its line ends, and grows a line that never ends by concatenation.
MAX_HEAD_BYTES = MAX_URL + MAX_HEADER_BYTES + 8192
MAX_BODY = 1 << 20
# Stop reading from a client that pipelines faster than we answer.
MAX_PIPELINED = 16


class Request(NamedTuple):
    """One parsed request, queued until it is answered."""

    method: str
    target: str
    version: str
    headers: Headers
    body: bytes
    keep_alive: bool
    upgrade: bool
    raw_headers: list[tuple[bytes, bytes]]    # as they came, for mounted ASGI apps


class RequestReader:
    """The request-reading half of ``HttpProtocol``: httptools calls these as
    it parses, and complete requests join ``_requests``. The state lives in
    the protocol's slots (one object per connection)."""

    __slots__ = ()

    server: Server
    transport: asyncio.Transport | None
    _parser: httptools.HttpRequestParser
    _requests: deque[Request]
    _pause: Callable[[], None]

    def _feed_within_budget(self, data: bytes) -> None:
        """Feed ``data`` in pieces no longer than what the current head may still
        take: a head (or chunk line, or trailer) that reaches MAX_HEAD_BYTES
        unfinished is refused (431) then and there, whatever its lines look
        like. Body bytes give their room back as they are parsed (on_body)."""
        view = memoryview(data)
        offset = 0
        while offset < len(view):
            room = MAX_HEAD_BYTES - self._head_bytes
            if room <= 0:
                raise HTTPError(431, "Request Header Fields Too Large")
            piece = view[offset:offset + room]
            self._head_bytes += len(piece)
            start, offset = offset, offset + len(piece)
            try:
                self._parser.feed_data(piece)
            except httptools.HttpParserUpgrade as upgrade:
                # Its offset counted from the start of data, not of the piece.
                raise httptools.HttpParserUpgrade(start + upgrade.args[0]) from None

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._in_request = True
        self._url = b""
        self._headers = Headers()
        self._raw_headers = []
        self._header_bytes = 0
        self._header_count = 0
        self._body = []
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_URL:
            raise HTTPError(414, "URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        self._header_count += 1
        if self._header_bytes > MAX_HEADER_BYTES or self._header_count > MAX_HEADERS:
            raise HTTPError(431, "Request Header Fields Too Large")
        self._headers.add_raw(name, value)
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        # RFC 9110 §10.1.1: a client that sent "Expect: 100-continue" waits
        # for this before sending its body. Only for a request that has a
        # body to send, and when nothing is queued ahead of it, so
        # responses stay in order.
        h = self._headers
        codings = h.getall("transfer-encoding")
        if codings and [c.strip().lower() for v in codings for c in v.split(",")] != ["chunked"]:
            # llhttp reads "identity, chunked" as chunked; a proxy may not.
            # Only plain chunked is understood here (the limits guide).
            raise HTTPError(400, "Bad Request: unsupported transfer coding")
        if (h.get("expect", "").lower() == "100-continue"
                and (h.get("content-length", "0") != "0" or "transfer-encoding" in h)
                and not self._requests
                and self._task is None and self.transport is not None
                and self._parser.get_http_version() == "1.1"):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_chunk_complete(self) -> None:
        # Each chunk's size line is counted on its own: a body of many small
        # chunks is no head too large. What follows the last one (trailers)
        # starts afresh, and is bounded as a head is.
        self._head_bytes = 0

    def on_body(self, body: bytes) -> None:
        n = len(body)
        # Body bytes were counted when fed: not head. Never below 0 (a count
        # reset within a piece, by a request ending there, could take it there).
        self._head_bytes = max(0, self._head_bytes - n)
        self._body_size += n
        if self._body_size > MAX_BODY:
            raise HTTPError(413, "Content Too Large")
        server = self.server
        if server.bodies_held + n > server.max_request_memory:
            # Many connections each holding a large body (or a pipeline of
            # them) could otherwise fill memory; per connection MAX_BODY is
            # not a bound on the whole server.
            log.warning("refusing a request body from %s: the server holds %d bytes of request "
                        "bodies (max_request_memory %d)", self._peer, server.bodies_held,
                        server.max_request_memory)
            raise HTTPError(503, "Service Unavailable: too many request bodies in memory")
        server.bodies_held += n
        self._held += n
        self._body.append(body)

    def _release_bodies(self, n: int | None = None) -> None:
        """Give back ``n`` bytes (all, by default) of the server's body budget."""
        n = self._held if n is None else min(n, self._held)
        if n:
            self._held -= n
            self.server.bodies_held -= n

    def on_message_complete(self) -> None:
        self._in_request = False
        self._head_bytes = 0        # whatever follows is the next request's
        p = self._parser
        self._requests.append(Request(
            p.get_method().decode("ascii"), self._url.decode("latin-1"),
            p.get_http_version(), self._headers, b"".join(self._body),
            p.should_keep_alive(), p.should_upgrade(), self._raw_headers))
        if len(self._requests) >= MAX_PIPELINED:
            self._pause()
