"""Type stubs for the compiled dispatcher (src/fastws/runtime/_dispatch.pyx)."""

from typing import Any, Callable, Mapping, TypeVar

from fastws.ws._connection import Connection

_F = TypeVar("_F", bound=Callable[..., Any])

def json_event(text: str, handlers: Mapping[str, Any], loads: Callable[[str], Any],
               custom: bool = ...) -> tuple[str, Any] | None: ...

class Dispatcher(Connection):
    def on(self, event: str, handler: _F | None = ...) -> Any:
        """Register ``handler`` for ``event``; without a handler, a decorator."""
    def off(self, event: str, handler: Callable[..., Any]) -> bool:
        """Unregister ``handler``; True if it was registered."""
    @property
    def json_events(self) -> bool:
        """Whether text messages may become JSON events on this connection
        (the ``json_events`` option, unless set here): False hands every
        message to ``message`` as it came."""
    @json_events.setter
    def json_events(self, on: bool) -> None: ...
