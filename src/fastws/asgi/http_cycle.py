"""One HTTP request given to a mounted ASGI app, and the response it sends
(``http.response.start``, then ``http.response.body`` until no ``more_body``),
framed by us: Content-Length when the body comes in one piece, chunked when it
streams, nothing for HEAD, 204, 304 and 1xx."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastws.asgi.types import ASGIApp, Message, Scope
from fastws.errors import ClientDisconnected
from fastws.http.context import plain_response
from fastws.http.heads import decode_pairs, response_head

if TYPE_CHECKING:
    from fastws.http.protocol import HttpProtocol

__all__ = ["HttpCycle"]

log = logging.getLogger("fastws")


class HttpCycle:
    """One HTTP request given to an ASGI app, and the response it sends."""

    __slots__ = ("proto", "body", "head_only", "keep_alive", "http10", "status", "_body_sent",
                 "_started", "_complete", "_gone", "_wake", "_headers", "_chunked", "_length",
                 "_sent", "_wrote_head")

    def __init__(self, proto: HttpProtocol, body: bytes, head_only: bool, keep_alive: bool,
                 http10: bool) -> None:
        self.proto = proto
        self.body = body
        self.head_only = head_only
        self.keep_alive = keep_alive
        self.http10 = http10
        self.status = 0
        self._body_sent = False
        self._started = False
        self._complete = False
        self._gone = False
        self._wake: asyncio.Future[None] | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._chunked = False
        self._length: int | None = None     # the app's Content-Length, if it gave one
        self._sent = 0
        self._wrote_head = False

    async def run(self, app: ASGIApp, scope: Scope) -> bool:
        """Serve the request; whether the connection may take another."""
        try:
            await app(scope, self.receive, self.send)
        except BaseException as exc:
            if isinstance(exc, ClientDisconnected) and self._gone:
                return False
            log.error("exception in the ASGI app serving %s %s", scope["method"],
                      scope["path"], exc_info=exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            if self._complete:
                # Starlette answers 500 itself and then raises again: the
                # response is whole, so the connection is still good.
                return self.keep_alive
            return self._failed()
        if not self._complete:
            if self._gone:
                return False
            log.error("the ASGI app serving %s %s returned without %s", scope["method"],
                      scope["path"], "finishing its response" if self._started else "a response")
            return self._failed()
        return self.keep_alive

    def _failed(self) -> bool:
        t = self.proto.transport
        if t is None or self._gone:
            return False
        if self._wrote_head:
            # Part of a response is out: only closing tells the client it is cut.
            t.close()
            return False
        self.status = 500
        t.write(plain_response(500, "Internal Server Error").encode(keep_alive=False))
        self.keep_alive = False
        return False

    def disconnected(self) -> None:
        """The TCP connection is gone (the protocol tells us)."""
        self._gone = True
        self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def receive(self) -> Message:
        """The body (once), then ``http.disconnect`` when the client goes or
        the response is complete."""
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": self.body, "more_body": False}
        while not (self._gone or self._complete):
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        """``http.response.start``, then ``http.response.body`` until no more_body."""
        kind = message["type"]
        if self._gone:
            raise ClientDisconnected("the client closed the connection")
        if kind == "http.response.start":
            if self._started:
                raise RuntimeError("http.response.start sent twice")
            self._started = True
            self.status = int(message["status"])
            self._headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r} for an HTTP request")
        if not self._started:
            raise RuntimeError("http.response.body before http.response.start")
        if self._complete:
            raise RuntimeError("http.response.body after the response was complete")
        body = message.get("body", b"")
        more = message.get("more_body", False)
        t = self.proto.transport
        if t is None:
            self.disconnected()
            raise ClientDisconnected("the client closed the connection")
        out = self._head(len(body), more) if not self._wrote_head else b""
        # HEAD, 204, 304 and 1xx carry no body, whatever the headers say (a 304
        # keeps the representation's Content-Length): nothing to count.
        no_body = self.head_only or self.status in (204, 304) or self.status < 200
        if no_body:
            body = b""
        elif self._length is not None:
            self._sent += len(body)
            if self._sent > self._length:
                raise RuntimeError(f"response body longer than its Content-Length ({self._length})")
        if body:
            if self._chunked:
                out += b"%x\r\n%s\r\n" % (len(body), body)
            else:
                out = out + body if out else body
        if not more:
            if self._chunked:
                out += b"0\r\n\r\n"
            if self._length is not None and self._sent != self._length and not no_body:
                raise RuntimeError(f"response body shorter than its Content-Length ({self._length})")
            self._complete = True
            self._wakeup()
        if out:
            # Only now is any of the response out: an error above still gets a 500.
            self._wrote_head = True
            t.write(out)
        if more and self.proto.write_paused:
            await self.proto.writable()
            if self._gone:
                raise ClientDisconnected("the client closed the connection")

    def _head(self, first: int, more: bool) -> bytes:
        """The status line and headers, with the framing the body needs."""
        kept = []
        has_te = False
        bodiless = self.status in (204, 304) or self.status < 200
        for name, value in decode_pairs(self._headers):
            low = name.lower()
            if low == "content-length":
                self._length = int(value)
            elif low == "transfer-encoding":
                # Framing is the server's job: chunked below, whatever it said.
                has_te = True
                continue
            elif low == "connection" and "close" in value.lower():
                self.keep_alive = False
            kept.append((name, value))
        ours = []
        if not bodiless and self._length is None:
            if not more and not has_te:
                ours.append(f"content-length: {first}")
            elif self.head_only:
                pass        # no body follows a HEAD, so nothing frames it (no chunks)
            elif self.http10:
                self.keep_alive = False     # the end of the body is the end of the connection
            else:
                self._chunked = True
                ours.append("transfer-encoding: chunked")
        if not self.keep_alive:
            ours.append("connection: close")
        return response_head(self.status, kept, ours)

