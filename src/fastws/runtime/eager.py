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

Why not asyncio's own eager tasks (``eager_start``, Python 3.12+): they do not exist
on 3.10 and 3.11; uvloop's ``create_task`` takes ``eager_start`` only from 0.23, and
honours it only on 3.13 (on 3.12 it is dropped); and they allocate a Task for every
handshake, most of which never wait.
"""

from __future__ import annotations

import asyncio
import collections.abc
import logging
from typing import Any, Coroutine, Generator

__all__ = ["run_eagerly", "start_task"]

log = logging.getLogger("fastws")


def run_eagerly(loop: asyncio.AbstractEventLoop,
                coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
    """Run ``coro`` until it first waits; return the task that finishes it, or
    None when it completed without waiting. Exceptions it raises before waiting
    propagate to the caller."""
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return None
    # The coroutine is suspended inside whatever it awaited, and that may have
    # queued callbacks which expect it to go on: uvloop's
    # connect_accepted_socket has queued connection_made, and closes its
    # transport when interrupted, after which connection_made reads a freed
    # handle (the crash of Python 3.13, where this coroutine, refused, was
    # finalised at once). So it is never dropped.
    return start_task(loop, _Resumed(coro, waiting_on))


def start_task(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
    """``loop.create_task(coro)``; if the loop's task factory (the app's)
    refuses, a plain asyncio Task: fastws's own coroutines (a handover, an
    async handler's episode) must run to their end, whatever the factory
    thinks of them. Said once in the log. Raises only if neither can be made
    (the coroutine is then closed, after what is queued now has run)."""
    try:
        return loop.create_task(coro)
    except Exception as refused:
        try:
            task = asyncio.Task(coro, loop=loop)
        except BaseException:
            try:
                loop.call_soon(coro.close)
            except RuntimeError:        # a closed loop: nothing queued will run anyway
                coro.close()
            raise refused from None
        if not _told_refusal:
            _tell_refusal(refused)
        return task


_told_refusal = False


def _tell_refusal(exc: Exception) -> None:
    global _told_refusal
    _told_refusal = True
    log.warning("the loop's task factory refused one of fastws's coroutines (%r); "
                "a plain asyncio.Task runs them instead (said once)", exc)


class _Resumed(collections.abc.Coroutine):  # type: ignore[type-arg]
    """A coroutine that already ran its first step, as a task can take it.

    It hands the task the future the coroutine is waiting on, then passes every
    result and exception through: what ``yield from`` would do from that point.
    A class, not a ``types.coroutine`` generator: since Python 3.12 tasks accept
    only objects that ``asyncio.iscoroutine`` recognises, and a generator is not
    one any more; a ``collections.abc.Coroutine`` is, on every version.
    """

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def send(self, value: Any) -> Any:
        waiting_on = self._waiting_on
        if waiting_on is not _STARTED:
            # The task's first step: what the coroutine already waits on.
            self._waiting_on = _STARTED
            return waiting_on
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        # A task cancelled before its first step throws into a coroutine that is
        # suspended all the same: it decides, as it would in a task of its own,
        # where the cancel would also have cancelled the future it waits on.
        waiting_on, self._waiting_on = self._waiting_on, _STARTED
        if waiting_on is not _STARTED and asyncio.isfuture(waiting_on) and \
                isinstance(val if val is not None else typ, asyncio.CancelledError):
            waiting_on.cancel()
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # the 3-argument form, for callers that use it

    def close(self) -> None:
        self._waiting_on = _STARTED
        self._coro.close()

    def __await__(self) -> Generator[Any, Any, Any]:
        # Never awaited by fastws (only handed to a task); given so the object
        # is a whole coroutine: ``yield from`` over send and throw.
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                waiting_on = self.send(value) if error is None else self.throw(error)
            except StopIteration as done:
                return done.value
            error = None
            try:
                value = yield waiting_on
            except BaseException as exc:
                error = exc

    # What asyncio reads from a task's coroutine for its repr and get_stack()
    # (an instance cannot carry __qualname__: asyncio falls back to __name__).
    @property
    def __name__(self) -> str:
        return getattr(self._coro, "__qualname__", None) or type(self._coro).__name__

    @property
    def cr_code(self) -> Any:
        return getattr(self._coro, "cr_code", None)

    @property
    def cr_frame(self) -> Any:
        return getattr(self._coro, "cr_frame", None)

    @property
    def cr_running(self) -> bool:
        return bool(getattr(self._coro, "cr_running", False))


_STARTED: Any = object()
