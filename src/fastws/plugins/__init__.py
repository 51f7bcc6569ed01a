"""Plugins shipped with fastws: ``websocket()``, ``error_handler()``, ``metrics()``
and ``backplane()``."""

from fastws.plugins.cluster import backplane
from fastws.plugins.errors import error_handler
from fastws.plugins.prometheus import metrics
from fastws.plugins.ws import WebSocketOptions, websocket

__all__ = ["websocket", "WebSocketOptions", "error_handler", "metrics", "backplane"]
