"""App and create_app(): the configuration of a fastws application (routes,
middleware, plugins, options) and the entry points that serve it.

An App holds configuration only. What changes while it is served (rooms, open
sockets, counters) lives in the runtime of each loop that serves it
(``fastws.runtime.hub``); the app-level calls below reach that runtime.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Hashable

from fastws.asgi.mount import ASGIApp, Mount
from fastws.http.context import Context, HTTPError, Response
from fastws.http.routing import Params, Router
from fastws.options import DEFAULT_BACKLOG
from fastws.runtime.handlers import arity, call
from fastws.runtime.history import HistoryMessage
from fastws.runtime.hub import find_hub

if TYPE_CHECKING:
    import socket
    import ssl as _ssl

    from fastws.cluster import Cluster
    from fastws.options import WebSocketOptions
    from fastws.serve.server import Server

__all__ = ["App", "create_app"]

log = logging.getLogger("fastws")

#: The ``module:attribute`` the ``fastws`` command is importing, while it does.
#: A module that calls ``app.run()`` when imported would otherwise start a
#: server of its own, ignoring the command's flags, before the command's.
cli_importing: str | None = None

Handler = Callable[..., Any]
Middleware = Callable[[Context, Callable[[], Awaitable[Response]]], Any]
ErrorResponder = Callable[[Context, BaseException], Response]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class App:
    """A fastws application: HTTP and WebSocket routes, middleware, plugins
    and options. Build one with ``create_app()``.

    ``ws_options`` holds the ``WebSocketOptions`` that ``websocket()``
    installed (None before); ``error_responder`` the function that turns an
    exception into a response (``error_handler()`` installs one);
    ``async_middleware`` whether a middleware is a coroutine function;
    ``backplane`` the ``BackplaneOptions`` that ``backplane()`` installed (None:
    rooms are this process's only); ``metrics_collector`` what ``metrics()``
    installed. Plugins set these declared attributes and add none: what the
    server reads of an app is ``fastws.http.protocol.Site``.
    """

    def __init__(self) -> None:
        self._router: Router[Handler] = Router()
        self._middleware: list[Middleware] = []
        self.ws_options: WebSocketOptions | None = None
        self.error_responder: ErrorResponder | None = None
        self.async_middleware = False
        self.backplane: Any = None
        #: The collector ``metrics()`` installed (``fastws.ops.metrics.Collector``), or None.
        self.metrics_collector: Any = None
        self._cluster: Any = None
        self.startup_hooks: list[Callable[[], Any]] = []
        self.shutdown_hooks: list[Callable[[], Any]] = []
        self._mounts: list[Mount] = []
        self._running = False

    def on_startup(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``fn`` (sync or async, no arguments) before the server accepts
        its first connection, once per process (per worker), in the order
        added; one that raises stops the server from starting. A decorator."""
        self.startup_hooks.append(fn)
        return fn

    def on_shutdown(self, fn: Callable[[], Any]) -> Callable[[], Any]:
        """Run ``fn`` (sync or async) once the server has closed its
        connections at shutdown, in the order added. A decorator."""
        self.shutdown_hooks.append(fn)
        return fn

    @property
    def cluster(self) -> Cluster:
        """The cluster this app is a node of (``fastws.cluster.Cluster``): its
        rooms and sizes across every node with a backplane, this process's without."""
        if self._cluster is None:
            from fastws.cluster import Cluster
            self._cluster = Cluster(self)
        return self._cluster

    @property
    def cluster_handlers(self) -> dict[str, list[Callable[[], Any]]]:
        """The handlers registered with ``app.cluster.on`` (read by the server)."""
        return self.cluster.handlers

    # ------------------------------------------------------------------ setup

    def use(self, thing: Any) -> App:
        """Add a plugin (an object with ``install(app)``, or a callable taking
        the app) or a middleware (``async def mw(ctx, next)``). Returns the app."""
        install = getattr(thing, "install", None)
        if callable(install):
            install(self)
        elif callable(thing):
            if arity(thing) >= 2:
                self._middleware.append(thing)
                if inspect.iscoroutinefunction(thing) or \
                        inspect.iscoroutinefunction(getattr(thing, "__call__", None)):
                    self.async_middleware = True
            else:
                thing(self)
        else:
            raise TypeError(f"app.use() takes a plugin or a middleware, got {thing!r}")
        return self

    def route(self, method: str, path: str, handler: Handler | None = None) -> Any:
        """Route ``method`` requests to ``path``; a decorator without ``handler``."""
        method = method.upper()
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, got {method!r}")
        return self._register(method, path, handler)

    def get(self, path: str, handler: Handler | None = None) -> Any:
        """Route GET (and HEAD) requests to ``path``."""
        return self._register("GET", path, handler)

    def post(self, path: str, handler: Handler | None = None) -> Any:
        """Route POST requests to ``path``."""
        return self._register("POST", path, handler)

    def put(self, path: str, handler: Handler | None = None) -> Any:
        """Route PUT requests to ``path``."""
        return self._register("PUT", path, handler)

    def patch(self, path: str, handler: Handler | None = None) -> Any:
        """Route PATCH requests to ``path``."""
        return self._register("PATCH", path, handler)

    def delete(self, path: str, handler: Handler | None = None) -> Any:
        """Route DELETE requests to ``path``."""
        return self._register("DELETE", path, handler)

    def ws(self, path: str, handler: Handler | None = None, *,
           guard: Callable[[Context], Any] | None = None) -> Any:
        """Route WebSocket upgrades at ``path`` to ``handler(ws, ctx)``;
        a decorator without ``handler``. Needs ``app.use(websocket())`` first.

        ``guard(ctx)`` (sync or async) runs before the handshake completes:
        None or True accepts; False refuses with 403; it may also return a
        Response or raise HTTPError to refuse with that status (e.g. 401).
        """
        if self.ws_options is None:
            raise RuntimeError("app.ws() needs WebSocket support: call app.use(websocket()) "
                               "before registering WebSocket routes "
                               "(from fastws import websocket)")
        if guard is not None and not callable(guard):
            raise TypeError(f"guard for {path} must be callable, got {guard!r}")
        if handler is None:
            def decorate(fn: Handler) -> Handler:
                self._register("WS", path, (fn, guard))
                return fn
            return decorate
        if not callable(handler):
            raise TypeError(f"handler for WS {path} must be callable, got {handler!r}")
        self._register("WS", path, (handler, guard))
        return handler

    def mount(self, prefix: str, asgi_app: ASGIApp) -> ASGIApp:
        """Serve the ASGI 3 application ``asgi_app`` (a FastAPI or Starlette
        app, say) under ``prefix`` ("/" for everything), next to this app's
        own routes, which win where both match. Its HTTP routes and its
        WebSocket routes are served (see ``fastws.asgi``); its lifespan
        startup and shutdown run with this app's hooks, in the order added.
        Returns ``asgi_app``."""
        mount = Mount(prefix, asgi_app)
        if any(m.prefix == mount.prefix for m in self._mounts):
            raise ValueError(f"an ASGI app is already mounted at {prefix!r}")
        self._mounts.append(mount)
        # The longest prefix first: /api/v2 before /api before /.
        self._mounts.sort(key=lambda m: len(m.prefix), reverse=True)
        self.on_startup(mount.startup)
        self.on_shutdown(mount.shutdown)
        return asgi_app

    @property
    def mounts(self) -> list[Mount]:
        """The mounted ASGI apps (``fastws.asgi.mount.Mount``), longest prefix first."""
        return list(self._mounts)

    def _register(self, kind: str, path: str, handler: Handler | None) -> Any:
        if handler is None:
            def decorate(fn: Handler) -> Handler:
                self._register(kind, path, fn)
                return fn
            return decorate
        if kind == "WS":
            self._router.add(kind, path, handler)
            return handler
        if not callable(handler):
            raise TypeError(f"handler for {kind} {path} must be callable, got {handler!r}")
        self._router.add(kind, path, http_endpoint(handler))
        return handler

    # ------------------------------------------------------------------ rooms

    def broadcast(self, room: Hashable, data: Any) -> int:
        """Send ``data`` to every member of ``room``, serialized and framed once.
        Returns the number of recipients. Usable from HTTP routes and
        background tasks on the loop that serves the app."""
        hub = find_hub(self)
        return 0 if hub is None else hub.rooms.broadcast(room, data, None)

    async def publish(self, room: Hashable, data: Any) -> tuple[str, int] | None:
        """``broadcast``, then wait until the room's history holds the message:
        its position (epoch, offset), or None for a room that keeps no history
        (or an app not served here). With the history in Redis (a backplane),
        the message is numbered when this returns, so messages published one
        after another, from any nodes, reach every client in that order (an
        HTTP route that answers after ``await app.publish`` promises that).
        Raises BackplaneError while Redis is unreachable."""
        hub = find_hub(self)
        if hub is None:
            return None
        history = hub.history
        hub.rooms.broadcast(room, data, None)
        if history is None or not history.keeps(room):
            return None
        stored = history.stored_last()
        return await stored if inspect.isawaitable(stored) else stored

    async def drain(self, room: Hashable) -> None:
        """Wait until every local member of ``room`` can take more: for a feed
        that broadcasts from server code (no client's reading to pause), so it
        goes at the pace of its readers. A member that stops reading holds it
        up for at most ``slow_consumer_timeout``."""
        hub = find_hub(self)
        if hub is None:
            return
        waits = [ws.drain() for ws in hub.rooms.members(room)]
        if waits:
            await asyncio.gather(*waits)

    async def history(self, room: Hashable, since: int | None = None,
                      limit: int = 100) -> list[HistoryMessage]:
        """The stored messages of ``room``, oldest first, each a ``HistoryMessage``
        (``room``, ``epoch``, ``offset``, ``data``: str for text, bytes for
        binary): with ``since`` (an offset of the room's current epoch) those
        after it, at most ``limit``; without, the last ``limit`` (say, what a
        chat page shows when it loads). An empty list for a room that keeps no
        history, has none yet, or is not served here.

        A reader holding a position (epoch ``e``, offset ``n``) missed nothing
        when the first message after ``since=n`` has epoch ``e`` and offset
        ``n + 1``; a different epoch or a higher offset means messages were
        lost (an empty list says only that nothing after ``n`` is kept).

        Raises RuntimeError when the app keeps no history at all
        (``websocket(history_size=N)`` turns it on). A coroutine: history kept
        elsewhere than in memory will be read over the network."""
        if type(limit) is not int or limit < 0:
            raise ValueError(f"app.history(limit=...) must be an int >= 0, got {limit!r}")
        if since is not None and (type(since) is not int or since < 0):
            raise ValueError(f"app.history(since=...) must be an offset (an int >= 0) or None, "
                             f"got {since!r}")
        options = self.ws_options
        if options is None or not options.history_size:
            raise RuntimeError("this app keeps no room history: turn it on with "
                               "app.use(websocket(history_size=N))")
        hub = find_hub(self)
        if hub is None or hub.history is None:
            return []
        got = hub.history.read(room, since, limit)
        return await got if inspect.isawaitable(got) else got

    def room_size(self, room: Hashable) -> int:
        """How many sockets are in ``room``."""
        hub = find_hub(self)
        return 0 if hub is None else hub.rooms.size(room)

    roomSize = room_size

    def rooms(self) -> list[Hashable]:
        """The rooms that have at least one socket."""
        hub = find_hub(self)
        return [] if hub is None else hub.rooms.names()

    @property
    def skipped(self) -> int:
        """Broadcasts and sends not delivered because a socket was over its
        backpressure limit (``backpressure="skip"``), in total."""
        hub = find_hub(self)
        return 0 if hub is None else hub.counters.skipped

    @property
    def dropped(self) -> int:
        """Client messages discarded by rate limits (``rate_limit_policy="drop"``),
        in total."""
        hub = find_hub(self)
        return 0 if hub is None else hub.counters.dropped

    @property
    def slow_consumers(self) -> int:
        """Members given up on by flow control (they drained slower than
        ``min_drain_rate`` while a publisher waited for them), in total."""
        hub = find_hub(self)
        return 0 if hub is None else hub.counters.slow_consumers

    @property
    def connections(self) -> int:
        """Open WebSocket connections."""
        hub = find_hub(self)
        return 0 if hub is None else len(hub.sockets)

    # ------------------------------------------------------------------ what the server asks

    def resolve(self, path: str) -> dict[str, tuple[Any, Params]]:
        """Every kind routed at ``path`` (HTTP methods and "WS") with its
        target and params; empty for 404."""
        return self._router.resolve(path)

    def mount_for(self, path: str) -> Mount | None:
        """The mounted ASGI app that serves ``path`` when no route here does, or None."""
        for mount in self._mounts:
            if mount.matches(path):
                return mount
        return None

    async def respond(self, ctx: Context, endpoint: Callable[[Context], Awaitable[Response]]) -> Response:
        """Run the middleware chain around ``endpoint``; exceptions become responses."""
        middleware = self._middleware
        if not middleware:
            try:
                return await endpoint(ctx)
            except Exception as exc:
                return self._error_response(ctx, exc)

        async def call(i: int) -> Response:
            if i == len(middleware):
                return await endpoint(ctx)
            result = middleware[i](ctx, lambda: call(i + 1))
            if inspect.isawaitable(result):
                result = await result
            return to_response(ctx, result)

        try:
            return await call(0)
        except Exception as exc:
            return self._error_response(ctx, exc)

    def _error_response(self, ctx: Context, exc: BaseException) -> Response:
        if self.error_responder is not None:
            try:
                return self.error_responder(ctx, exc)
            except Exception as inner:
                exc = inner
        if isinstance(exc, HTTPError):
            return ctx.text(exc.message, status=exc.status, headers=exc.headers)
        log.error("unhandled exception in %s %s", ctx.method, ctx.path, exc_info=exc)
        return ctx.text("Internal Server Error", status=500)

    # ------------------------------------------------------------------ serving

    async def serve(self, host: str | None = "127.0.0.1", port: int = 3000, *,
                    ssl: _ssl.SSLContext | None = None, backlog: int = DEFAULT_BACKLOG,
                    reuse_port: bool = False, sock: socket.socket | None = None,
                    uds: str | None = None, **server_options: Any) -> Server:
        """Start serving on the running loop; returns the started Server.

        Listens on ``host:port``, on the Unix socket ``uds``, or on the
        listening socket ``sock`` (e.g. one shared by worker processes).
        ``server_options``: see ``Server`` (proxy_headers, forwarded_allow_ips, forwarded_header,
        access_log, health_path, redact_query, max_request_memory,
        max_http_connections_per_ip).
        """
        from fastws.serve.server import Server, check_arguments, server_option_names as names
        server_options = check_arguments("app.serve()", server_options, names())
        server = Server(self, **server_options)
        await server.start(host, port, ssl=ssl, backlog=backlog, reuse_port=reuse_port,
                           sock=sock, uds=None if uds is None else os.fspath(uds))
        return server

    def run(self, host: str = "127.0.0.1", port: int = 3000, *,
            ssl: _ssl.SSLContext | None = None, backlog: int = DEFAULT_BACKLOG,
            reuse_port: bool = False, shutdown_timeout: float | None = None,
            workers: int = 1, allow_split_rooms: bool = False, **options: Any) -> None:
        """Serve until SIGINT or SIGTERM on uvloop, then shut down gracefully:
        stop accepting, close every WebSocket with 1001, wait up to
        ``shutdown_timeout`` seconds (default: the close timeout), return.

        ``workers=N`` (N > 1) runs N processes on one port (see
        ``fastws.serve.workers``); it needs a backplane, or ``allow_split_rooms=True``
        for an app whose rooms may stay per process (or that has none).
        More ``options``: ``uds``, ``fd``, ``reload``, ``reload_dirs``,
        ``proxy_headers``, ``forwarded_allow_ips``, ``forwarded_header``, ``access_log``,
        ``health_path``, ``redact_query``, ``max_request_memory``,
        ``max_http_connections_per_ip`` (see ``fastws.serve.server.run``).

        This is a program's main loop, so what stops it before it serves
        ends the program with one line on stderr rather than a traceback: an
        unknown keyword or a bad value (naming the fix; exit status 2, as
        the ``fastws`` command's bad flags), an address it cannot listen on
        (exit status 1). Called while the ``fastws`` command imports the
        module, it does nothing but say so: the command serves the app.
        A second ``run()`` while one serves raises RuntimeError."""
        if cli_importing is not None:
            caller = sys._getframe(1)
            # Said once, by the command; its workers import the module again.
            log.log(logging.DEBUG if os.environ.get("FASTWS_WORKER_ID") else logging.WARNING,
                    "%s, line %d calls app.run() as it is imported; the fastws command "
                    "serves %s itself, with its own flags, so that call is skipped. Put it "
                    "under `if __name__ == \"__main__\":` so that it runs only for "
                    "`python %s`.", os.path.relpath(caller.f_code.co_filename),
                    caller.f_lineno, cli_importing, os.path.relpath(caller.f_code.co_filename))
            return
        if self._running:
            raise RuntimeError("app.run() is already serving this app; it blocks until SIGINT "
                               "or SIGTERM, so call it once (await app.serve(...) adds "
                               "listeners from async code)")
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("app.run() starts its own event loop and cannot run inside "
                               "one (async code, Jupyter): use `await app.serve(...)`")
        from fastws.serve.server import RUN_ARGUMENTS, Server, check_arguments, run, server_option_names
        try:
            given = check_arguments("app.run()", {
                "host": host, "port": port, "ssl": ssl, "backlog": backlog,
                "reuse_port": reuse_port, "shutdown_timeout": shutdown_timeout,
                "workers": workers, "allow_split_rooms": allow_split_rooms, **options},
                RUN_ARGUMENTS + server_option_names())
            # Its own checks (limits, paths, proxies), before anything binds.
            Server(self, **{k: v for k, v in given.items() if k in server_option_names()})
        except (TypeError, ValueError) as exc:
            text = str(exc)
            sys.stderr.write(f"fastws: {text if text.startswith('app.run()') else 'app.run(): ' + text}\n")
            raise SystemExit(2) from None
        self._running = True
        try:
            run(self, **given)
        finally:
            self._running = False


def http_endpoint(handler: Handler) -> Callable[[Context], Awaitable[Response]]:
    """Wrap an HTTP handler (sync or async, taking ctx or nothing) as the
    innermost step of the middleware chain; its arity is read once, here."""
    n = arity(handler)

    async def endpoint(ctx: Context) -> Response:
        result = call(handler, n, (ctx,))
        if inspect.isawaitable(result):
            result = await result
        return to_response(ctx, result)

    return endpoint


def to_response(ctx: Context, result: Any) -> Response:
    """Turn what a handler returned into a Response: a Response as is,
    dict/list as JSON, str as text, bytes as octet-stream, None as 204."""
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(b"", 204)
    if isinstance(result, (dict, list)):
        return ctx.json(result)
    if isinstance(result, str):
        return ctx.text(result)
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), 200, content_type="application/octet-stream")
    raise TypeError(f"handler returned {type(result).__name__}; return a Response "
                    "(ctx.json/ctx.text/ctx.html), a dict, list, str, bytes or None")


def create_app() -> App:
    """A new, empty App."""
    return App()
