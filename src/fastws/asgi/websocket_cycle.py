"""One WebSocket given to a mounted ASGI app: its handshake decision (accept,
close, or an HTTP response of its own: ``Denial``), then its messages, carried
by a fastws ``WebSocket`` once accepted."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from fastws.asgi.types import ASGIApp, Message, Scope
from fastws.errors import ClientDisconnected
from fastws.http.heads import decode_pairs, response_head

__all__ = ["Denial", "INBOX_LIMIT", "WebSocketCycle"]

log = logging.getLogger("fastws")

#: Client messages that may wait for an app's ``receive`` before the client is
#: no longer read (what one read of the socket holds beyond it still arrives).
INBOX_LIMIT = 64


class Denial:
    """The HTTP response an app sent instead of accepting a WebSocket (the
    ``websocket.http.response`` extension), written as the app gave its
    headers: repeated names (``Set-Cookie``) included. The connection closes
    after it. Raises ValueError for a header with a line break in it."""

    __slots__ = ("status", "_raw")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        kept = [(name, value) for name, value in decode_pairs(headers)
                if name.lower() not in ("content-length", "transfer-encoding", "connection")]
        body = bytes(body)
        head = response_head(status, kept, (f"content-length: {len(body)}", "connection: close"))
        self.status = status
        self._raw = head + body

    def encode(self, keep_alive: bool, head: bool = False) -> bytes:
        """The whole response (as ``Response.encode``; always ``connection: close``)."""
        return self._raw


class WebSocketCycle:
    """One WebSocket given to an ASGI app: its handshake decision, then its messages.

    ``decided`` resolves with what the app answered the handshake with:
    ("accept", subprotocol, headers), ("close",), ("response", status,
    headers, body) or ("gone",).
    """

    __slots__ = ("decided", "ws", "_attached", "_inbox", "_wake", "_held", "_connected_sent",
                 "_closed", "_code", "_reason", "_response", "_sent_close", "_done")

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.decided: asyncio.Future[tuple] = loop.create_future()
        self.ws: Any = None
        # Resolved when the accepted socket exists (or never will): the app may
        # send right after its accept, before the protocol has switched.
        self._attached: asyncio.Future[None] = loop.create_future()
        self._inbox: deque[Any] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._held = False              # the client is not read: the inbox is full
        self._connected_sent = False
        self._closed = False
        self._code = 1006
        self._reason = ""
        self._response: list[Any] | None = None
        self._sent_close = False
        # Set when the app has returned or raised: the close code its socket
        # gets (1000 or 1011), even if the socket is attached only afterwards.
        self._done: int | None = None

    async def run(self, app: ASGIApp, scope: Scope) -> None:
        """The app's whole life on this connection."""
        try:
            await app(scope, self.receive, self.send)
        except BaseException as exc:
            if not (isinstance(exc, ClientDisconnected) and self._closed):
                log.error("exception in the ASGI app serving WebSocket %s", scope["path"],
                          exc_info=exc)
            if not self.decided.done():
                self.decided.set_result(("error",))
            self._finished(1011)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        if not self.decided.done():
            # Returned without accepting: refused (the ASGI spec's 403).
            self.decided.set_result(("close",))
        self._finished(1000)

    def _finished(self, code: int) -> None:
        """The app is done: nobody reads the inbox any more, and the socket
        closes (now, or as soon as the protocol attaches it: an app may return
        right after its accept, before the 101 is out)."""
        self._done = code
        self._inbox.clear()
        ws = self.ws
        if ws is not None:
            ws.hold_reading(False)
            ws.close(code, "internal error" if code == 1011 else "")

    # -- what the protocol and the WebSocket tell us

    def disconnected(self) -> None:
        """TCP went away before the handshake was answered."""
        self._closed = True
        if not self.decided.done():
            self.decided.set_result(("gone",))
        if not self._attached.done():
            self._attached.set_result(None)
        self._wakeup()

    def attach(self, ws: Any) -> None:
        """The route handler of the accepted socket: its messages go to our inbox."""
        self.ws = ws
        ws.json_events = False          # the app gets text as it came
        ws.on("message", self._message)
        ws.on("close", self._on_close)
        if not self._attached.done():
            self._attached.set_result(None)
        if self._done is not None:
            ws.close(self._done, "internal error" if self._done == 1011 else "")

    def _message(self, data: Any) -> None:
        if self._done is not None:
            return                      # the app is gone: nobody will take it
        self._inbox.append(data)
        self._wakeup()
        if len(self._inbox) >= INBOX_LIMIT and not self._held:
            # Full: the client is not read until the app has taken some. Not by
            # making this handler wait: that would hold the close event behind
            # it too, and an app that never reads would keep a closed socket.
            self._held = True
            self.ws.hold_reading(True)

    def _on_close(self, code: int, reason: str) -> None:
        self._closed = True
        self._code, self._reason = code, reason
        self._wakeup()

    def _wakeup(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    # -- the app's side

    async def receive(self) -> Message:
        """``websocket.connect`` first; then each message; then the disconnect."""
        if not self._connected_sent:
            self._connected_sent = True
            return {"type": "websocket.connect"}
        while True:
            if self._inbox:
                data = self._inbox.popleft()
                if self._held and len(self._inbox) <= INBOX_LIMIT // 2:
                    self._held = False
                    if self.ws is not None:
                        self.ws.hold_reading(False)
                if type(data) is str:
                    return {"type": "websocket.receive", "text": data}
                return {"type": "websocket.receive", "bytes": data}
            if self._closed:
                return {"type": "websocket.disconnect", "code": self._code, "reason": self._reason}
            self._wake = asyncio.get_running_loop().create_future()
            await self._wake

    async def send(self, message: Message) -> None:
        """Accept, send, close; or, before accepting, an HTTP response."""
        kind = message["type"]
        if not self.decided.done():
            if kind == "websocket.accept":
                subprotocol = message.get("subprotocol")
                if subprotocol is not None and type(subprotocol) is not str:
                    # Raised to the app, whose failure answers the upgrade 500.
                    raise TypeError(f"websocket.accept: subprotocol must be a str or None, "
                                    f"got {subprotocol!r}")
                headers = list(decode_pairs(message.get("headers", ())))
                self.decided.set_result(("accept", subprotocol, headers))
            elif kind == "websocket.close":
                self.decided.set_result(("close",))
            elif kind == "websocket.http.response.start":
                self._response = [int(message["status"]), list(message.get("headers", ())), []]
            elif kind == "websocket.http.response.body" and self._response is not None:
                self._response[2].append(message.get("body", b""))
                if not message.get("more_body", False):
                    status, headers, body = self._response
                    self.decided.set_result(("response", status, headers, b"".join(body)))
            elif self._closed:
                raise ClientDisconnected("the client closed the connection")
            else:
                raise RuntimeError(f"unexpected ASGI message {kind!r} before websocket.accept")
            return
        if not self._attached.done():
            await self._attached
        ws = self.ws
        if kind == "websocket.send":
            if ws is None or self._closed or self._sent_close or ws.ready_state != 1:
                raise ClientDisconnected("the WebSocket is closed")
            text = message.get("text")
            ws.send(text if text is not None else bytes(message.get("bytes") or b""))
            # A producer that outruns its client waits here, not in our memory.
            await ws.drain()
        elif kind == "websocket.close":
            if ws is not None and not self._sent_close:
                self._sent_close = True
                ws.close(int(message.get("code") or 1000), message.get("reason") or "")
        elif self._closed or self._sent_close:
            raise ClientDisconnected("the WebSocket is closed")
        else:
            raise RuntimeError(f"unexpected ASGI message {kind!r} after websocket.accept")
