"""Simple Echo Server: every message comes back prefixed with "Echo: ".

Run: ``python -m examples.echo`` and connect to ws://localhost:3000/echo.
"""

from fastws import create_app, websocket

app = create_app()
app.use(websocket())


@app.ws("/echo")
def echo(ws):
    @ws.on("message")
    def on_message(data):
        ws.send(f"Echo: {data}")

    @ws.on("close")
    def on_close():
        print("Connection closed")


if __name__ == "__main__":
    app.run(port=3000)
