"""Shared fixtures: run a real fastws server on 127.0.0.1 in a background
thread with its own uvloop loop, for tests that talk to it over loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from typing import Any, Callable, Iterator

import pytest

from fastws.serve.server import new_event_loop


class Running:
    """A server started by ``serving()``: where it listens, and a way to run
    code on its loop (the app is not thread-safe, like any asyncio object)."""

    def __init__(self, app: Any, server: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.server = server
        self.loop = loop
        self.host = "127.0.0.1"
        self.port = server.port

    def url(self, path: str = "/", scheme: str = "ws") -> str:
        """A URL on this server, ws:// by default."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 10) -> Any:
        """Run ``fn(*args)`` on the server's loop and return its result
        (awaited if it is a coroutine)."""
        async def run() -> Any:
            result = fn(*args)
            if asyncio.iscoroutine(result):
                result = await result
            return result
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout)


@contextlib.contextmanager
def serving(app: Any, shutdown_timeout: float = 5.0, **serve_kwargs: Any) -> Iterator[Running]:
    """Serve ``app`` on 127.0.0.1 and a free port for the ``with`` block."""
    ready: concurrent.futures.Future[Running] = concurrent.futures.Future()
    loop = new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        try:
            server = await app.serve("127.0.0.1", 0, **serve_kwargs)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(Running(app, server, loop))
        await stop.wait()
        await server.shutdown(shutdown_timeout)

    def runner() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        finally:
            loop.close()

    thread = threading.Thread(target=runner, name="fastws-test-server", daemon=True)
    thread.start()
    running = ready.result(timeout=10)
    try:
        yield running
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(shutdown_timeout + 5)
        assert not thread.is_alive(), "test server did not shut down"


@pytest.fixture
def serve() -> Callable[..., contextlib.AbstractContextManager[Running]]:
    """The ``serving`` context manager, as a fixture."""
    return serving
