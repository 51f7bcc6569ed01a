"""What the packaging test serves from each installed artifact.

The test copies this file into a directory of its own and runs the installed
``fastws`` command there, so the code that serves it is the installed package,
never the checkout.
"""

from fastws import create_app, websocket

app = create_app()
app.use(websocket())


@app.ws("/echo")
def echo(ws, ctx):
    ws.on("message", lambda data: ws.send(f"echo: {data}"))
