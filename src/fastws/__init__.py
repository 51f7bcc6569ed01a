"""fastws: a Cython-accelerated WebSocket server for Python on uvloop and httptools.

    from fastws import create_app, websocket

    app = create_app()
    app.use(websocket())

    @app.ws("/echo")
    def echo(ws, ctx):
        ws.on("message", lambda data: ws.send(f"Echo: {data}"))

    app.run(port=3000)
"""

from fastws._frame import ProtocolError
from fastws.app import App, create_app
from fastws.context import Context, Headers, HTTPError, Response
from fastws.plugins import WebSocketOptions, error_handler, websocket
from fastws.server import Server
from fastws.websocket import ReadyState, WebSocket

__all__ = [
    "App", "Context", "Headers", "HTTPError", "ProtocolError", "ReadyState", "Response",
    "Server", "WebSocket", "WebSocketOptions", "create_app", "error_handler", "websocket",
    "__version__",
]

__version__ = "0.1.0"
