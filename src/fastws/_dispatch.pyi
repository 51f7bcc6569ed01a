"""Type stubs for the compiled dispatcher (src/fastws/_dispatch.pyx)."""

from typing import Any, Callable, Mapping, TypeVar

from fastws._connection import Connection

_F = TypeVar("_F", bound=Callable[..., Any])

def json_event(text: str, handlers: Mapping[str, Any], loads: Callable[[str], Any],
               custom: bool = ...) -> tuple[str, Any] | None: ...

class Dispatcher(Connection):
    def on(self, event: str, handler: _F | None = ...) -> Any: ...
    def off(self, event: str, handler: Callable[..., Any]) -> bool: ...
