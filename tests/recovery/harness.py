"""The recovery scenario of issue 24, for any client: a server with room
history behind a ``FaultProxy``, a publisher in another process POSTing 1,000
numbered messages, a client that the proxy cuts off after message 300 and lets
back after 700. The client under test is anything that reports what it
received (``Observed``): the Python client in a thread, the JS client in Node
or in Chromium, each printing or pushing what it hears."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from fastws import create_app, websocket
from tests.conftest import serving
from tests.recovery.proxy import FaultProxy

HERE = Path(__file__).resolve().parent
TIMEOUT = 30.0


def feed_app(**options: Any) -> Any:
    """A room per path; ``POST /publish/ROOM`` broadcasts ``{"n": body}`` to it."""
    settings = {"history_size": 2000, "ping_interval": 0.5}
    settings.update(options)
    app = create_app()
    app.use(websocket(**settings))

    @app.ws("/feed/:room")
    def feed(ws, ctx):
        ws.join(ctx.params["room"])

    @app.post("/publish/:room")
    async def publish(ctx):
        n = int(await ctx.body())
        return {"to": app.broadcast(ctx.params["room"], {"n": n})}

    return app


class Observed:
    """What a client under test has reported: room messages (n, epoch,
    offset), recovery outcomes (room, recovered, missed), opens and closes."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, str | None, int | None]] = []
        self.outcomes: list[tuple[str, bool, int]] = []
        self.opens = 0
        self.closes: list[int] = []
        self.lock = threading.Lock()

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Wait until ``condition()`` holds; AssertionError naming ``what`` if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if condition():
                    return
            time.sleep(0.01)
        with self.lock:
            raise AssertionError(f"timed out waiting for {what}: {len(self.messages)} messages, "
                                 f"outcomes {self.outcomes}, opens {self.opens}, closes {self.closes}")


class Publisher:
    """``publisher.py`` in its own process, paused at 300 and 700."""

    def __init__(self, port: int, room: str, count: int = 1000, pauses: str = "300,700") -> None:
        self.proc = subprocess.Popen([sys.executable, str(HERE / "publisher.py"), str(port), room,
                                      str(count), pauses],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def expect(self, line: str) -> None:
        got = self.proc.stdout.readline().strip()
        assert got == line, f"publisher said {got!r}, expected {line!r}"

    def go(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def cut_and_recover(observed: Observed, proxy: Any, publisher: Publisher, cut: str) -> None:
    """Drive the scenario: 300 delivered, cut (``reset`` or ``stall``), 301-700
    published while the client is away, back, recovered, 701-1000 live."""
    publisher.expect("at 300")
    observed.wait(lambda: len(observed.messages) == 300, "the first 300 messages")
    getattr(proxy, cut)()
    publisher.go()
    publisher.expect("at 700")
    proxy.restore()
    observed.wait(lambda: observed.outcomes, "the recovery outcome")
    publisher.go()
    publisher.expect("done 1000")
    observed.wait(lambda: len(observed.messages) >= 1000, "all 1000 messages")
    time.sleep(0.2)         # a duplicate would arrive now


def run_scenario(start_client: Callable[[FaultProxy, Observed], Any], cut: str,
                 app: Any = None, check: Callable[[Observed, Any], None] | None = None) -> None:
    """The whole scenario: a server (``app``, default ``feed_app()``), the proxy,
    the client (``start_client(proxy, observed)`` returns it, connected through
    the proxy; it must have a ``close()``), the publisher, the cut (``reset`` or
    ``stall``); then every message exactly once, in order, and ``check(observed,
    client)`` if given."""
    with serving(app if app is not None else feed_app()) as srv:
        proxy = FaultProxy(srv.port)
        observed = Observed()
        client = start_client(proxy, observed)
        publisher = None
        try:
            # Only then: the handler has joined the room before the welcome goes out.
            observed.wait(lambda: observed.opens == 1, "the first connection")
            publisher = Publisher(srv.port, "lobby")
            cut_and_recover(observed, proxy, publisher, cut)
            check_exactly_once(observed)
            if check is not None:
                check(observed, client)
        finally:
            if publisher is not None:
                publisher.close()
            client.close()
            proxy.close()


def check_exactly_once(observed: Observed, room: str = "lobby") -> None:
    """Every message once, in order, offsets contiguous in one epoch, and the
    outcome: recovered, 400 missed."""
    with observed.lock:
        numbers = [m[0] for m in observed.messages]
        assert numbers == list(range(1, 1001)), _first_difference(numbers)
        assert len({m[1] for m in observed.messages}) == 1
        assert [m[2] for m in observed.messages] == list(range(1, 1001))
        assert observed.outcomes == [(room, True, 400)]
        assert observed.opens == 2


def _first_difference(numbers: list[int]) -> str:
    for i, n in enumerate(numbers):
        if n != i + 1:
            return f"{len(numbers)} messages; at index {i}: {n} (expected {i + 1})"
    return f"{len(numbers)} messages"
