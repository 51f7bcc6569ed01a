"""Plugins shipped with fastws: ``websocket()`` and ``error_handler()``."""

from fastws.plugins.error_handler import error_handler
from fastws.plugins.websocket import WebSocketOptions, websocket

__all__ = ["websocket", "WebSocketOptions", "error_handler"]
