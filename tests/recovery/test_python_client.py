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
from tests.recovery.harness import Observed, run_scenario


class PythonClient:
    """``fastws.client.connect`` in a thread of its own, reporting to ``Observed``."""

    def __init__(self, url: str, observed: Observed, **options: Any) -> None:
        self.url, self.observed, self.options = url, observed, options
        self.loop = asyncio.new_event_loop()
        self.client: fastws.client.Client | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.run(),),
                                       daemon=True)
        self.thread.start()

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
        self.thread.join(10)


@pytest.mark.parametrize("cut", ["reset", "stall"])
def test_the_python_client_recovers_exactly_what_it_missed(cut):
    run_scenario(lambda url, observed: PythonClient(url, observed), cut)
