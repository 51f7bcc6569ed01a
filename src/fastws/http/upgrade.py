"""WebSocket upgrades: the endpoint a WebSocket route gets (the handshake,
the server's own refusals, the route's guard), and the switch from HTTP to a
``WebSocket`` once the 101 goes out. Mounted ASGI apps use the same checks
and the same switch (``fastws.asgi``)."""

from __future__ import annotations

import inspect
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from fastws.deflate.permessage import negotiate as negotiate_deflate
from fastws.http.context import Context, HTTPError, Response, plain_response
from fastws.http.handshake import HandshakeError, response_101, same_origin, select_subprotocol, \
    validate_upgrade
from fastws.ops.access import client_text, escape
from fastws.runtime._websocket import WebSocket
from fastws.runtime.recovery import Session, negotiate_v1

if TYPE_CHECKING:
    import asyncio

    from fastws.http.protocol import Site
    from fastws.http.request import Request
    from fastws.runtime.hub import Hub
    from fastws.serve.server import Server

__all__ = ["Upgrade", "Upgrades", "negotiate"]

log = logging.getLogger("fastws")


class Upgrade(Response):
    """What a WebSocket route's endpoint returns when the upgrade may proceed."""

    __slots__ = ("accept", "subprotocol", "handler", "extensions", "negotiated", "app_subprotocol",
                 "session")

    def __init__(self, accept: str, subprotocol: str | None, handler: Any,
                 extensions: str | None = None, negotiated: Any = None) -> None:
        super().__init__(b"", 101)
        self.accept = accept
        #: What the 101 answers (``fastws.v1...`` for a fastws.v1 client).
        self.subprotocol = subprotocol
        self.handler = handler
        self.extensions = extensions
        self.negotiated = negotiated
        #: What the application sees as ``ws.subprotocol``.
        self.app_subprotocol = subprotocol
        #: The fastws.v1 session (``runtime.recovery``), or None: a plain client.
        self.session: Session | None = None


class Upgrades:
    """The upgrade half of ``HttpProtocol``: whether an upgrade can be
    answered at once, the route's upgrade endpoint, the refusals, the switch."""

    __slots__ = ()

    site: Site
    hub: Hub
    server: Server
    transport: asyncio.Transport | None
    ws: WebSocket | None
    _address: Any
    write_response: Callable[..., int]

    def _upgrades_now(self, req: Request) -> bool:
        """Whether only our code and synchronous user code decide this upgrade
        (it can then be answered within the callback that read it)."""
        if not req.upgrade or self.site.async_middleware:
            return False
        route = self.site.resolve(req.target.partition("?")[0]).get("WS")
        if route is None:
            return False
        guard = route[0][1]
        return guard is None or not inspect.iscoroutinefunction(guard)

    def _upgrade_endpoint(self, req: Request, target: Any) -> Callable[[Context], Awaitable[Response]]:
        """The endpoint a WebSocket route's request runs through the middleware:
        the handshake, the server's refusals, the route's guard, then ``Upgrade``."""
        handler, guard = target
        options = self.site.ws_options

        async def upgrade(ctx: Context) -> Response:
            try:
                accept = self.accept_key(req, ctx)
            except HandshakeError as err:
                return ctx.text(err.reason, status=err.status, headers=dict(err.headers))
            refusal = self.refusal(req, ctx)
            if refusal is not None:
                raise refusal
            if guard is not None:
                try:
                    verdict = guard(ctx)
                    if inspect.isawaitable(verdict):
                        verdict = await verdict
                except HTTPError as err:
                    _guard_refused(ctx, err.status, err.message)
                    raise
                if verdict is False:
                    _guard_refused(ctx, 403, "the guard returned False")
                    raise HTTPError(403, "Forbidden")
                if isinstance(verdict, Response):
                    _guard_refused(ctx, verdict.status, "the guard returned a response")
                    return verdict
            offered = req.headers.get("sec-websocket-protocol")
            v1 = negotiate_v1(offered, options.subprotocols)
            if v1 is None:
                return Upgrade(accept, select_subprotocol(offered, options.subprotocols), handler,
                               *negotiate(req, options))
            up = Upgrade(accept, v1[0], handler, *negotiate(req, options))
            up.app_subprotocol = v1[1]
            up.session = Session(v1[2])
            return up

        return upgrade

    def accept_key(self, req: Request, ctx: Context) -> str:
        """The upgrade's Sec-WebSocket-Accept; HandshakeError (logged) when the
        request is no valid opening handshake."""
        try:
            return _validate(req)
        except HandshakeError as err:
            log.info("refused WebSocket upgrade to %s: %d %s", ctx.path, err.status, err.reason)
            raise

    def refusal(self, req: Request, ctx: Context) -> HTTPError | None:
        """Why an upgrade must be refused before any user code runs (per-address
        limits, origins, max_connections, draining), or None."""
        limits = self.hub.limits
        if limits.active and ctx.remote and self._address is None and self.transport is not None:
            refusal = limits.refuse(ctx.remote[0], time.monotonic())
            if refusal is not None:
                log.info("refused WebSocket upgrade to %s from %s: %s", ctx.path,
                         ctx.remote[0], refusal[0])
                return HTTPError(429, refusal[0], {"Retry-After": str(refusal[1])})
            # Counted from here, not from the switch: upgrades from one address
            # that wait in an async guard at once would all pass the check.
            # connection_lost gives it back, whether the socket opened or not
            # (after an upgrade request the connection closes either way).
            self._address = ctx.remote[0]
            limits.opened(self._address)
        allowed = self.site.ws_options.allowed_origins if self.site.ws_options else None
        if allowed != "*":
            origin = req.headers.get("origin")
            if allowed is None:
                # By default a browser page on another site may not open a
                # socket here with the user's cookies (cross-site hijacking).
                refused = origin is not None and not same_origin(origin, req.headers.get("host"))
            else:
                refused = origin not in allowed
            if refused:
                log.info("refused WebSocket upgrade to %s from origin %r (host %r)", ctx.path,
                         origin, req.headers.get("host"))
                return HTTPError(403, "Origin not allowed")
        if self._full():
            return HTTPError(503, "Too many connections")
        if self.server.closing:
            return HTTPError(503, "Server draining", {"Retry-After": "1"})
        return None

    def _full(self) -> bool:
        """Whether ``max_connections`` WebSockets are open (logged when so)."""
        options = self.site.ws_options
        limit = options.max_connections if options is not None else None
        if limit is None or len(self.hub.sockets) < limit:
            return False
        log.warning("refused WebSocket upgrade: %d connections open (max_connections)",
                    len(self.hub.sockets))
        return True

    def switch(self, ctx: Context, up: Upgrade) -> None:
        """Send 101 and hand the connection to a new WebSocket."""
        t = self.transport
        if self._full():
            # Checked again here: an async guard or middleware may have let
            # several upgrades through the first check at once.
            self.write_response(plain_response(503, "Too many connections"), keep_alive=False)
            return
        # Headers a middleware added to the upgrade's response (Set-Cookie...) go on the 101.
        try:
            head = response_101(up.accept, up.subprotocol, up.extensions, up.headers)
        except ValueError as exc:
            log.error("refused WebSocket upgrade to %s: %s", ctx.path, exc)
            self.write_response(plain_response(500, "Internal Server Error"), keep_alive=False)
            return
        ws = WebSocket(self.hub.shared, t, ctx, up.app_subprotocol, self, up.negotiated, up.session)
        self.ws = ws
        # From here the transport talks to the WebSocket directly; we keep
        # only the server's bookkeeping (connection_lost comes back to us).
        # Before the 101 goes out: an early transport hands itself over to a
        # real one at its first write, and the real one must belong to the WebSocket.
        t.set_protocol(ws)
        t.write(head)
        # High-water mark 0: the transport tells the WebSocket as soon as it
        # holds anything unwritten, so one number (its queue plus the
        # transport's) can be held to max_backpressure.
        t.set_write_buffer_limits(high=0)
        early, self._early = self._early, None
        self._parser = self._headers = self._body = self._url = self._requests = None
        self._raw_headers = None
        # Reading was paused since the upgrade request; from now on the
        # WebSocket decides (nothing arrives before this task yields).
        self._paused = False
        t.resume_reading()
        if up.session is not None:
            ws._send_control(up.session.welcome(self.hub.shared.ping_interval))
        ws._start(up.handler, ctx)
        if early and self.transport is not None:
            ws.data_received(bytes(early))


def _guard_refused(ctx: Context, status: int, reason: object) -> None:
    """Log a guard's refusal as the server's own refusals are logged, so an
    operator sees why a client could not connect. The path only, never the
    query: tokens travel there. The reason is the app's own text (what the
    client is answered), escaped onto one line."""
    client = client_text(ctx.remote)
    log.info("refused WebSocket upgrade to %s from %s: guard answered %d, %s", escape(ctx.path),
             client, status, escape(str(reason)),
             extra={"client": client, "path": ctx.path, "status": status})


def _validate(req: Request) -> str:
    """The upgrade's Sec-WebSocket-Accept, or HandshakeError."""
    accept = validate_upgrade(req.method, req.version, req.headers)
    if not req.upgrade:
        # httptools kept reading HTTP after this request, so the bytes that
        # follow are not ours to hand to a WebSocket.
        raise HandshakeError(400, "Connection header lacks the upgrade token")
    return accept


def negotiate(req: Request, options: Any) -> tuple[Any, Any]:
    """permessage-deflate for this upgrade: (response header value, settings),
    or (None, None) when it is off or not offered."""
    if options is None or options.compression is None:
        return None, None
    return negotiate_deflate(req.headers.getall("sec-websocket-extensions"), options.compression)

