"""Apps the reliability tests run in a child process (see procs.ServerProcess).

    python -m tests.reliability.apps NAME '{"option": value, ...}'

The options JSON goes to ``websocket(...)``. Each app serves ``GET /stats``
with what it counted, so a test can read the server's view over HTTP, and
runs with ``app.run`` (uvloop, SIGTERM handling), listening on a port the
kernel picks.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import signal
import sys
from typing import Any, Callable

from fastws import create_app, websocket
from tests.reliability.procs import raise_nofile_limit

__all__ = ["fanout_app", "burst_app", "soak_app", "accept_app", "waiting_app", "APPS"]


def fanout_app(options: dict[str, Any]):
    """Room ``room`` at /fanout: every message is broadcast to the others.
    Sockets that give ``?id=`` are watched: skips, drains, close code.
    GET /big answers 100 KB of text (for clients that pipeline and never read)."""
    app = create_app()
    app.use(websocket(**options))
    watched: dict[str, dict[str, Any]] = {}

    @app.ws("/fanout")
    def fanout(ws, ctx):
        ws.join("room")
        ws.on("message", lambda data: ws.broadcast("room", data))
        conn = ctx.get_query("id")
        if conn is None:
            return
        info = watched[conn] = {"skipped": 0, "drains": 0, "close": None}

        def on_drain():
            info["drains"] += 1

        def on_close(code, reason):
            info["close"] = [code, reason]
            info["skipped"] = ws.skipped
            info["ws"] = None

        ws.on("drain", on_drain)
        ws.on("close", on_close)
        info["ws"] = ws

    big = "b" * 100_000

    @app.get("/big")
    def big_page():
        return big

    @app.get("/stats")
    def stats(ctx):
        sockets = {}
        for conn, info in watched.items():
            ws = info.get("ws")
            sockets[conn] = {"skipped": ws.skipped if ws is not None else info["skipped"],
                             "drains": info["drains"], "close": info["close"],
                             "buffered": ws.buffered_amount if ws is not None else 0}
        return {"skipped": app.skipped, "connections": app.connections, "sockets": sockets}

    return app


def burst_app(options: dict[str, Any]):
    """/burst: on "go N" the handler sends N numbered messages, then sends
    the process SIGTERM at once (the shutdown-without-loss test)."""
    app = create_app()
    app.use(websocket(**options))

    @app.ws("/burst")
    def burst(ws):
        @ws.on("message")
        def on_message(data):
            if isinstance(data, str) and data.startswith("go "):
                padding = "x" * 1000
                for seq in range(int(data[3:])):
                    ws.send(f"{seq} {padding}")
                os.kill(os.getpid(), signal.SIGTERM)

    @app.get("/stats")
    def stats():
        return {"connections": app.connections}

    return app


def soak_app(options: dict[str, Any]):
    """/echo echoes; each socket joins one of 100 rooms and registers a close
    handler, so a leak of sockets, rooms or handlers shows in /stats and RSS."""
    app = create_app()
    app.use(websocket(**options))
    counts = {"opened": 0, "closed": 0, "errors": 0}

    @app.ws("/echo")
    def echo(ws):
        counts["opened"] += 1
        ws.join(f"room-{counts['opened'] % 100}")
        ws.on("message", ws.send)

        @ws.on("close")
        def on_close():
            counts["closed"] += 1

        @ws.on("error")
        def on_error(exc):
            counts["errors"] += 1

    @app.get("/stats")
    def stats(ctx):
        # ?gc=1: collect first and count live objects, so a leak of Python
        # objects shows apart from memory the allocator keeps for reuse.
        # ?trim=1: also hand free heap back to the OS (glibc), for the figures.
        extra = {}
        if ctx.get_query("gc") or ctx.get_query("trim"):
            gc.collect()
            extra["objects"] = len(gc.get_objects())
        if ctx.get_query("trim"):
            extra["trimmed"] = _malloc_trim()
        return {**counts, **extra, "connections": app.connections, "rooms": len(app.rooms()),
                "tasks": len(asyncio.all_tasks())}

    return app


def _malloc_trim() -> bool:
    """Ask glibc to return free heap pages to the OS; False where unavailable."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def accept_app(options: dict[str, Any]):
    """/echo echoes; /guarded does the same behind an async guard (so its
    upgrades go through a task, not the eager path)."""
    app = create_app()
    app.use(websocket(**options))

    @app.ws("/echo")
    def echo(ws):
        ws.on("message", ws.send)

    async def guard(ctx):
        await asyncio.sleep(0)
        return True

    @app.ws("/guarded", guard=guard)
    def guarded(ws):
        ws.on("message", ws.send)

    @app.get("/stats")
    def stats(ctx):
        return {"connections": app.connections}

    return app


def waiting_app(options: dict[str, Any]):
    """Handlers that await for a while, as ones that call a database do: GET
    /slow?s=N answers after N seconds; on /slow a message is echoed N seconds
    after it came (an async message handler)."""
    app = create_app()
    app.use(websocket(**options))

    @app.get("/slow")
    async def slow(ctx):
        await asyncio.sleep(float(ctx.get_query("s", "1")))
        return "done"

    @app.ws("/slow")
    def slow_ws(ws):
        @ws.on("message")
        async def on_message(data):
            await asyncio.sleep(float(data))
            ws.send(data)

    return app


def refusing_app(options: dict[str, Any]):
    """``accept_app`` on a loop whose task factory refuses the first
    ``options["refuse"]`` coroutines whose name contains ``options["coroutine"]``
    (fastws's own, continued in a task after an eager first step), raising the
    TypeError Python 3.12+ raised for them when they were generators. GET
    /refused tells how many it refused."""
    refuse, name = options.pop("refuse"), options.pop("coroutine")
    app = accept_app(options)
    refused = 0

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal refused
        if refused < refuse and name in getattr(coro, "__name__", ""):
            refused += 1
            raise TypeError(f"a coroutine was expected, got {coro!r} (refused by the test)")
        return asyncio.Task(coro, loop=loop, **kwargs)

    @app.on_startup
    def install_factory():
        asyncio.get_running_loop().set_task_factory(factory)

    @app.get("/refused")
    def refused_count(ctx):
        return {"refused": refused}

    return app


APPS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "fanout": fanout_app, "burst": burst_app, "soak": soak_app, "accept": accept_app,
    "waiting": waiting_app, "refusing": refusing_app}


def serve_plain_and_tls(app: Any, certfile: str, keyfile: str) -> None:
    """Serve ``app`` on two ports of one loop, plain and TLS (one runtime), and
    print both ports as a JSON line; until SIGTERM."""
    import ssl

    from fastws.serve.server import new_event_loop
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    loop = new_event_loop()

    async def serve() -> None:
        plain = await app.serve("127.0.0.1", 0, backlog=4096)
        tls = await app.serve("127.0.0.1", 0, ssl=context, backlog=4096)
        print(json.dumps({"ports": {"plain": plain.port, "tls": tls.port}}), flush=True)
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await asyncio.gather(plain.shutdown(2), tls.shutdown(2))

    loop.run_until_complete(serve())


def main(argv: list[str]) -> None:
    """Build the named app with the given options and serve it until SIGTERM."""
    name, options = argv[1], json.loads(argv[2]) if len(argv) > 2 else {}
    raise_nofile_limit()
    shutdown_timeout = options.pop("shutdown_timeout", None)
    tls = options.pop("tls", None)
    if tls is not None:
        serve_plain_and_tls(APPS[name](options), tls["certfile"], tls["keyfile"])
        return
    APPS[name](options).run(host="127.0.0.1", port=0, backlog=4096,
                            shutdown_timeout=shutdown_timeout)


if __name__ == "__main__":
    main(sys.argv)
