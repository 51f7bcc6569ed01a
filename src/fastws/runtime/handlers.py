"""Event handler tables: registration, arity, the reserved names.

Handlers may declare fewer parameters than an event offers; the arity is
read once, at registration, so dispatch is a plain call. Dispatch itself, and
the JSON event rule, are in ``fastws.runtime._dispatch``.
"""

from __future__ import annotations

import inspect
import types
from typing import Any, Callable

__all__ = ["RESERVED_EVENTS", "add_handler", "remove_handler", "arity", "call"]

# Events the server raises itself; a client's JSON "type" can never name them.
RESERVED_EVENTS = frozenset({"open", "close", "error", "ping", "pong", "drain", "recovered"})

_MANY = 1 << 30


def arity(fn: Callable[..., Any]) -> int:
    """How many positional arguments ``fn`` accepts (a large number for *args)."""
    # Handlers are registered per connection (ws.on), so the common kinds are
    # read from their code object: inspect.signature costs tens of microseconds.
    if type(fn) is types.FunctionType:
        return _code_arity(fn.__code__, 0)
    if type(fn) is types.MethodType and type(fn.__func__) is types.FunctionType:
        return _code_arity(fn.__func__.__code__, 1)
    # Bound methods of compiled classes (ws.send, bound per socket): the
    # answer depends only on the function, so it is read once.
    key: Any = None
    if type(fn) is types.MethodType:
        key = fn.__func__
    elif type(fn) is types.BuiltinMethodType and fn.__self__ is not None:
        key = (type(fn.__self__), fn.__name__)
    if key is not None:
        cached = _BUILTIN_ARITY.get(key)
        if cached is not None:
            return cached
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return _MANY    # builtins without a signature: pass everything
    n = 0
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            n = _MANY
            break
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            n += 1
    if key is not None:
        _BUILTIN_ARITY[key] = n
    return n


_BUILTIN_ARITY: dict[Any, int] = {}


def call(fn: Callable[..., Any], n: int, args: tuple[Any, ...]) -> Any:
    """Call ``fn`` with as many of ``args`` as it takes (``n``, its ``arity``):
    a handler may leave out what it does not need, from the end."""
    return fn(*args) if n >= len(args) else fn(*args[:n])


def _code_arity(code: types.CodeType, bound: int) -> int:
    if code.co_flags & inspect.CO_VARARGS:
        return _MANY
    return max(code.co_argcount - bound, 0)


def add_handler(table: dict[str, list[tuple[Callable[..., Any], int]]], event: str,
                fn: Callable[..., Any]) -> None:
    """Register ``fn`` for ``event`` in ``table`` (after the ones already there).

    The event's list is replaced, never changed in place (here and in
    ``remove_handler``): a dispatch walks the list it started with, so a handler
    that adds or removes handlers (``ws.off`` on itself, the "once" pattern)
    neither skips the next one nor runs past the end.
    """
    if not isinstance(event, str) or not event:
        raise TypeError(f"event name must be a non-empty str, got {event!r}")
    if not callable(fn):
        raise TypeError(f"handler for {event!r} must be callable, got {fn!r}")
    table[event] = [*table.get(event, ()), (fn, arity(fn))]


def remove_handler(table: dict[str, list[tuple[Callable[..., Any], int]]], event: str,
                   fn: Callable[..., Any]) -> bool:
    """Unregister ``fn`` from ``event``; True if it was registered."""
    entries = table.get(event)
    if not entries:
        return False
    for i, (f, _) in enumerate(entries):
        if f is fn or f == fn:
            rest = entries[:i] + entries[i + 1:]
            if rest:
                table[event] = rest
            else:
                del table[event]
            return True
    return False
