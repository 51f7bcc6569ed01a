"""Broadcasting: an ``announce`` event sent to the room without the sender
(``broadcast``) and then with it (``broadcast_all``).

As in the TypeScript, the others therefore receive each announcement twice
and the sender once. The TypeScript never joins a room, which would leave
``ws.room`` empty; here the socket joins the room named by ``?room=``
(default "lobby") so the announcement has somewhere to go.

Run: ``python -m examples.broadcasting``, connect two clients to
ws://localhost:3000/broadcast and send
``{"type": "announce", "message": "Hello"}`` from one.
"""

from fastws import create_app, websocket

app = create_app()
app.use(websocket())


@app.ws("/broadcast")
def broadcast(ws, ctx):
    ws.join(ctx.get_query("room") or "lobby")

    @ws.on("announce")
    def on_announce(message):
        # Send to all in current room
        ws.broadcast(ws.room, message)

        # Send to everyone including sender
        ws.broadcast_all(ws.room, message)


if __name__ == "__main__":
    app.run(port=3000)
