"""Start a coroutine now, in the current callback, and give it a task only if it waits.

``loop.create_task`` runs a coroutine's first step in the loop's ready queue, which
uvloop serves once per loop iteration, after the poll phase. Under load that phase
is long (libuv keeps polling while 1,024 sockets at a time are ready), so a handshake
started with ``create_task`` waits for every busy connection to be served first.
``run_eagerly`` runs the coroutine at once instead; most handshakes never wait for
anything and are answered inside the callback that read them. A coroutine that does
wait continues in a real task.

Only fastws's own code runs this way (the upgrade path, the socket handover): code
that asks ``asyncio.current_task()`` (``asyncio.timeout`` does) must run in a task, so
user code that may do so (async middleware, async guards) goes through
``create_task`` as usual.
"""

from __future__ import annotations

import asyncio
import types
from typing import Any, Coroutine, Generator

__all__ = ["run_eagerly"]


def run_eagerly(loop: asyncio.AbstractEventLoop,
                coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it first waits; return the task that finishes it, or
    None when it completed without waiting. Exceptions it raises before waiting
    propagate to the caller."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    return loop.create_task(_resume(coro, waiting_on))


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    # What `yield from coro` would do, from the point the coroutine already
    # reached: hand the awaited future to the task, pass results and
    # exceptions back in, until the coroutine returns.
    while True:
        try:
            value = yield waiting_on
        except BaseException as exc:  # cancellation too: the coroutine decides
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                waiting_on = coro.send(value)
            except StopIteration as done:
                return done.value
