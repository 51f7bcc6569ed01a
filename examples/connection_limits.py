"""Connection Limits: at most MAX_CONNECTIONS sockets per room; the next one
is told the room is full and closed.

Run: ``python -m examples.connection_limits`` and connect to
ws://localhost:3000/limited/lobby.
"""

from fastws import WebSocket, create_app, websocket

MAX_CONNECTIONS = 10

# Track connections per room
room_connections: dict[str, set[WebSocket]] = {}

app = create_app()
app.use(websocket())


@app.ws("/limited/:room")
def limited(ws, ctx):
    room = ctx.params["room"]
    max_connections = MAX_CONNECTIONS

    if room not in room_connections:
        room_connections[room] = set()

    connections = room_connections[room]

    if len(connections) >= max_connections:
        ws.send({"error": "Room is full"})
        ws.close()
        return

    connections.add(ws)
    ws.join(room)

    @ws.on("close")
    def on_close():
        connections.discard(ws)


if __name__ == "__main__":
    app.run(port=3000)
