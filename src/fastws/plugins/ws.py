"""``websocket(**options)``: the plugin that turns WebSocket support on.

The options and their defaults live in ``fastws.options.WebSocketOptions``;
they are validated when the plugin is created, so a typo fails at start-up.
"""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any

from fastws.options import WebSocketOptions, default_dumps

if TYPE_CHECKING:
    from fastws.app import App

__all__ = ["WebSocketOptions", "WebSocketPlugin", "websocket", "default_dumps"]


class WebSocketPlugin:
    """Installs WebSocket support on an app (see ``websocket()``)."""

    def __init__(self, options: WebSocketOptions) -> None:
        self.options = options

    def install(self, app: App) -> None:
        """Give the app its WebSocket options; enables ``app.ws``."""
        app.ws_options = self.options


def websocket(**options: Any) -> WebSocketPlugin:
    """The WebSocket plugin: ``app.use(websocket())``, options as in
    ``WebSocketOptions``."""
    known = {f.name for f in fields(WebSocketOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"websocket() got unknown option(s) {', '.join(unknown)}; "
                        f"known options: {', '.join(sorted(known))}")
    return WebSocketPlugin(WebSocketOptions(**options))
