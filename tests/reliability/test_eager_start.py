"""fastws starts its own coroutines eagerly (``fastws.runtime.eager.run_eagerly``): a new
connection's handshake and its handover to a uvloop transport run inside the
callback that read the request, and get a task only if they wait.

On Python 3.12 and 3.13 the task for a coroutine that waited was refused (a
generator-based coroutine is no longer one), every upgrade failed, and on 3.13 the
process then died: the refused coroutine, suspended inside uvloop's
``connect_accepted_socket``, was finalised at once, uvloop closed the transport it
had just made, and the ``connection_made`` it had already queued read the freed
handle. These tests hold both down on every Python the suite runs on: the
semantics of an eager start on both loops, and a server whose task factory
refuses the handover's task (the same failure, on purpose) staying up.
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import uvloop
from websockets.sync.client import connect

from fastws.runtime import eager
from fastws.runtime.eager import run_eagerly

from .procs import ServerProcess

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def loop(request: pytest.FixtureRequest):
    loop = LOOPS[request.param]()
    yield loop
    loop.close()


def test_a_coroutine_that_never_waits_runs_at_once_without_a_task(loop: asyncio.AbstractEventLoop):
    steps: list[str] = []

    async def handshake() -> None:
        steps.append("answered")

    async def main() -> None:
        assert run_eagerly(asyncio.get_running_loop(), handshake()) is None
        assert steps == ["answered"], "the coroutine ran inside the caller's callback"

    loop.run_until_complete(main())


def test_a_coroutine_that_waits_continues_in_a_task_with_its_result(loop: asyncio.AbstractEventLoop):
    steps: list[str] = []

    async def handshake() -> str:
        steps.append("first step")
        await asyncio.sleep(0)
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_soon(fut.set_result, "from a future")
        value = await fut
        steps.append("resumed")
        return value

    async def main() -> None:
        task = run_eagerly(asyncio.get_running_loop(), handshake())
        assert steps == ["first step"], "the first step ran before run_eagerly returned"
        assert isinstance(task, asyncio.Task)
        assert "handshake" in repr(task), repr(task)
        assert await task == "from a future"
        assert steps == ["first step", "resumed"]

    loop.run_until_complete(main())


def test_exceptions_and_cancellation_reach_the_coroutine(loop: asyncio.AbstractEventLoop):
    seen: list[str] = []

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("after waiting")

    async def first_step_fails() -> None:
        raise KeyError("before waiting")

    async def cancelled() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def catches_and_waits_again() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append("caught")
        await asyncio.sleep(0)
        return "went on"

    async def main() -> None:
        running = asyncio.get_running_loop()
        task = run_eagerly(running, fails())
        with pytest.raises(ValueError, match="after waiting"):
            await task
        with pytest.raises(KeyError):
            run_eagerly(running, first_step_fails())
        task = run_eagerly(running, cancelled())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        task = run_eagerly(running, catches_and_waits_again())
        task.cancel()        # before the task's first step: thrown into the suspended coroutine
        assert await task == "went on"

    loop.run_until_complete(main())
    assert seen == ["cancelled inside", "caught"]


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are new in Python 3.12")
def test_a_loop_whose_tasks_start_eagerly_still_runs_it(loop: asyncio.AbstractEventLoop):
    """A user's loop may start every task eagerly (Python 3.12+); the task then
    takes the coroutine's next step inside create_task. Not through
    asyncio.eager_task_factory: uvloop 0.23 passes it an ``eager_start`` keyword
    that the factory of CPython 3.13.0 does not take."""
    steps: list[str] = []

    def eager(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        kwargs["eager_start"] = True
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def handshake() -> str:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append("second")
        await asyncio.sleep(0)
        return "done"

    async def main() -> None:
        asyncio.get_running_loop().set_task_factory(eager)
        task = run_eagerly(asyncio.get_running_loop(), handshake())
        assert task is not None and steps == ["first"]
        assert await task == "done" and steps == ["first", "second"]

    loop.run_until_complete(main())


def test_a_refused_task_is_finished_by_a_plain_task(loop: asyncio.AbstractEventLoop,
                                                    caplog: pytest.LogCaptureFixture,
                                                    monkeypatch: pytest.MonkeyPatch):
    """A task factory that refuses the coroutine does not get it dropped: what
    it queued before waiting runs, and a plain asyncio Task finishes it (the
    crash was a refused coroutine closed at once, ahead of a queued
    connection_made). Said once in the log."""
    events: list[str] = []

    def refuse(loop: Any, coro: Any, **kwargs: Any) -> Any:
        raise TypeError("refused by the test")

    async def handover() -> str:
        running = asyncio.get_running_loop()
        running.call_soon(events.append, "queued callback")
        fut = running.create_future()
        running.call_soon(fut.set_result, "finished")
        return await fut

    monkeypatch.setattr(eager, "_told_refusal", False)   # said once per process

    async def main() -> None:
        running = asyncio.get_running_loop()
        running.set_task_factory(refuse)
        task = run_eagerly(running, handover())
        assert isinstance(task, asyncio.Task) and events == []
        assert await task == "finished"
        assert events == ["queued callback"]

    loop.run_until_complete(main())
    assert "task factory refused" in caplog.text


def test_a_refused_handover_does_not_crash_the_server(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch):
    """A task factory that refuses the handover's task, as Python 3.12+ refused
    it when it was a generator (and 3.13 then crashed): the connection is served
    all the same, the server says so once and stays up. The handover to a uvloop
    transport is the transport path's (the owned path keeps the socket)."""
    monkeypatch.setenv("FASTWS_IO", "transport")
    with ServerProcess("refusing", tmp_path / "server.log", refuse=1,
                       coroutine="EarlyTransport._connect") as server:
        with connect(server.url("/echo"), open_timeout=5) as ws:
            ws.send("refused, then finished")
            assert ws.recv(timeout=5) == "refused, then finished"
        with urllib.request.urlopen(server.url("/refused", "http"), timeout=30) as resp:
            assert json.loads(resp.read()) == {"refused": 1}, server.log()
        for n in range(3):
            with connect(server.url("/echo"), open_timeout=5) as ws:
                ws.send(f"after {n}")
                assert ws.recv(timeout=5) == f"after {n}"
        assert server.proc.poll() is None, f"the server died:\n{server.log()}"
        assert server.stop() == 0, server.log()
        log = server.log()
    assert "refused by the test" in log, log
    assert "Fatal Python error" not in log, log
