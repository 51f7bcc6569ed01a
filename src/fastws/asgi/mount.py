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
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from fastws.asgi.http_cycle import HttpCycle
from fastws.asgi.types import ASGIApp, Message, Scope
from fastws.asgi.websocket_cycle import Denial, WebSocketCycle
from fastws.errors import ClientDisconnected, HandshakeError, LifespanError
from fastws.http.context import Context, Response, plain_response
from fastws.http.upgrade import Upgrade, negotiate

if TYPE_CHECKING:
    from fastws.http.protocol import HttpProtocol
    from fastws.http.request import Request

__all__ = ["Mount", "ClientDisconnected", "LifespanError", "ASGIApp"]

log = logging.getLogger("fastws")

_ASGI = {"version": "3.0", "spec_version": "2.4"}
#: Seconds an app's lifespan shutdown may take before the server stops anyway.
LIFESPAN_SHUTDOWN_TIMEOUT = 30.0


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

    # ------------------------------------------------------------------ requests

    async def serve_http(self, proto: HttpProtocol, req: Request, ctx: Context,
                         started: float) -> bool:
        """Give one HTTP request to the app; whether the connection may take another."""
        keep_alive = req.keep_alive and not req.upgrade and not proto.server.closing
        cycle = HttpCycle(proto, req.body, req.method == "HEAD", keep_alive, req.version == "1.0")
        scope = self.scope("http", proto, ctx, raw_headers(req.raw_headers), req.version)
        proto.asgi_cycle = cycle
        try:
            keep_alive = await cycle.run(self.app, scope)
        finally:
            proto.asgi_cycle = None
        if proto.transport is None:
            return False
        proto.record(ctx, cycle.status, started)
        proto.responded(keep_alive)
        return keep_alive

    async def serve_websocket(self, proto: HttpProtocol, req: Request, ctx: Context,
                              started: float) -> bool:
        """Give one upgrade request to the app: the server's own checks first
        (as for its routes), then the app decides the handshake; an accepted
        socket is a fastws WebSocket. Always False: the connection is no
        longer HTTP."""
        try:
            accept = proto.accept_key(req, ctx)
        except HandshakeError as err:
            return _refuse(proto, ctx, plain_response(err.status, err.reason, dict(err.headers)),
                           started)
        refusal = proto.refusal(req, ctx)
        if refusal is not None:
            return _refuse(proto, ctx, plain_response(refusal.status, refusal.message,
                                                      refusal.headers), started)
        scope = self.scope("websocket", proto, ctx, raw_headers(req.raw_headers), req.version)
        offered = req.headers.get("sec-websocket-protocol")
        scope["subprotocols"] = [p.strip() for p in offered.split(",") if p.strip()] if offered else []
        scope["extensions"] = {"websocket.http.response": {}}
        cycle = WebSocketCycle()
        proto.asgi_cycle = cycle
        try:
            proto.hub.loop.create_task(cycle.run(self.app, scope))
            decision = await cycle.decided
        finally:
            proto.asgi_cycle = None
        if proto.transport is None or decision[0] == "gone":
            cycle.disconnected()        # an accept the app made waits for nothing
            return False
        if decision[0] == "accept":
            try:
                up = Upgrade(accept, decision[1], cycle.attach,
                             *negotiate(req, proto.site.ws_options))
                up.headers = decision[2]
                proto.switch(ctx, up)
            finally:
                if proto.ws is None:
                    # Refused after all (full, a bad header) or failed: the app's
                    # next send must not wait for a socket that will not come.
                    cycle.disconnected()
            proto.record(ctx, 101 if proto.ws is not None else 503, started)
            return False
        if decision[0] == "response":
            _, status, headers, body = decision
            try:
                response: Response = Denial(status, headers, body)
            except ValueError as exc:
                log.error("refused WebSocket upgrade to %s: %s", ctx.path, exc)
                response = plain_response(500, "Internal Server Error")
        elif decision[0] == "error":
            response = plain_response(500, "Internal Server Error")
        else:
            response = plain_response(403, "Forbidden")
        return _refuse(proto, ctx, response, started)

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


def _refuse(proto: HttpProtocol, ctx: Context, response: Response, started: float) -> bool:
    """Answer an upgrade for a mounted app with ``response`` and close."""
    proto.record(ctx, proto.write_response(response, keep_alive=False), started)
    return False
