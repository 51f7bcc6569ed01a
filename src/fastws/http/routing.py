"""Path patterns with ``:params``: ``/chat/:room`` matches ``/chat/general``.

Static paths are looked up in a dict; patterns are tried in registration order.
A ``:name`` segment matches one non-empty path segment; a trailing ``*``
segment matches the rest of the path (exposed as the ``"*"`` param).
"""

from __future__ import annotations

import re
from typing import Any, Generic, TypeVar
from urllib.parse import unquote

__all__ = ["Params", "Route", "Router"]

T = TypeVar("T")

_PARAM = re.compile(r"^:([A-Za-z_][A-Za-z0-9_]*)$")


class Params(dict):
    """Route parameters: a dict that also allows ``params.room``."""

    __slots__ = ()

    def __getattr__(self, name: str) -> str:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no route parameter named {name!r}") from None


class Route(Generic[T]):
    """One compiled pattern and the target it routes to."""

    __slots__ = ("pattern", "target", "_regex", "_names")

    def __init__(self, pattern: str, target: T) -> None:
        if not pattern.startswith("/"):
            raise ValueError(f"route pattern must start with '/': {pattern!r}")
        self.pattern = pattern
        self.target = target
        self._names: list[str] = []
        parts = []
        segments = pattern.split("/")[1:]
        for i, seg in enumerate(segments):
            m = _PARAM.match(seg)
            if m:
                name = m.group(1)
                if name in self._names:
                    raise ValueError(f"route {pattern!r} uses parameter {name!r} twice")
                self._names.append(name)
                parts.append("/([^/]+)")
            elif seg == "*" and i == len(segments) - 1:
                self._names.append("*")
                parts.append("/(.*)")
            elif ":" in seg or "*" in seg:
                raise ValueError(f"bad segment {seg!r} in route {pattern!r}: "
                                 "use ':name' for a whole segment or a final '*'")
            else:
                parts.append("/" + re.escape(seg))
        self._regex = re.compile("".join(parts) + r"\Z") if self._names else None

    @property
    def is_static(self) -> bool:
        """True when the pattern has no parameters."""
        return self._regex is None

    def match(self, path: str) -> Params | None:
        """The params if ``path`` matches, else None."""
        if self._regex is None:
            return Params() if path == self.pattern else None
        m = self._regex.match(path)
        if m is None:
            return None
        return Params(zip(self._names, (unquote(v) for v in m.groups()), strict=True))


class Router(Generic[T]):
    """Routes keyed by (kind, pattern), where kind is an HTTP method or "WS"."""

    def __init__(self) -> None:
        self._static: dict[str, dict[str, T]] = {}
        self._dynamic: list[tuple[str, Route[T]]] = []
        self._patterns: set[tuple[str, str]] = set()

    def add(self, kind: str, pattern: str, target: T) -> None:
        """Register ``target`` for ``kind`` requests to ``pattern``."""
        if (kind, pattern) in self._patterns:
            raise ValueError(f"{kind} {pattern} is already routed")
        route = Route(pattern, target)
        self._patterns.add((kind, pattern))
        if route.is_static:
            self._static.setdefault(pattern, {})[kind] = target
        else:
            self._dynamic.append((kind, route))

    def resolve(self, path: str) -> dict[str, tuple[T, Params]]:
        """Every kind routed at ``path``, with its target and params.

        An empty result means 404; a result without the requested kind means
        405 (or 426 for a plain GET on a WebSocket route).
        """
        found: dict[str, tuple[Any, Params]] = {}
        static = self._static.get(path)
        if static:
            for kind, target in static.items():
                found[kind] = (target, Params())
        for kind, route in self._dynamic:
            if kind in found:
                continue
            params = route.match(path)
            if params is not None:
                found[kind] = (route.target, params)
        return found
