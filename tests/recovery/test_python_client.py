"""The Python client (``fastws.client``) against a real server, cut off by a
real proxy (RST, silent stall) while a publisher in another process sends:
it reconnects by itself and receives exactly the missed messages, then the
live ones (issue 24)."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

import fastws.client
from tests.conftest import serving
from tests.recovery.harness import Observed, feed_app, run_scenario
from tests.recovery.proxy import FaultProxy


class PythonClient:
    """``fastws.client.connect`` in a thread of its own, reporting to ``Observed``."""

    def __init__(self, url: str, observed: Observed, **options: Any) -> None:
        self.url, self.observed, self.options = url, observed, options
        self.loop = asyncio.new_event_loop()
        self.client: fastws.client.Client | None = None
        # The loop runs until close(): run() may end before close() has.
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.done = asyncio.run_coroutine_threadsafe(self.run(), self.loop)

    async def run(self) -> None:
        obs = self.observed

        def opened() -> None:
            with obs.lock:
                obs.opens += 1

        def recovered(room: str, ok: bool, missed: int) -> None:
            with obs.lock:
                obs.outcomes.append((room, ok, missed))

        def closed(code: int, reason: str, again: bool) -> None:
            with obs.lock:
                obs.closes.append(code)

        client = fastws.client.connect(self.url, backoff=(0.05, 0.5), **self.options)
        client.on("open", opened)
        client.on("recovered", recovered)
        client.on("close", closed)
        async with client as c:
            self.client = c
            async for msg in c:
                with obs.lock:
                    obs.messages.append((msg.data["n"], msg.epoch, msg.offset))

    def close(self) -> None:
        if self.client is not None:
            asyncio.run_coroutine_threadsafe(self.client.close(), self.loop).result(10)
        self.done.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.mark.parametrize("cut", ["reset", "stall"])
def test_the_python_client_recovers_exactly_what_it_missed(cut):
    run_scenario(lambda proxy, observed: PythonClient(proxy.url("/feed/lobby"), observed), cut)


def run(coro_fn, *args, timeout: float = 30) -> Any:
    """Run ``coro_fn(*args)`` on a fresh loop in this thread, within ``timeout``."""
    return asyncio.run(asyncio.wait_for(coro_fn(*args), timeout))


def client_app() -> Any:
    app = feed_app(ping_interval=None, max_rooms_per_socket=100)

    @app.ws("/refuse")
    def refuse(ws, ctx):
        ws.close(1013, "come back later")

    @app.ws("/odd-frame")
    def odd_frame(ws, ctx):
        ws.send('{"type":"fastws.joined","room":[1]}')      # a room it cannot key on
        ws.send("after it")

    @app.ws("/flood")
    def flood(ws, ctx):
        for n in range(20):
            ws.send({"n": n})

    @app.ws("/many")
    def many(ws, ctx):
        for i in range(70):
            ws.join(f"r{i}")

    @app.ws("/talk")
    def talk(ws, ctx):
        ws.join("talk")
        ws.on("message", lambda data: ws.broadcast("talk", data))

    return app


def test_send_works_at_once_and_close_ends_even_with_a_full_inbox():
    with serving(client_app()) as srv:
        async def go() -> int | None:
            async with fastws.client.connect(srv.url("/flood"), queue=2) as c:
                await c.send("first")        # connected as soon as the block starts
                await asyncio.sleep(0.3)     # nobody reads: the inbox fills up
                await asyncio.wait_for(c.close(), 5)
            return c.close_code
        assert run(go) == 1000


def test_a_frame_the_client_cannot_read_is_skipped_not_fatal():
    with serving(client_app()) as srv:
        async def go() -> list[Any]:
            async with fastws.client.connect(srv.url("/odd-frame")) as c:
                async for msg in c:
                    return [msg.data, c.close_code]
            return []
        assert run(go) == ["after it", None]


def test_a_server_that_closes_every_connection_at_once_is_retried_ever_more_slowly():
    with serving(client_app()) as srv:
        attempts: list[float] = []

        async def go() -> None:
            c = fastws.client.connect(srv.url("/refuse"), backoff=(0.05, 5.0), rng=lambda: 1.0)
            c.on("reconnecting", lambda attempt, delay: attempts.append(delay))
            async with c:
                await asyncio.sleep(2.0)
        run(go)
    # 0.05, 0.1, 0.2, 0.4, 0.8...: a handful in two seconds, not one every 50 ms.
    assert attempts[:5] == [0.05, 0.1, 0.2, 0.4, 0.8] and len(attempts) <= 7, attempts


def test_a_plain_server_is_served_plainly():
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        await ws.send("plain hello")
        await ws.wait_closed()

    async def go() -> list[Any]:
        async with serve(echo, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            async with fastws.client.connect(f"ws://127.0.0.1:{port}") as c:
                async for msg in c:
                    return [msg, c.subprotocol]
        return []
    assert run(go) == [fastws.client.Message("plain hello"), None]


def test_a_room_left_out_of_the_positions_sent_is_told_not_recovered():
    app = client_app()
    with serving(app) as srv:
        proxy = FaultProxy(srv.port)
        outcomes: list[tuple[Any, ...]] = []

        async def go() -> None:
            c = fastws.client.connect(proxy.url("/many"), backoff=(0.05, 0.2))
            c.on("recovered", lambda room, ok, missed: outcomes.append((room, ok, missed)))
            async with c:
                while len(c.positions) < 70:
                    await asyncio.sleep(0.02)
                proxy.reset()
                proxy.restore()
                while len(outcomes) < 70:
                    await asyncio.sleep(0.02)
        try:
            run(go)
        finally:
            proxy.close()
    # The 64 most recent went in the list and were recovered; the oldest six,
    # left out, are said to be lost rather than silently taken up afresh.
    lost = sorted(room for room, ok, _ in outcomes if not ok)
    assert lost == [f"r{i}" for i in range(6)], outcomes


def test_one_notice_for_several_own_messages_moves_the_position_without_a_gap():
    """The server tells a sender the position of its last message in a room
    (one ``fastws.sent`` for messages sent together): the client moves there
    and reports no gap, since the offsets it skipped were its own."""
    with serving(client_app()) as srv:
        gaps: list[tuple[Any, ...]] = []

        async def go() -> tuple[Any, int]:
            c = fastws.client.connect(srv.url("/talk"))
            c.on("gap", lambda *args: gaps.append(args))
            async with c:
                while "talk" not in c.positions:
                    await asyncio.sleep(0.01)
                epoch, start = c.positions["talk"]
                for i in range(3):
                    await c.send(f"mine {i}")
                while c.positions["talk"][1] < start + 3:
                    await asyncio.sleep(0.01)
                return c.positions["talk"][0] == epoch, c.positions["talk"][1] - start
        assert run(go) == (True, 3)
    assert gaps == []
