"""bench/asgi.py's fastws side: the FastAPI app of fastapi_app.py mounted at "/"
(``app.mount``), next to a fastws WebSocket route, on uvloop."""
from common import HOST, port_from_argv, raise_nofile_limit
from fastapi_app import api

from fastws import create_app, websocket

raise_nofile_limit()
app = create_app()
app.use(websocket())


@app.ws("/echo")
def echo(ws, ctx):
    ws.on("message", ws.send)


app.mount("/", api)
app.run(host=HOST, port=port_from_argv())
