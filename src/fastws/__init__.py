"""fastws: a Cython-accelerated WebSocket server for Python on uvloop and httptools.

    from fastws import create_app, websocket

    app = create_app()
    app.use(websocket())

    @app.ws("/echo")
    def echo(ws, ctx):
        ws.on("message", lambda data: ws.send(f"Echo: {data}"))

    app.run(port=3000)
"""

from fastws._constants import CloseCode, Opcode, ReadyState
from fastws.app import App, create_app
from fastws.http.context import Context, Headers, HTTPError, Response
from fastws.cluster import BackplaneOptions, Cluster
from fastws.errors import (BackplaneError, BindError, BroadcastTooLargeError, ProtocolError,
                           RoomLimitError)
from fastws.options import WebSocketOptions
from fastws.runtime.history import HistoryMessage
from fastws.serve.server import Server
from fastws.runtime._websocket import WebSocket
from fastws.plugins import backplane, error_handler, metrics, websocket

__all__ = [
    "App", "BackplaneError", "BackplaneOptions", "BindError", "BroadcastTooLargeError", "Cluster", "CloseCode", "Context", "Headers", "HistoryMessage", "HTTPError", "Opcode", "ProtocolError",
    "ReadyState", "Response", "RoomLimitError", "Server", "WebSocket", "WebSocketOptions", "create_app",
    "backplane", "error_handler", "metrics", "websocket", "__version__",
]

from fastws._version import __version__  # noqa: E402  (the one place the number lives)
