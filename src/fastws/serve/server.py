"""Serving one app on one loop: listen, sweep the timers of every connection,
shut down gracefully; and ``run()``, the blocking entry point with signal
handling on uvloop.

Every listener of an app on a loop shares that loop's ``Hub`` (rooms, sockets,
counters): serving the same app on a TCP port and a Unix socket, or plain and
TLS, never splits its rooms.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import inspect
import logging
import math
import os
import signal
import socket
import time
from typing import TYPE_CHECKING, Any, Iterable

from fastws._constants import CloseCode
from fastws.errors import ArgumentError, BackplaneError, BindError, StartupError
from fastws.runtime.hub import Hub, acquire_hub, release_hub
from fastws.runtime._owned import Poller, io_mode
from fastws.net.listener import Listener, bind_sockets
from fastws.options import DEFAULT_BACKLOG, WebSocketOptions
from fastws.ops.access import AccessLog
from fastws.http.protocol import HttpProtocol, Site
from fastws.ops.proxy import ProxyTrust

#: Default bytes of HTTP request bodies all connections may hold at once.
MAX_REQUEST_MEMORY = 64 << 20
import fastws.serve.workers as _workers

if TYPE_CHECKING:
    import ssl as _ssl

__all__ = ["Server", "StartupError", "ArgumentError", "run", "run_hooks", "new_event_loop",
           "check_arguments", "server_option_names", "RUN_ARGUMENTS"]

log = logging.getLogger("fastws")



def _listening(host: str, port: int, backlog: int, uds: str | None,
               fd: int | None) -> list[socket.socket]:
    """The listening sockets: bound here, or the one inherited as ``fd``."""
    if fd is not None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise BindError(exc.errno, f"cannot serve descriptor {fd} (--fd): "
                                       f"{exc.strerror or exc}; is it inherited open?") from None
        if sock.type != socket.SOCK_STREAM:
            raise SystemExit(f"fastws: --fd {fd} is not a stream socket")
        sock.setblocking(False)
        return [sock]
    return bind_sockets(host, port, backlog=backlog, reuse_port=False, uds=uds)


async def run_hooks(hooks: Iterable[Any], phase: str) -> None:
    """Call each hook in order, awaiting coroutines. A startup hook that
    raises stops the rest (StartupError); a shutdown hook's error is logged
    and the others still run."""
    failed = None
    for fn in hooks:
        try:
            result = fn()
            if inspect.isawaitable(result):
                await result
        except Exception as exc:
            name = getattr(fn, "__qualname__", repr(fn))
            if phase == "startup":
                raise StartupError(f"startup hook {name} failed: {type(exc).__name__}: {exc}") from exc
            log.exception("shutdown hook %s failed", name)
            failed = exc
    if failed is not None:
        raise failed


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A uvloop loop where uvloop is installed, else asyncio's default."""
    try:
        import uvloop
    except ImportError:     # pragma: no cover - uvloop is a dependency off Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Server:
    """A listening fastws server; get one from ``await app.serve(...)``.

    ``async with await app.serve(...) as server:`` shuts down on exit.
    """

    def __init__(self, site: Site, *, proxy_headers: bool = False,
                 forwarded_allow_ips: str | list[str] | None = None,
                 forwarded_header: str | None = None, access_log: bool = False,
                 health_path: str | None = None,
                 redact_query: Iterable[str] | None = None,
                 max_request_memory: int = MAX_REQUEST_MEMORY,
                 max_http_connections_per_ip: int | None = None) -> None:
        """``proxy_headers``: believe the ``forwarded_header`` family
        ("x-forwarded-for", the default, with X-Forwarded-Proto; or
        "forwarded", RFC 7239; default $FASTWS_FORWARDED_HEADER) from
        ``forwarded_allow_ips`` (default $FASTWS_FORWARDED_ALLOW_IPS or
        127.0.0.1; see fastws.ops.proxy). ``access_log``: a line per HTTP request,
        per upgrade and per WebSocket close on the ``fastws.access`` logger,
        query values named in ``redact_query`` masked (default
        ``access.REDACT``). ``health_path``: answer GET there with 200 while
        serving, 503 while draining. ``max_request_memory``: bytes of HTTP
        request bodies all connections together may hold at once (default 64
        MiB; each body is also capped at 1 MiB); past it a request is answered
        503 and its connection closed. ``max_http_connections_per_ip``: open
        HTTP (not WebSocket) connections one client address may hold (default
        None: no limit); the first request of one more is answered 429 and
        the connection closed."""
        if max_http_connections_per_ip is not None and (
                not isinstance(max_http_connections_per_ip, int) or max_http_connections_per_ip < 1):
            raise ValueError(f"max_http_connections_per_ip must be None or an int >= 1, "
                             f"got {max_http_connections_per_ip!r}")
        self.max_http_connections_per_ip = max_http_connections_per_ip
        self._http_per_address: dict[Any, int] = {}
        if not isinstance(max_request_memory, int) or max_request_memory < 1 << 20:
            raise ValueError(f"max_request_memory must be an int of at least 1 MiB (1048576), "
                             f"got {max_request_memory!r}")
        self.max_request_memory = max_request_memory
        #: Request-body bytes held by all connections now.
        self.bodies_held = 0
        self.site = site
        self.options: WebSocketOptions = site.ws_options or WebSocketOptions()
        self.hub: Hub | None = None
        self.closing = False
        self.proxy = ProxyTrust(
            forwarded_allow_ips or os.environ.get("FASTWS_FORWARDED_ALLOW_IPS", "127.0.0.1"),
            forwarded_header or os.environ.get("FASTWS_FORWARDED_HEADER", "x-forwarded-for"),
        ) if proxy_headers else None
        self.access = AccessLog(redact_query) if access_log else None
        if health_path is not None and not health_path.startswith("/"):
            raise ValueError(f"health_path must start with '/', got {health_path!r}")
        self.health_path = health_path
        self.scheme = "http"
        self._listeners: list[Listener] = []
        # Serves this server's plain TCP connections (runtime/_owned.pyx), if any.
        self._poller: Poller | None = None
        self._uds: str | None = None
        self._connections: set[HttpProtocol] = set()
        self._idle: asyncio.Event | None = None
        self._done: asyncio.Event | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.handshake_timeout = self.options.handshake_timeout
        # One sweep checks every connection's timers: a TimerHandle per
        # socket would cost memory on each of thousands of idle connections.
        o = self.options
        periods = [o.handshake_timeout, o.close_timeout]
        if o.ping_interval is not None:
            periods += [o.ping_interval, o.idle_timeout]
        self._sweep_every = min(1.0, max(0.05, min(periods) / 4))
        self._sweep_due = 0.0

    async def start(self, host: str | None = "127.0.0.1", port: int = 3000, *,
                    ssl: _ssl.SSLContext | None = None, backlog: int = DEFAULT_BACKLOG,
                    reuse_port: bool = False,
                    sock: socket.socket | list[socket.socket] | None = None,
                    uds: str | None = None) -> None:
        """Bind (``host:port``, or the Unix socket ``uds``, or take the listening
        ``sock`` given, or a list of them) and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._done = asyncio.Event()
        if sock is not None:
            socks = list(sock) if isinstance(sock, (list, tuple)) else [sock]
            for s in socks:
                s.setblocking(False)
        else:
            socks = bind_sockets(host, port, backlog=backlog, reuse_port=reuse_port, uds=uds)
            self._uds = uds
        self.scheme = "https" if ssl is not None else "http"
        hub = acquire_hub(self.site, self.options, loop)
        self.hub = hub
        try:
            options = self.site.backplane
            if hub.listeners == 1:
                # The first server of this app on this loop: the app's startup hooks.
                await run_hooks(self.site.startup_hooks, "startup")
            if options is not None and hub.relay is None:
                # Rooms across processes: the first listener of this hub connects
                # to Redis, and does not start at all if it cannot.
                from fastws.cluster import make_relay
                relay = make_relay(hub, options, self.site.cluster_handlers)
                await relay.start()
                hub.relay = relay
                if relay.history is not None:
                    # History shared by every node: in Redis, not in this process.
                    hub.history = hub.rooms.history = relay.history
        except BaseException:
            release_hub(hub)
            self.hub = None
            for s in socks:
                s.close()
            raise
        factory = lambda: HttpProtocol(self.site, hub, self)  # noqa: E731
        if ssl is None and io_mode() == "owned" and any(
                s.family in (socket.AF_INET, socket.AF_INET6) for s in socks):
            self._poller = Poller(loop)
        self._listeners = [Listener(loop, s, factory, ssl,
                                    ssl_handshake_timeout=self.options.handshake_timeout,
                                    press=hub.flusher.press_soon, poller=self._poller)
                           for s in socks]
        for listener in self._listeners:
            listener.start()
        self._sweep_due = time.monotonic() + self._sweep_every
        self._sweeper = loop.call_later(self._sweep_every, self._sweep)

    def _sweep(self) -> None:
        """Deadlines and heartbeats: HTTP connections' request timeouts,
        WebSockets' pings and close timeouts. How late it runs is the event
        loop's lag (a metric)."""
        now = time.monotonic()
        if self.hub is not None and self._sweep_due:
            self.hub.loop_lag = max(0.0, now - self._sweep_due)
        try:
            if self.hub is not None:
                self.hub.limits.sweep(now)
                # Senders learn their messages' positions (fastws.sent) by now.
                self.hub.rooms.flush_all_sent()
                if self.hub.history is not None:
                    self.hub.history.sweep(now)
            for proto in list(self._connections):
                ws = proto.ws
                if ws is None:
                    proto.check_deadline(now)
                else:
                    ws.tick(now)
        finally:
            if self._done is not None and not self._done.is_set():
                self._sweep_due = time.monotonic() + self._sweep_every
                self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every, self._sweep)

    @property
    def sockets(self) -> list[socket.socket]:
        """The listening sockets."""
        return [listener.sock for listener in self._listeners]

    @property
    def port(self) -> int:
        """The port of the first listening socket (useful with port=0)."""
        return self.sockets[0].getsockname()[1]

    @property
    def connections(self) -> int:
        """Open TCP connections on this listener, HTTP and WebSocket."""
        return len(self._connections)

    def _connection_made(self, proto: HttpProtocol) -> None:
        if self.closing and self.health_path is None:
            proto.transport.close()
            return
        self._connections.add(proto)

    def _http_connection_opened(self, address: Any) -> bool:
        """Count one more HTTP connection from ``address``; False (and not
        counted) when it already holds ``max_http_connections_per_ip``."""
        n = self._http_per_address.get(address, 0)
        if n >= (self.max_http_connections_per_ip or 0):
            log.info("refused an HTTP connection from %s: %d open (max_http_connections_per_ip)",
                     address, n)
            return False
        self._http_per_address[address] = n + 1
        return True

    def _http_connection_closed(self, address: Any) -> None:
        n = self._http_per_address.get(address, 0) - 1
        if n > 0:
            self._http_per_address[address] = n
        else:
            self._http_per_address.pop(address, None)

    def _connection_lost(self, proto: HttpProtocol) -> None:
        self._connections.discard(proto)
        if self.closing and not self._connections and self._idle is not None:
            self._idle.set()

    async def shutdown(self, timeout: float | None = None, *, restart: bool = False) -> None:
        """Stop accepting, close idle HTTP connections, and close every
        WebSocket with 1001 going away (or, with ``restart``, 1012 service
        restart), spread over ``drain_window``; wait up to ``timeout`` seconds
        from the start (default: the close timeout, or the drain window plus
        the close timeout if that is longer) for clients to finish, then drop
        whatever is left."""
        if self.closing:
            if self._done is not None:
                await self._done.wait()
            return
        self.closing = True
        self._idle = asyncio.Event()
        window = self.options.drain_window
        # With a health endpoint, still accepting while the window runs: the load
        # balancer's check reads 503 and stops sending clients (upgrades get 503).
        linger = self.health_path is not None and window > 0
        if not linger:
            self._stop_listening()
        if timeout is None:
            timeout = max(self.options.close_timeout, window + self.options.close_timeout / 2)
        sockets = []
        for proto in list(self._connections):
            if proto.ws is not None:
                sockets.append(proto.ws)
            else:
                proto.close_idle()
        if restart:
            code, reason = CloseCode.CLOSE_SERVICE_RESTART, "server restarting"
        else:
            code, reason = CloseCode.CLOSE_GOING_AWAY, "server shutting down"
        spreading = asyncio.get_running_loop().create_task(
            self._close_spread(sockets, code, reason, window))
        if linger:
            await asyncio.sleep(window)
            self._stop_listening()
            # Health checks and other HTTP clients that came meanwhile.
            for proto in list(self._connections):
                if proto.ws is None:
                    proto.close_idle()
            if self._connections:
                self._idle.clear()
        if self._connections:
            try:
                await asyncio.wait_for(self._idle.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("%d connection(s) still open after %.1fs; dropping them",
                            len(self._connections), timeout)
                for proto in list(self._connections):
                    if proto.transport is not None:
                        proto.transport.abort()
                await asyncio.sleep(0)
        spreading.cancel()
        if self._poller is not None:
            # Closes its epoll set once the connections still going are gone.
            self._poller.release()
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self.hub is not None:
            last = self.hub.listeners == 1
            if last and self.hub.relay is not None:
                relay, self.hub.relay = self.hub.relay, None
                await relay.stop()
            release_hub(self.hub)
            if last:
                try:
                    await run_hooks(self.site.shutdown_hooks, "shutdown")
                except Exception:
                    pass        # logged by run_hooks; the shutdown goes on
        if self._done is not None:
            self._done.set()

    def _stop_listening(self) -> None:
        for listener in self._listeners:
            listener.close()
        if self._uds is not None:
            try:
                os.unlink(self._uds)
            except OSError:
                pass
            self._uds = None

    @staticmethod
    async def _close_spread(sockets: list[Any], code: int, reason: str, window: float) -> None:
        """Close ``sockets`` in even batches over ``window`` seconds, so that
        their clients do not all reconnect in the same instant."""
        step = 0.01
        if window <= 0 or len(sockets) < 2:
            batch = len(sockets) or 1
        else:
            batch = max(1, math.ceil(len(sockets) * step / window))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(0, len(sockets), batch):
            if i:
                # Sleep to this batch's place in the window (the loop may be late).
                await asyncio.sleep(max(0.0, start + i / len(sockets) * window - loop.time()))
            for ws in sockets[i:i + batch]:
                ws.close(code, reason)

    async def wait_closed(self) -> None:
        """Wait until ``shutdown`` has finished."""
        await self._done.wait()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.shutdown()


#: Keywords of ``run`` that are not ``Server`` options.
RUN_ARGUMENTS = ("host", "port", "ssl", "backlog", "reuse_port", "shutdown_timeout", "workers",
                 "allow_split_rooms", "uds", "fd", "reload", "reload_dirs")


def server_option_names() -> tuple[str, ...]:
    """The keywords ``Server`` (and ``await app.serve(...)``) takes."""
    return tuple(inspect.signature(Server.__init__).parameters)[2:]


def check_arguments(where: str, given: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """Refuse, with an ``ArgumentError`` that says what to write instead, a
    keyword not among ``names`` or a value of the wrong kind, before anything
    starts: a typo must fail with its fix, not deep inside a bind or a
    ``Server.__init__() got an unexpected keyword``. Returns the arguments as
    the server takes them: a path as str, an iterable of names as a list (read
    once here, so a generator is not left empty for the server)."""
    import difflib
    names = tuple(names)
    ws_fields = [f.name for f in dataclasses.fields(WebSocketOptions)]
    for key in given:
        if key in names:
            continue
        if key in ws_fields:
            raise ArgumentError(key, f"{key} is an option of websocket(), not of {where}: "
                                     f"app.use(websocket({key}=...))")
        close = difflib.get_close_matches(key, names + tuple(ws_fields), n=1, cutoff=0.7)
        hint = ""
        if close and close[0] in ws_fields:
            hint = (f"did you mean {close[0]}? That is an option of websocket(): "
                    f"app.use(websocket({close[0]}=...)). ")
        elif close:
            hint = f"did you mean {close[0]}? "
        raise ArgumentError(key, f"{where} got an unknown keyword {key!r}; {hint}"
                                 f"it takes {', '.join(names)}")
    given = dict(given)

    def fail(key: str, wants: str) -> None:
        value = given[key]
        raise ArgumentError(key, f"{where + ': ' if where else ''}{key} must be {wants}, "
                                 f"got {value!r} ({type(value).__name__})")

    def count(key: str, low: int, high: int | None = None) -> None:
        value = given.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < low or (high is not None and value > high)):
            fail(key, f"an int from {low} to {high}" if high is not None else f"an int >= {low}")

    def names_list(key: str, wants: str, kinds: tuple[type, ...]) -> None:
        value = given.get(key)
        if value is None:
            return
        if isinstance(value, (str, bytes, os.PathLike)) or not hasattr(value, "__iter__"):
            fail(key, wants)
        items = list(value)
        if not all(isinstance(v, kinds) for v in items):
            fail(key, wants)
        given[key] = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in items]

    if given.get("host") is not None and not isinstance(given["host"], str):
        fail("host", "an address or host name (str), e.g. '127.0.0.1' or '0.0.0.0'")
    count("port", 0, 65535)
    count("backlog", 0)
    count("workers", 1)
    count("fd", 0)
    for key in ("reuse_port", "allow_split_rooms", "reload", "proxy_headers", "access_log"):
        # bool, or the 0/1 many configs hold; None reads as off.
        if given.get(key) is not None and not isinstance(given[key], int):
            fail(key, "True or False")
    timeout = given.get("shutdown_timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                or timeout < 0):
        fail("shutdown_timeout", "seconds (an int or float >= 0) or None")
    if given.get("ssl") is not None:
        import ssl as _ssl_module
        if not isinstance(given["ssl"], _ssl_module.SSLContext):
            fail("ssl", "an ssl.SSLContext (ssl.create_default_context(ssl.Purpose.CLIENT_AUTH), "
                        "then .load_cert_chain(certfile, keyfile)) or None")
    if given.get("uds") is not None:
        if not isinstance(given["uds"], (str, os.PathLike)):
            fail("uds", "a path (str or pathlib.Path)")
        given["uds"] = os.fspath(given["uds"])
    names_list("reload_dirs", "a list of directories, e.g. ['src'] (one directory: [path])",
               (str, os.PathLike))
    names_list("redact_query", "a list of parameter names (str), e.g. ['token']", (str,))
    for key in ("health_path", "forwarded_header"):
        if given.get(key) is not None and not isinstance(given[key], str):
            fail(key, "a str or None")
    return given


def _host_text(host: str | None) -> str:
    if not host:
        return "*"          # every interface, IPv4 and IPv6
    return f"[{host}]" if ":" in host else host


def _cannot_listen(exc: BindError, uds: str | None, fd: int | None) -> str:
    """One line for a server that cannot bind: what happened and what to change."""
    if fd is not None:
        return f"fastws: {exc}"
    if uds is not None:
        return f"fastws: {exc}; choose another path with --uds PATH (app.run(uds=PATH))"
    if exc.errno == errno.EADDRINUSE:
        return (f"fastws: {exc}; choose another port with --port N (app.run(port=N)), "
                "or stop what holds it")
    if exc.errno == errno.EACCES:
        return f"fastws: {exc}; or choose a port above 1023 with --port N (app.run(port=N))"
    return (f"fastws: {exc}; choose an address of this machine with --host (app.run(host=...)): "
            "127.0.0.1 for this machine only, 0.0.0.0 for every interface")


def run(site: Site, host: str = "127.0.0.1", port: int = 3000, *,
        ssl: _ssl.SSLContext | None = None, backlog: int = DEFAULT_BACKLOG,
        reuse_port: bool = False, shutdown_timeout: float | None = None,
        workers: int = 1, allow_split_rooms: bool = False, uds: str | None = None,
        fd: int | None = None, reload: bool = False, reload_dirs: list[str] | None = None,
        **server_options: Any) -> None:
    """Serve ``site`` (an App) on a new uvloop loop until SIGINT/SIGTERM, then
    shut down gracefully (see ``Server.shutdown``); SIGHUP in a worker drains
    with 1012 (the supervisor's rolling restart).

    ``uds``: listen on that Unix socket instead; ``fd``: on the listening
    socket inherited as that descriptor (socket activation). ``workers`` > 1
    binds here and runs that many worker processes on the same sockets
    (``fastws.serve.workers``); without a backplane that splits rooms per process,
    so it is refused unless ``allow_split_rooms``. ``reload``: one worker,
    replaced whenever a file under ``reload_dirs`` (default: the current
    directory) changes (needs watchfiles). ``server_options`` go to ``Server``
    (proxy_headers, forwarded_allow_ips, forwarded_header, access_log, health_path,
    redact_query, max_request_memory, max_http_connections_per_ip).
    """
    given = check_arguments("run()", {
        "host": host, "port": port, "ssl": ssl, "backlog": backlog, "reuse_port": reuse_port,
        "shutdown_timeout": shutdown_timeout, "workers": workers,
        "allow_split_rooms": allow_split_rooms, "uds": uds, "fd": fd, "reload": reload,
        "reload_dirs": reload_dirs, **server_options}, RUN_ARGUMENTS + server_option_names())
    uds, reload_dirs = given["uds"], given["reload_dirs"]
    server_options = {k: v for k, v in given.items() if k not in RUN_ARGUMENTS}
    # Built before anything binds: a bad option is refused before a port is taken.
    server = Server(site, **server_options)
    if not logging.getLogger().handlers and not log.handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    inherited = _workers.worker_sockets()
    if inherited is None and (workers > 1 or reload):
        if reload and workers > 1:
            raise SystemExit("fastws: --reload runs one worker; it cannot be combined with --workers")
        if workers > 1 and site.backplane is None and not allow_split_rooms:
            raise SystemExit(
                f"fastws: --workers {workers} without a backplane would split every room per "
                "process (a broadcast would reach only the members in the sender's worker). "
                "Add one (app.use(backplane('redis://127.0.0.1:6379/0')), --backplane URL or "
                "FASTWS_BACKPLANE), or pass --allow-split-rooms (allow_split_rooms=True) for an "
                "app without rooms.")
        try:
            socks = _listening(host, port, backlog, uds, fd)
        except BindError as exc:
            raise SystemExit(_cannot_listen(exc, uds, fd)) from None
        scheme = "https" if ssl else "http"
        where = uds or f"{scheme}://{_host_text(host)}:{socks[0].getsockname()[1]}"
        what = "reload on file changes" if reload else f"{workers} workers"
        # "serving" only once the workers are: until then one may still fail to start.
        log.info("fastws starting on %s with %s", where, what)
        options = site.ws_options or WebSocketOptions()
        stop_timeout = (shutdown_timeout if shutdown_timeout is not None else
                        max(options.close_timeout, options.drain_window + options.close_timeout / 2)) + 5
        watch = (reload_dirs or [os.getcwd()]) if reload else None
        raise SystemExit(_workers.supervise(
            1 if reload else workers, socks, stop_timeout, watch=watch,
            announce=f"fastws serving on {where} with {what} (Ctrl+C to stop)"))

    loop = new_event_loop()
    asyncio.set_event_loop(loop)

    async def main() -> None:
        try:
            if inherited is not None:
                await server.start(sock=inherited, ssl=ssl)
            elif fd is not None:
                await server.start(sock=_listening(host, port, backlog, None, fd), ssl=ssl)
            else:
                await server.start(host, port, ssl=ssl, backlog=backlog, reuse_port=reuse_port,
                                   uds=uds)
        except (BackplaneError, StartupError) as exc:
            # A clear line, not a traceback: the URL is in it, the password is not.
            log.error("%s%s", "" if inherited is None else
                      f"worker {os.environ.get('FASTWS_WORKER_ID')} could not start: ", exc)
            raise SystemExit(1 if inherited is None else _workers.START_FAILED) from None
        except BindError as exc:
            raise SystemExit(_cannot_listen(exc, uds, fd)) from None
        except Exception as exc:
            if inherited is None:
                raise
            log.error("worker %s could not start: %s", os.environ.get("FASTWS_WORKER_ID"), exc)
            raise SystemExit(_workers.START_FAILED) from None
        if inherited is None:
            scheme = "https" if ssl else "http"
            log.info("fastws serving on %s (Ctrl+C to stop)",
                     uds or f"{scheme}://{_host_text(host)}:{server.port}")
        else:
            log.info("worker %s (pid %d) serving", os.environ.get("FASTWS_WORKER_ID"), os.getpid())
            _workers.worker_ready()
        # What exists now (modules, the app, its routes) lives as long as the
        # process: keep it out of the cyclic collector's full passes, which
        # otherwise walk it again every few hundred new connections.
        gc.freeze()
        stop = asyncio.Event()
        restart = False

        def replaced() -> None:
            nonlocal restart
            restart = True
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, replaced)
        lifeline = _workers.supervisor_lifeline() if inherited is not None else None
        if lifeline is not None:
            def orphaned() -> None:
                # Readable means EOF: nothing is ever written to the lifeline.
                loop.remove_reader(lifeline)
                log.warning("worker %s: the supervisor is gone; shutting down",
                            os.environ.get("FASTWS_WORKER_ID"))
                stop.set()
            loop.add_reader(lifeline, orphaned)
        await stop.wait()
        log.info("%s: closing %d WebSocket(s)", "replaced, draining" if restart else "shutting down",
                 len(server.hub.sockets))
        await server.shutdown(shutdown_timeout, restart=restart)

    try:
        loop.run_until_complete(main())
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
