# cython: language_level=3
"""Events of one connection: who is called, with what, in which order.

``Dispatcher`` sits between the connection rules (``_connection.Connection``,
which it subclasses) and the asyncio adapter (``_adapter.Adapter``). It
keeps the handler table of ``ws.on``/``ws.off``, turns JSON text messages
into named events (``json_event``), and runs handlers so that one
connection's handlers see its messages in arrival order:

- synchronous handlers run inline, in the callback that received the bytes;
- when a handler (or the route handler) returns an awaitable, one task
  finishes it and then works through whatever arrived meanwhile, so async
  handlers keep order without a task per message;
- while a handler is busy, events are held, not lost; a long backlog pauses
  reading from the client until it shrinks, so a fast sender cannot grow it
  without bound;
- while flow control makes the client wait (its broadcasts filled a member
  past its high-water mark), the rest of what it sent is held too, and
  delivered in order once the members have drained.

A handler that raises fires ``error`` (or is logged when nobody listens) and
the connection stays open; a raising route handler closes it with 1011.
"""

import inspect
import logging
from collections import deque

from cpython.unicode cimport PyUnicode_GET_LENGTH, PyUnicode_READ_CHAR

from fastws._constants cimport CLOSE_INTERNAL_ERROR, CLOSE_POLICY_VIOLATION
from fastws.ws._connection cimport Connection
from fastws.runtime._shared cimport RuntimeShared
from fastws.ws._connection import publisher_var
from fastws.runtime.eager import start_task
from fastws.errors import RoomLimitError
from fastws.runtime.handlers import RESERVED_EVENTS, add_handler, arity, call, remove_handler

__all__ = ["Dispatcher", "json_event"]

log = logging.getLogger("fastws")

cdef enum:
    # Pause reading from a client whose messages wait behind a slow async
    # handler; resume when the backlog is down to this.
    BACKLOG_PAUSE = 64
    BACKLOG_RESUME = 16


cdef inline bint _awaitable(object result):
    # The common results of sync handlers (None, bool, int, str) are settled
    # by type without calling into inspect.
    if result is None or result is True or result is False:
        return False
    if type(result) is int or type(result) is str:
        return False
    return inspect.isawaitable(result)


cpdef object json_event(str text, dict handlers, object loads, bint custom=True):
    """The (event, payload) a text message names, or None to treat it as plain.

    A JSON object with a string ``"type"`` that names a registered,
    non-reserved event becomes that event; its payload is the object without
    ``"type"``: the single remaining value, None when nothing remains, else
    the dict of remaining fields. ``custom`` False says no event but
    ``message`` is registered, so only a text naming "message" is parsed.
    """
    if text is None or handlers is None:
        raise TypeError("json_event needs a str and a dict of handlers")
    # Skip the parse for everything that cannot be an event: it costs six
    # times the rest of the dispatch.
    # The first character by index, not str.startswith: this runs for every
    # text message, and the method call costs more than the rest of the test.
    if PyUnicode_GET_LENGTH(text) == 0 or PyUnicode_READ_CHAR(text, 0) != 123 or \
            '"type"' not in text or not (custom or '"message"' in text):     # 123: "{"
        return None
    try:
        obj = loads(text)
    except Exception:
        # Not JSON we can read, so not an event: json's ValueError, and its
        # RecursionError for deep nesting (a client's 2 KB of "[" on 3.10, about
        # 20 KB on 3.13), or whatever another ``loads`` raises.
        return None
    if type(obj) is not dict:
        return None
    name = obj.get("type")
    if type(name) is not str or name in RESERVED_EVENTS or name not in handlers:
        return None
    del obj["type"]
    if not obj:
        return name, None
    if len(obj) == 1:
        return name, next(iter(obj.values()))
    return name, obj


cdef class Dispatcher(Connection):
    """The handler table and ordered dispatch of one connection."""

    def __init__(self, RuntimeShared shared not None, **kwargs):
        # Only a RuntimeShared: this layer reads it through unchecked casts.
        Connection.__init__(self, shared, **kwargs)
        self._by_name = {}

    @property
    def json_events(self):
        """Whether text messages may become JSON events on this connection
        (the ``json_events`` option, unless set here): False hands every
        message to ``message`` as it came."""
        return (<RuntimeShared>self._shared).json_events and not self._plain

    @json_events.setter
    def json_events(self, on):
        self._plain = not on

    # ------------------------------------------------------------------ registration

    def on(self, event, handler=None):
        """Register ``handler`` for ``event``; without a handler, a decorator."""
        if handler is None:
            def decorate(fn):
                self._add_handler(event, fn)
                return fn
            return decorate
        self._add_handler(event, handler)
        return handler

    def _add_handler(self, event, fn):
        new = event not in self._by_name
        add_handler(self._by_name, event, fn)
        if new and event != "message" and event not in RESERVED_EVENTS:
            self._n_custom += 1

    def off(self, event, handler):
        """Unregister ``handler``; True if it was registered."""
        removed = remove_handler(self._by_name, event, handler)
        if removed and event not in self._by_name and event != "message" \
                and event not in RESERVED_EVENTS:
            self._n_custom -= 1
        return removed

    # ------------------------------------------------------------------ what the rules report

    cdef int _on_message(self, object data) except -1:
        # The one event per message: no tuple for its argument unless it waits.
        if self._busy or self._blocked:
            return self._hold("message", (data,))
        return self._started(self._message_now(data))

    cdef int _on_ping(self, bytes payload) except -1:
        return self._deliver("ping", (payload,))

    cdef int _on_pong(self, bytes payload) except -1:
        return self._deliver("pong", (payload,))

    cdef int _on_error(self, object exc) except -1:
        if "error" in self._by_name:
            self._deliver("error", (exc,))
        return 0

    cdef int _on_close(self, int code, str reason) except -1:
        return self._deliver("close", (code, reason))

    # ------------------------------------------------------------------ the route handler

    def _run_route(self, handler, ctx):
        """Run the route handler; messages arriving meanwhile wait their turn."""
        self._busy = True
        try:
            result = call(handler, arity(handler), (self, ctx))
        except Exception as exc:
            self._busy = False
            self._route_failed(exc, ctx)
            return
        if _awaitable(result):
            self._spawn(self._drive(self._route_async(result, ctx)))
        else:
            self._busy = False
            self._drain_held()

    async def _route_async(self, aw, ctx):
        try:
            await aw
        except Exception as exc:
            self._route_failed(exc, ctx)

    def _route_failed(self, exc, ctx):
        log.error("WebSocket route handler for %s raised",
                  ctx.path if ctx is not None else "?", exc_info=exc)
        if "error" in self._by_name:
            self._call_error_handlers(exc)
        self._fail(CLOSE_INTERNAL_ERROR, "internal error")

    # ------------------------------------------------------------------ ordered delivery

    cdef int _deliver(self, str event, tuple args) except -1:
        if self._busy or self._blocked:
            return self._hold(event, args)
        return self._started(self._dispatch_now(event, args))

    cdef int _hold(self, str event, tuple args) except -1:
        if self._held is None:
            self._held = deque()
        self._held.append((event, args))
        if not self._backlogged and len(self._held) >= BACKLOG_PAUSE:
            self._backlogged = True
            self._update_reading()
        return 0

    cdef int _started(self, object pending) except -1:
        """A handler went async: its task runs the episode, the rest waits."""
        if pending is not None:
            self._busy = True
            self._spawn(self._drive(pending))
        return 0

    def _spawn(self, coro):
        """The task of an async episode: a plain asyncio Task if the loop's task
        factory (the app's) refuses it (``fastws.runtime.eager.start_task``), so the
        episode, a close's included, always runs to its end; never the
        connection left busy for good, holding every later event."""
        start_task((<RuntimeShared>self._shared).loop, coro)

    def _drain_held(self):
        while self._held and not self._busy and not self._blocked:
            event, args = self._held.popleft()
            self._maybe_resume()
            self._deliver(event, args)

    cdef int _maybe_resume(self) except -1:
        if self._backlogged and len(self._held) <= BACKLOG_RESUME:
            self._backlogged = False
            self._update_reading()
        return 0

    cdef object _dispatch_now(self, str event, tuple args):
        """Run the handlers of one event now. If one returns an awaitable,
        return a coroutine that finishes the event; the caller must await it
        before delivering anything else."""
        cdef list handlers
        if event == "message":
            return self._message_now(args[0])
        handlers = self._by_name.get(event)
        pending = None if handlers is None else self._run(event, handlers, None, args)
        if pending is None and event == "close":
            self._after_close()
        return pending

    cdef object _message_now(self, object data):
        """A data message: a JSON event if the rule says so, else ``message``."""
        cdef list handlers
        if (<RuntimeShared>self._shared).json_events and not self._plain and type(data) is str:
            named = json_event(<str>data, self._by_name, (<RuntimeShared>self._shared).loads,
                               self._n_custom != 0)
            if named is not None:
                return self._run(named[0], self._by_name[named[0]], named[1], None)
        handlers = self._by_name.get("message")
        return None if handlers is None else self._run("message", handlers, data, None)

    cdef object _run(self, str event, list handlers, object arg, tuple args):
        """Call ``handlers`` with ``args``, or with the single ``arg`` when
        ``args`` is None (the per-message case, which builds no tuple)."""
        cdef Py_ssize_t i, n
        for i in range(len(handlers)):
            fn, n = handlers[i]
            try:
                if args is None:
                    # handlers.call for one argument, unrolled: this is the per-message call
                    result = fn(arg) if n >= 1 else fn()
                else:
                    result = call(fn, n, args)
            except Exception as exc:
                self._handler_failed(event, exc)
                continue
            if _awaitable(result):
                return self._finish(event, (arg,) if args is None else args, result,
                                    list(handlers[i + 1:]))
        return None

    async def _finish(self, event, args, pending, rest):
        try:
            await pending
        except Exception as exc:
            self._handler_failed(event, exc)
        for fn, n in rest:
            try:
                result = call(fn, n, args)
                if _awaitable(result):
                    await result
            except Exception as exc:
                self._handler_failed(event, exc)
        if event == "close":
            self._after_close()

    async def _drive(self, pending):
        """The one task of an async episode: finish the pending event, then
        deliver what was held behind it, awaiting each async step in turn."""
        publisher_var.set(self)         # this task's broadcasts are ours (flow control)
        self._task_started()
        try:
            while pending is not None:
                await pending
                pending = None
                while self._held and pending is None and not self._blocked:
                    event, args = self._held.popleft()
                    self._maybe_resume()
                    pending = self._dispatch_now(event, args)
        finally:
            self._task_done()
            self._busy = False
            if self._held is not None:
                self._maybe_resume()
            self._flush()

    def _handler_failed(self, event, exc):
        if isinstance(exc, RoomLimitError):
            # A client asked for more rooms than it may hold: refuse it plainly.
            log.info("closing %s: %s", self._peer(), exc)
            if "error" in self._by_name:
                self._call_error_handlers(exc)
            self._fail(CLOSE_POLICY_VIOLATION, "room limit exceeded")
            return
        if event != "error" and "error" in self._by_name:
            self._call_error_handlers(exc)
        else:
            log.error("%r handler raised on a WebSocket from %s", event,
                      self._peer(), exc_info=exc)

    def _call_error_handlers(self, exc):
        for fn, n in list(self._by_name.get("error", ())):
            try:
                result = call(fn, n, (exc,))
                if _awaitable(result):
                    (<RuntimeShared>self._shared).loop.create_task(self._await_error_handler(result))
            except Exception as inner:
                log.error("'error' handler raised", exc_info=inner)

    async def _await_error_handler(self, aw):
        try:
            await aw
        except Exception as inner:
            log.error("'error' handler raised", exc_info=inner)

    # ------------------------------------------------------------------ flow control

    cdef int _on_unblocked(self) except -1:
        """The members we filled have drained: read on, and deliver what waited."""
        self._update_reading()
        if not self._busy:
            self._drain_held()
        return 0

    cdef int _on_blocked(self) except -1:
        self._update_reading()
        return 0

    # ------------------------------------------------------------------ adapter hooks

    cdef int _update_reading(self) except -1:
        return 0

    cdef int _flush(self) except -1:
        return 0

    cdef int _task_started(self) except -1:
        """An episode's task started (the adapter sees that the loop serves it soon)."""
        return 0

    cdef int _task_done(self) except -1:
        return 0

    cdef int _after_close(self) except -1:
        """Close handlers ran: forget them (the adapter also leaves rooms)."""
        self._by_name.clear()
        self._n_custom = 0
        return 0
