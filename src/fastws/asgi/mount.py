"""ASGI 3 applications served next to fastws's own routes: ``app.mount(prefix, asgi_app)``.

A FastAPI or Starlette app keeps its HTTP routes (and its WebSocket routes)
while fastws serves its own rooms on the same port. A request whose path no
fastws route matches goes to the app mounted at the longest matching prefix:

- HTTP requests become an ``http`` scope. The body was read and bounded by the
  HTTP layer (1 MiB) and arrives in one ``http.request``; the response is
  written as the app sends it: one write when it comes in one piece (with a
  Content-Length), chunked (HTTP/1.1) when it streams, paced by the client's
  reading (``send`` waits while the transport is over its high-water mark).
  After the client is gone ``send`` raises ``ClientDisconnected`` (an OSError,
  as the ASGI spec 2.4 asks) and ``receive`` returns ``http.disconnect``.
- WebSocket upgrades become a ``websocket`` scope, after the same checks as
  fastws's own routes (origins, ``max_connections``, per-address limits,
  draining). The app's ``websocket.accept`` answers the 101 and the
  connection is a fastws ``WebSocket`` from then on: frames, limits, pings
  and compression are fastws's; what the client sends waits in a short queue
  for the app's ``receive`` (when it is full the client is not read, so a slow
  app holds up only its own client, and a close still frees the socket at
  once); ``websocket.send`` goes out corked, and
  waits while the client is over its high-water mark. A close before the
  accept answers 403; the ``websocket.http.response`` extension answers any
  other HTTP response.
- Lifespan: the app's ``startup`` runs with the server's startup hooks (once
  per process, each worker included) and a ``startup.failed`` stops the server
  with the app's message; ``shutdown`` runs with the shutdown hooks. An app
  that does not speak lifespan (it raises on the scope) is served without it.

fastws's middleware does not wrap mounted apps (they bring their own); proxy
headers, access logs, health and metrics see their requests as any other.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Awaitable, Callable, MutableMapping
from urllib.parse import unquote

from fastws.errors import ClientDisconnected, LifespanError

if TYPE_CHECKING:
    from fastws.http.protocol import HttpProtocol

__all__ = ["Mount", "ClientDisconnected", "LifespanError", "ASGIApp"]

log = logging.getLogger("fastws")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application: ``async def app(scope, receive, send)``.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_ASGI = {"version": "3.0", "spec_version": "2.4"}
#: Client messages that may wait for an app's ``receive`` before the client is
#: no longer read (what one read of the socket holds beyond it still arrives).
INBOX_LIMIT = 64
#: Seconds an app's lifespan shutdown may take before the server stops anyway.
LIFESPAN_SHUTDOWN_TIMEOUT = 30.0


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        line = f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")
        if len(_STATUS_LINES) < 128:
            _STATUS_LINES[status] = line
    return line


_STATUS_LINES: dict[int, bytes] = {}


def _check_head(head: bytes, lines: int, headers: list[tuple[bytes, bytes]]) -> None:
    # A line break inside a header would let whoever controls its value write
    # headers (or a whole response) of their own: the head has exactly one
    # CR and one LF per line of ours, two scans in C instead of four per header.
    if head.count(b"\n") != lines or head.count(b"\r") != lines:
        for name, value in headers:
            if b"\n" in name or b"\r" in name or b"\n" in value or b"\r" in value:
                raise ValueError(f"invalid response header {name!r}: {value!r}")


class Mount:
    """An ASGI app served under ``prefix`` ("" for the root), with its lifespan."""

    __slots__ = ("prefix", "app", "state", "_inbox", "_started", "_stopped", "_task")

    def __init__(self, prefix: str, app: ASGIApp) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"mount prefix must start with '/', got {prefix!r}")
        if inspect.isclass(app) or not callable(app):
            raise TypeError(f"app.mount() takes an ASGI 3 application (async def app(scope, "
                            f"receive, send), or an instance such as FastAPI()), got {app!r}")
        self.prefix = prefix.rstrip("/")
        self.app = app
        #: The lifespan state (ASGI ``scope["state"]``): what the app's startup
        #: stored there, copied into every request's scope.
        self.state: dict[str, Any] = {}
        self._inbox: asyncio.Queue[Message] | None = None
        self._started: asyncio.Future[str] | None = None
        self._stopped: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None

    def matches(self, path: str) -> bool:
        """Whether ``path`` is this mount's (its prefix, or below it)."""
        p = self.prefix
        return not p or path == p or path.startswith(p) and path[len(p)] == "/"

    # ------------------------------------------------------------------ lifespan

    async def startup(self) -> None:
        """Run the app's lifespan startup (a server startup hook)."""
        loop = asyncio.get_running_loop()
        self._inbox = asyncio.Queue()
        self._started = loop.create_future()
        self._stopped = loop.create_future()
        self.state = {}
        self._task = loop.create_task(self._lifespan())
        self._inbox.put_nowait({"type": "lifespan.startup"})
        outcome = await self._started
        if outcome == "unsupported":
            self._task = None
            log.info("the ASGI app mounted at %r does not use lifespan events", self.prefix or "/")

    async def shutdown(self) -> None:
        """Run the app's lifespan shutdown (a server shutdown hook)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        try:
            await asyncio.wait_for(asyncio.shield(self._stopped), LIFESPAN_SHUTDOWN_TIMEOUT)
        except asyncio.TimeoutError:
            log.warning("the ASGI app mounted at %r did not finish its lifespan shutdown "
                        "within %.0fs", self.prefix or "/", LIFESPAN_SHUTDOWN_TIMEOUT)
            task.cancel()

    async def _lifespan(self) -> None:
        scope = {"type": "lifespan", "asgi": _ASGI, "state": self.state}
        try:
            await self.app(scope, self._inbox.get, self._lifespan_send)
        except BaseException as exc:
            if not self._started.done():
                # What uvicorn's "auto" does too: an app that raises before it
                # says anything about startup does not speak lifespan.
                log.debug("lifespan of %r raised %r: treated as unsupported", self.prefix, exc)
                self._started.set_result("unsupported")
            elif not self._stopped.done():
                log.error("the lifespan of the ASGI app mounted at %r raised", self.prefix or "/",
                          exc_info=exc)
                self._stopped.set_result(None)
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if not self._started.done():
                self._started.set_result("unsupported")
            if not self._stopped.done():
                self._stopped.set_result(None)

    async def _lifespan_send(self, message: Message) -> None:
        kind = message["type"]
        where = self.prefix or "/"
        if kind == "lifespan.startup.complete":
            if not self._started.done():
                self._started.set_result("complete")
        elif kind == "lifespan.startup.failed":
            if not self._started.done():
                text = (message.get("message") or "").strip()
                if "\n" in text:
                    # Starlette sends the whole traceback: log it, and keep its
                    # last line for the one-line error the server stops with.
                    log.error("the ASGI app mounted at %r failed to start:\n%s", where, text)
                    text = text.splitlines()[-1]
                self._started.set_exception(LifespanError(
                    f"the ASGI app mounted at {where!r} failed to start: {text or 'no message'}"))
                self._stopped.set_result(None)      # there is nothing to shut down
        elif kind == "lifespan.shutdown.complete":
            if not self._stopped.done():
                self._stopped.set_result(None)
        elif kind == "lifespan.shutdown.failed":
            log.error("the ASGI app mounted at %r failed to shut down: %s", where,
                      message.get("message") or "no message")
            if not self._stopped.done():
                self._stopped.set_result(None)
        else:
            raise RuntimeError(f"unexpected ASGI lifespan message {kind!r}")

    # ------------------------------------------------------------------ scopes

    def scope(self, kind: str, proto: HttpProtocol, ctx: Any, headers: list[tuple[bytes, bytes]],
              http_version: str) -> Scope:
        """The ``http`` or ``websocket`` scope of one request."""
        path = ctx.path
        scheme = ctx.scheme
        if kind == "websocket":
            scheme = "wss" if scheme == "https" else "ws"
        remote = ctx.remote
        server = proto.sockname
        return {
            "type": kind, "asgi": _ASGI, "http_version": http_version, "scheme": scheme,
            "method": ctx.method, "path": unquote(path) if "%" in path else path,
            "raw_path": path.encode("latin-1"), "root_path": self.prefix,
            "query_string": ctx.raw_query.encode("latin-1"), "headers": headers,
            "client": tuple(remote[:2]) if isinstance(remote, tuple) else None,
            "server": tuple(server[:2]) if isinstance(server, tuple) else None,
            "state": self.state.copy(),
        }


def raw_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """Request headers as ASGI wants them: names lower-cased, in the order sent."""
    return [(name.lower(), value) for name, value in raw]


# ---------------------------------------------------------------------- HTTP


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
        body = b"Internal Server Error"
        t.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body))
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
        parts = [_status_line(self.status)]
        lines = 2                       # the status line and the blank line
        has_te = False
        bodiless = self.status in (204, 304) or self.status < 200
        for name, value in self._headers:
            low = name.lower()
            if low == b"content-length":
                self._length = int(value)
            elif low == b"transfer-encoding":
                # Framing is the server's job: chunked below, whatever it said.
                has_te = True
                continue
            elif low == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        if not bodiless and self._length is None:
            if not more and not has_te:
                parts.append(b"content-length: %d\r\n" % first)
                lines += 1
            elif self.head_only:
                pass        # no body follows a HEAD, so nothing frames it (no chunks)
            elif self.http10:
                self.keep_alive = False     # the end of the body is the end of the connection
            else:
                self._chunked = True
                parts.append(b"transfer-encoding: chunked\r\n")
                lines += 1
        if not self.keep_alive:
            parts.append(b"connection: close\r\n")
            lines += 1
        parts.append(b"\r\n")
        head = b"".join(parts)
        _check_head(head, lines, self._headers)
        return head


# ---------------------------------------------------------------------- WebSocket


class Denial:
    """The HTTP response an app sent instead of accepting a WebSocket (the
    ``websocket.http.response`` extension), written as the app gave its
    headers: repeated names (``Set-Cookie``) included. The connection closes
    after it. Raises ValueError for a header with a line break in it."""

    __slots__ = ("status", "_raw")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        parts = [_status_line(status)]
        lines = 4       # the status line, content-length, connection and the blank line
        for name, value in headers:
            name, value = bytes(name), bytes(value)
            if name.lower() in (b"content-length", b"transfer-encoding", b"connection"):
                continue        # framing is ours
            parts += (name, b": ", value, b"\r\n")
            lines += 1
        parts.append(b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        head = b"".join(parts)
        _check_head(head, lines, headers)
        self.status = status
        self._raw = head + bytes(body)

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
                headers = [(bytes(k).decode("latin-1"), bytes(v).decode("latin-1"))
                           for k, v in message.get("headers", ())]
                self.decided.set_result(("accept", message.get("subprotocol"), headers))
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
