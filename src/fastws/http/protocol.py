"""The asyncio Protocol for one TCP connection: HTTP/1.1 requests parsed by
httptools and answered in order, then, after an upgrade, WebSocket frames
handed to the connection's WebSocket.

What this layer needs of the application is small and explicit (``Site``):
resolve a path to its routes, run the middleware chain around an endpoint to
get a response, and the WebSocket options. The runtime it hands each
WebSocket (rooms, sockets, flusher, counters) is the server's ``Hub``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Protocol
from urllib.parse import urlsplit

import httptools

from fastws.http.context import Context, Headers, HTTPError, Response, plain_response
from fastws.http.handshake import is_upgrade_request
from fastws.http.request import MAX_HEAD_BYTES, MAX_PIPELINED, Request, RequestReader
from fastws.http.routing import Params
from fastws.http.upgrade import Upgrade, Upgrades
from fastws.net.listener import EarlyTransport
from fastws.options import WebSocketOptions
from fastws.runtime._websocket import WebSocket
from fastws.runtime.kernel import kernel_unsent
from fastws.runtime.eager import run_eagerly
from fastws.ws._connection import LINGER_ABORT, LINGER_CLOSE, linger_step

if TYPE_CHECKING:
    from fastws.runtime.hub import Hub
    from fastws.serve.server import Server

__all__ = ["HttpProtocol", "Mounted", "Site"]

log = logging.getLogger("fastws")


class Mounted(Protocol):
    """What the HTTP side needs of an app mounted next to the routes (``fastws.asgi.Mount``)."""

    async def serve_http(self, proto: HttpProtocol, req: Request, ctx: Context,
                         started: float) -> bool:
        """Answer one HTTP request; whether the connection may take another."""

    async def serve_websocket(self, proto: HttpProtocol, req: Request, ctx: Context,
                              started: float) -> bool:
        """Answer one upgrade request (False: the connection is no longer HTTP)."""


class Site(Protocol):
    """What serving needs of the application (``App`` is one): the HTTP side reads
    the routes, the middleware chain, the mounts and the options; the server
    (``fastws.serve.server``) the lifecycle hooks and the backplane."""

    ws_options: WebSocketOptions | None
    #: Whether a middleware is a coroutine function (then upgrades are answered
    #: in a task, where such code may rely on asyncio.current_task()).
    async_middleware: bool
    #: Called before the first connection is accepted, and after the last is closed.
    startup_hooks: list[Callable[[], Any]]
    shutdown_hooks: list[Callable[[], Any]]
    #: The ``BackplaneOptions`` that ``backplane()`` installed, or None.
    backplane: Any
    #: The handlers registered with ``app.cluster.on`` ("lost", "restored").
    cluster_handlers: dict[str, list[Callable[[], Any]]]

    def resolve(self, path: str) -> dict[str, tuple[Any, Params]]:
        """Every kind routed at ``path`` (HTTP methods, "WS") with its target and params."""

    def mount_for(self, path: str) -> Mounted | None:
        """The ASGI app mounted where ``path`` is (when no route of ours is), or None."""

    async def respond(self, ctx: Context,
                      endpoint: Callable[[Context], Awaitable[Response]]) -> Response:
        """The response to ``ctx``: the middleware chain around ``endpoint``."""


# Seconds a connection accepted but not yet answered may still send its
# request once a shutdown has begun.
SHUTDOWN_GRACE = 1.0


class _Answering:
    """Stands for the task while a request is answered eagerly (nothing to cancel:
    it runs inside the current callback)."""

    def cancel(self) -> None:
        pass


_ANSWERING = _Answering()


class HttpProtocol(RequestReader, Upgrades, asyncio.Protocol):
    """One client connection, HTTP first and WebSocket after an upgrade.

    After the upgrade the transport talks to the WebSocket; this object stays
    only for the server's bookkeeping, with its request state dropped.

    Reading requests (``RequestReader``, fastws.http.request) and upgrading
    (``Upgrades``, fastws.http.upgrade) are written apart; this class holds
    their state and does the rest: the transport's callbacks, answering in
    order, deadlines, writing responses and the lingering close after the last.
    """

    __slots__ = ("site", "hub", "server", "transport", "ws", "_parser", "_url", "_headers",
                 "_header_bytes", "_header_count", "_body", "_body_size", "_requests",
                 "_task", "_early", "_paused", "_since", "_in_request", "_write_paused",
                 "_drained", "_discarded", "_last_rx", "_address", "_answered", "asgi_cycle",
                 "_raw_headers", "_peer", "_sockname", "_unsent", "_head_bytes",
                 "_held", "_http_address", "_client_done")

    def __init__(self, site: Site, hub: Hub, server: Server) -> None:
        self.site = site
        self.hub = hub
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.ws: WebSocket | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Headers = Headers()
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._header_bytes = 0
        self._header_count = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._requests: deque[Request] = deque()
        self._task: asyncio.Task | None = None
        self._early: bytearray | None = None   # bytes after an upgrade request
        self._paused = False
        # handshake_timeout counts from here, and again after each response
        self._since = time.monotonic()
        self._in_request = False
        self._write_paused = False
        # Bytes not yet taken by the client when writing paused (see _unread).
        self._unsent = 0
        self._drained: asyncio.Future[None] | None = None
        # Lingering close (see _linger): bytes read and thrown away since, or None.
        self._discarded: int | None = None
        self._last_rx = 0.0
        # The client address counted in the hub's per-address limits, if any.
        self._address: Any = None
        self._answered = False      # a response was written (a keep-alive idle is then safe to close)
        # The ASGI cycle (fastws.asgi) of a request given to a mounted app: told
        # of a disconnect instead of having its task cancelled, as ASGI expects.
        self.asgi_cycle: Any = None
        # The addresses of both ends, asked of the transport once (a system
        # call each) and kept for every request of a keep-alive connection.
        self._peer: Any = None
        self._sockname: Any = None
        # Bytes fed to the parser since the current request (or chunk) began,
        # less its body bytes: what MAX_HEAD_BYTES bounds.
        self._head_bytes = 0
        # Request-body bytes of this connection counted in the server's budget.
        self._held = 0
        # The client address this connection counts for in the server's HTTP
        # connections per address (max_http_connections_per_ip), if it does.
        self._http_address: Any = None
        # The client half-closed with requests still to answer (eof_received).
        self._client_done = False

    # ------------------------------------------------------------------ transport

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        early = self.transport
        # Set first: the server may close it at once (a shutdown has begun).
        self.transport = transport  # type: ignore[assignment]
        if isinstance(early, EarlyTransport):
            # The real transport after the handover: it takes over what the
            # early one was asked meanwhile; we are registered already.
            early.adopt(transport)  # type: ignore[arg-type]
        else:
            self.server._connection_made(self)
            # A TLS transport calls this when its handshake is done and reads
            # what came with the client's Finished (usually the request) in a
            # callback of its own, which waits for the loop's ready queue.
            self.hub.flusher.press_soon()

    def eof_received(self) -> bool:
        """The client half-closed (or closed: the FIN looks the same): nothing
        more will come. Requests it sent before, which fastws answers itself,
        are still answered, and the connection closes after the last (True
        keeps the transport open for that); otherwise it closes now."""
        # A mounted ASGI app learns of the client's end (http.disconnect) only
        # through connection_lost, and a TLS transport cannot stay half-open:
        # both close now, as before.
        if (self._requests or self._task is not None) and self.asgi_cycle is None and \
                self.transport is not None and \
                self.transport.get_extra_info("sslcontext") is None:
            self._client_done = True
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        # After an upgrade the WebSocket hears this first and passes it on.
        if self.ws is not None:
            self.hub.connection_closed(self.ws)
            if self.server.access is not None:
                self.server.access.closed(self.ws)
        self.server._connection_lost(self)
        self._release_bodies()
        if self._http_address is not None:
            self.server._http_connection_closed(self._http_address)
            self._http_address = None
        if self._address is not None:
            self.hub.limits.closed(self._address)
            self._address = None
        self.transport = None
        self.ws = None
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)      # nothing more will be written
        if self.asgi_cycle is not None:
            self.asgi_cycle.disconnected()
        elif self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:
        # A client that does not read its responses gets no more of them
        # (and we read no more of its requests) until it catches up.
        self._write_paused = True
        self._unsent = self._unread()
        self._pause()

    def resume_writing(self) -> None:
        self._write_paused = False
        # The client reads: a long response streamed to it is progressing, not
        # stuck (check_deadline drops a connection whose writes stay paused).
        self._since = time.monotonic()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)      # _process resumes reading
        elif self._task is None and self._early is None:
            self._resume()

    @property
    def write_paused(self) -> bool:
        """Whether the transport is over its high-water mark (the client reads slowly)."""
        return self._write_paused

    async def writable(self) -> None:
        """Wait until the transport takes more (or the connection is gone)."""
        if self._write_paused and self.transport is not None:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None

    @property
    def sockname(self) -> Any:
        """The local address of this connection (asked of the transport once)."""
        if self._sockname is None and self.transport is not None:
            self._sockname = self.transport.get_extra_info("sockname")
        return self._sockname

    def data_received(self, data: bytes) -> None:
        if self._discarded is not None:
            self._discard(len(data))
            return
        if self._early is not None:
            self._early += data
            return
        try:
            if len(data) <= MAX_HEAD_BYTES - self._head_bytes:
                self._head_bytes += len(data)       # the usual case: all of it at once
                self._parser.feed_data(data)
            else:
                self._feed_within_budget(data)
        except httptools.HttpParserUpgrade as upgrade:
            # The request before the offset is complete and queued; what
            # follows belongs to whatever protocol it switches to.
            self._early = bytearray(data[upgrade.args[0]:])
            self._pause()
        except httptools.HttpParserCallbackError as err:
            cause = err.__context__
            if isinstance(cause, HTTPError):
                self._reject(cause.status, cause.message)
            else:
                log.exception("error while parsing a request", exc_info=cause)
                self._reject(500, "Internal Server Error")
        except HTTPError as rejected:       # the head budget (RequestReader._feed_within_budget)
            self._reject(rejected.status, rejected.message)
            return
        except httptools.HttpParserError as err:
            self._reject(400, f"Bad Request: {err}")
            return
        if self._requests and self._task is None:
            self._start_processing()


    # ------------------------------------------------------------------ requests

    def _start_processing(self) -> None:
        """Answer the queued requests: a WebSocket upgrade that only our own code
        and synchronous user code decide is answered now, in this callback
        (``run_eagerly``); anything else in a task."""
        loop = asyncio.get_running_loop()
        if len(self._requests) == 1 and self._upgrades_now(self._requests[0]):
            self._task = _ANSWERING
            self._task = run_eagerly(loop, self._process())
        else:
            self._task = loop.create_task(self._process_in_task())

    async def _process_in_task(self) -> None:
        # Each step of this task waits for the loop's ready queue: while it
        # runs, the hub's flusher keeps that queue from waiting long.
        # Without WebSockets there is no busy socket for it to wait behind:
        # plain HTTP traffic then costs no flusher pass per request.
        flusher = self.hub.flusher if self.hub.sockets else None
        if flusher is not None:
            flusher.task_started()
        try:
            await self._process()
        finally:
            if flusher is not None:
                flusher.task_done()


    def _pause(self) -> None:
        # Asked of the transport every time, not once per flag change: under
        # uvloop a transport made by the early one's handover starts reading
        # whatever was asked before (tests/unit/net/test_listener.py), and a
        # client pipelining past MAX_PIPELINED must still not be read.
        if self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def _resume(self) -> None:
        if self._paused and self.transport is not None:
            self._paused = False
            self.transport.resume_reading()

    def _reject(self, status: int, reason: str) -> None:
        """Answer a request we could not parse, then close the connection."""
        log.info("rejecting request from %s: %d %s",
                 self.transport.get_extra_info("peername") if self.transport else None,
                 status, reason)
        if self._task is not None:
            self._task.cancel()
        self._requests.clear()
        self.write_response(plain_response(status, reason), keep_alive=False)

    def check_deadline(self, now: float) -> None:
        """Close a connection that has not sent a complete request within
        ``handshake_timeout`` (called by the server's sweep)."""
        if self.transport is None:
            return
        if self._discarded is not None:
            self._check_linger(now)
            return
        if now - self._since < self.server.handshake_timeout:
            return
        if self._write_paused or self.transport.is_closing():
            unsent = self._unread()
            if unsent < self._unsent:
                # The client reads, only not fast enough for the kernel to
                # take a whole buffer back from us within the timeout.
                self._unsent = unsent
                self._since = now
                return
            # Our responses have sat unread for the whole timeout: a close
            # would wait forever to flush them.
            log.info("dropping %s: responses unread for %.1fs",
                     self.transport.get_extra_info("peername"), self.server.handshake_timeout)
            self.transport.abort()
            return
        if self._task is not None or self._early is not None:
            return      # a request is being answered
        if self._in_request:
            log.info("dropping %s: request not complete within %.1fs",
                     self.transport.get_extra_info("peername"), self.server.handshake_timeout)
            self.write_response(plain_response(408, "Request Timeout"), keep_alive=False)
        else:
            self.transport.close()

    def _unread(self) -> int:
        """Bytes written but not yet taken by the client's side: ours still in
        the transport plus the kernel's send queue (Linux; elsewhere ours only).
        Once the client's receive window is full, this drops only as it reads.

        resume_writing alone is too coarse a sign of progress: the kernel
        wakes the transport only once a third of its send buffer (which grows
        to 4 MiB) is free, which a slow but steady reader can take longer than
        the timeout to free."""
        t = self.transport
        if t is None:
            return 0
        unsent = t.get_write_buffer_size()
        sock = t.get_extra_info("socket")
        if kernel_unsent is not None and sock is not None:
            try:
                unsent += kernel_unsent(sock.fileno())
            except OSError:
                pass        # not a TCP socket, or gone: the transport's count is all we have
        return unsent

    def write_response(self, response: Response, keep_alive: bool,
                        head: bool = False) -> int:
        """Write ``response``; the status that went out. A header HTTP cannot
        carry (a line break, a NUL, a character outside Latin-1, typically a
        value built from user input) makes it a 500 that closes the connection,
        with a log line naming the header, never an exception that leaves the
        connection hanging without an answer."""
        self._answered = True
        t = self.transport
        if t is None:
            return response.status
        try:
            data = response.encode(keep_alive, head)
        except ValueError as exc:
            log.error("could not send a %d response to %s: %s; answering 500 instead",
                      response.status, self._peer, exc)
            response = plain_response(500, "Internal Server Error")
            keep_alive = False
            data = response.encode(False, head)
        self._since = time.monotonic()
        t.write(data)
        if not keep_alive:
            self._linger()
        return response.status

    def _linger(self) -> None:
        """The answer that ends this connection is on its way. Closing now would
        make the client's kernel answer whatever it is still sending (the rest of
        a body too big, say) with a reset that can destroy our answer in flight.
        So: half-close, read and throw away until the client closes, within
        ``close_timeout`` and ``discard_budget``."""
        t = self.transport
        if t is None or self._discarded is not None or t.is_closing():
            return
        self._discarded = 0
        self._since = self._last_rx = time.monotonic()
        if self._requests:
            self._requests.clear()
        self._body = []
        self._release_bodies()      # nothing queued here will be answered
        self._early = None
        if t.can_write_eof():
            t.write_eof()
        self._paused = False
        t.resume_reading()

    def _discard(self, n: int) -> None:
        self._discarded += n
        self._last_rx = time.monotonic()
        budget = self.server.options.discard_budget
        if self._discarded > budget and self.transport is not None:
            log.info("closing %s: still sending after our answer, past the discard budget "
                     "of %d bytes", self.transport.get_extra_info("peername"), budget)
            self.transport.close()

    def _check_linger(self, now: float) -> None:
        t = self.transport
        step = linger_step(now, self._since + self.server.options.close_timeout, self._last_rx)
        if step == LINGER_ABORT:
            log.info("dropping %s: still open %.1fs after our answer",
                     t.get_extra_info("peername"), now - self._since)
            t.abort()
        elif step == LINGER_CLOSE:
            t.close()           # nothing arriving: it has sent what it was sending

    async def _process(self) -> None:
        """Answer queued requests one at a time, in the order they came."""
        try:
            while self._requests and self.transport is not None:
                if self._write_paused:
                    await self.writable()
                    if self.transport is None:
                        break
                req = self._requests.popleft()
                if len(self._requests) < MAX_PIPELINED // 2 and self._early is None \
                        and not self._write_paused:
                    self._resume()
                try:
                    if not await self._handle(req):
                        return
                finally:
                    self._release_bodies(len(req.body))
            if self._early is None and not self._write_paused:
                self._resume()
        finally:
            self._task = None
            if self._client_done and not self._requests and self.ws is None and \
                    self.transport is not None:
                self.transport.close()      # answered all the half-closed client asked

    async def _handle(self, req: Request) -> bool:
        """Answer one request; False once the connection is no longer HTTP."""
        site = self.site
        target = req.target
        path, _, query = target.partition("?")
        query = query.partition("#")[0]
        hosts = req.headers.getall("host")
        if len(hosts) > 1 or (not hosts and req.version != "1.0"):
            # RFC 9112 §3.2: exactly one Host in HTTP/1.1; a proxy and we
            # must not disagree about which one names the target.
            self.write_response(plain_response(400, "Bad Request: missing or repeated Host header"),
                                 keep_alive=False)
            return False
        if path.startswith(("http://", "https://")):
            # absolute-form (RFC 9112 §3.2.2): servers must accept it
            parts = urlsplit(target)
            path, query = parts.path or "/", parts.query
        if not path.startswith("/"):
            self.write_response(plain_response(400, "Bad Request: bad request target"),
                                 keep_alive=False)
            return False
        server = self.server
        if path == server.health_path and req.method in ("GET", "HEAD"):
            return self._health(req, path, query)
        found = site.resolve(path)
        # "Upgrade: websocket" marks a handshake attempt even when httptools
        # did not switch (no "Connection: upgrade"): that is a bad handshake
        # (400, RFC 6455 §4.2.1), not a plain GET (426).
        wants_ws = is_upgrade_request(req.headers)
        peer = self._peer
        if peer is None and self.transport is not None:
            peer = self._peer = self.transport.get_extra_info("peername")
        scheme = None
        if server.proxy is not None:
            peer, scheme = server.proxy.resolve(peer, req.headers)
        ctx = Context(site, req.method, path, query, req.headers, req.version, req.body, peer,
                      is_websocket=wants_ws and "WS" in found)
        ctx.scheme = scheme or server.scheme
        started = time.monotonic()
        if server.max_http_connections_per_ip is not None and self._http_address is None \
                and not wants_ws and isinstance(peer, tuple) and peer:
            # Plain HTTP connections per client address (WebSockets have their
            # own limit, max_connections_per_ip): counted from a connection's
            # first request, when the client is known (behind a proxy too).
            if not server._http_connection_opened(peer[0]):
                return self._answer(ctx, plain_response(
                    429, "Too Many Requests: too many connections from this address",
                    {"Retry-After": "1"}), False, False, started)
            self._http_address = peer[0]
        if not found:
            mount = site.mount_for(path)
            if mount is not None:
                if wants_ws:
                    ctx.is_websocket = True
                    return await mount.serve_websocket(self, req, ctx, started)
                return await mount.serve_http(self, req, ctx, started)
        head = False
        if ctx.is_websocket:
            handler, ctx.params = found["WS"]
            endpoint = self._upgrade_endpoint(req, handler)
        elif req.method in found:
            handler, ctx.params = found[req.method]
            endpoint = handler
        elif req.method == "HEAD" and "GET" in found:
            handler, ctx.params = found["GET"]
            endpoint = handler
            head = True
        elif "WS" in found and req.method == "GET":
            endpoint = _fixed(426, "Upgrade Required: this is a WebSocket endpoint",
                              {"Upgrade": "websocket", "Connection": "Upgrade",
                               "Sec-WebSocket-Version": "13"})
        elif found:
            allowed = sorted({k for k in found if k != "WS"} | ({"GET"} if "WS" in found else set()))
            if "GET" in allowed:
                allowed.append("HEAD")
            endpoint = _fixed(405, "Method Not Allowed", {"Allow": ", ".join(allowed)})
        else:
            endpoint = _fixed(404, "Not Found")

        response = await site.respond(ctx, endpoint)
        if self.transport is None:
            return False
        if isinstance(response, Upgrade):
            self.switch(ctx, response)
            self.record(ctx, 101 if self.ws is not None else 503, started)
            return False
        # After any upgrade request the HTTP parser is spent: close.
        keep_alive = req.keep_alive and not req.upgrade and not server.closing
        return self._answer(ctx, response, keep_alive, head, started)

    def _health(self, req: Request, path: str, query: str) -> bool:
        """Answer the health path: 200 while serving, 503 once draining, so load
        balancers stop sending new clients to a node on its way out. Counted and
        logged like any request: an operator who sees probes in neither the
        access log nor the request counter cannot tell a balancer that stopped
        probing from one that is probing a node it cannot reach."""
        started = time.monotonic()
        server = self.server
        draining = server.closing
        keep_alive = req.keep_alive and not draining
        status = self.write_response(plain_response(503 if draining else 200,
                                                     "draining" if draining else "ok"),
                                      keep_alive=keep_alive, head=req.method == "HEAD")
        ctx = None
        if server.access is not None:
            # A Context only for the access line (the real client behind a
            # trusted proxy): no route, middleware or user code runs here.
            peer = self._peer
            if peer is None and self.transport is not None:
                peer = self._peer = self.transport.get_extra_info("peername")
            if server.proxy is not None:
                peer = server.proxy.resolve(peer, req.headers)[0]
            ctx = Context(self.site, req.method, path, query, req.headers, req.version, b"", peer)
        self.record(ctx, status, started)
        return keep_alive

    def _answer(self, ctx: Context, response: Response, keep_alive: bool, head: bool,
                started: float) -> bool:
        """Write a route's response, count it and log its access line; whether
        the connection stays open."""
        status = self.write_response(response, keep_alive, head)
        if status != response.status:
            keep_alive = False          # it became a 500 that closes the connection
        self.record(ctx, status, started)
        return keep_alive

    def record(self, ctx: Context | None, status: int, started: float) -> None:
        """Count an answered request (an upgrade, when ``ctx`` is one) by status
        and write its access line. ``ctx`` may be None only while there is no
        access log: the health path builds one only for the line."""
        websocket = ctx is not None and ctx.is_websocket
        counts = self.hub.upgrades if websocket else self.hub.requests
        counts[status] = counts.get(status, 0) + 1
        if websocket and status != 101 and self._address is not None:
            # Refused after its per-address slot was taken (Upgrades.refusal):
            # give it back now, not when the client gets round to closing.
            self.hub.limits.closed(self._address)
            self._address = None
        access = self.server.access
        if access is not None:
            if websocket:
                access.upgrade(ctx, status, started)
            else:
                access.request(ctx, status, started)

    def responded(self, keep_alive: bool) -> None:
        """A response went out by other means than ``write_response`` (a mounted
        app's, written as it streamed): the connection is answered, its
        handshake_timeout counts afresh, and without keep-alive it lingers."""
        self._answered = True
        self._since = time.monotonic()
        if not keep_alive and self.transport is not None:
            self._linger()

    def close_idle(self) -> None:
        """Close the connection if it is HTTP and not answering a request
        (used at shutdown). One accepted but not yet answered gets a short
        grace: its request may be on its way (during a rolling restart it was
        sent to the port, which is still open), and is then answered with
        ``Connection: close``."""
        if self.ws is not None or self._task is not None or self.transport is None:
            return
        if self._answered or self._in_request:
            if not self._in_request:
                self.transport.close()
            return
        self.hub.loop.call_later(SHUTDOWN_GRACE, self._close_if_still_idle)

    def _close_if_still_idle(self) -> None:
        if self.ws is None and self._task is None and not self._in_request and \
                self.transport is not None and not self._requests:
            self.transport.close()



def _fixed(status: int, text: str, headers: dict[str, str] | None = None):
    async def endpoint(ctx: Context) -> Response:
        raise HTTPError(status, text, headers)
    return endpoint
