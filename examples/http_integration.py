"""Integration with HTTP Routes: a WebSocket room whose messages are stored,
and an HTTP route that reports the room's connections and recent messages.

Run: ``python -m examples.http_integration``, chat on
ws://localhost:3000/rooms/lobby and read
http://localhost:3000/rooms/lobby/info.
"""

from collections import defaultdict, deque

from fastws import create_app, websocket

RECENT_MESSAGES = 50

# The last RECENT_MESSAGES messages of each room, oldest first.
_messages: dict[str, deque] = defaultdict(lambda: deque(maxlen=RECENT_MESSAGES))

app = create_app()
app.use(websocket())


def save_message(room: str, data) -> None:
    """Remember a message of ``room`` (binary messages as UTF-8 text, so the
    HTTP route can return them as JSON)."""
    if not isinstance(data, str):
        data = bytes(data).decode("utf-8", "replace")
    _messages[room].append(data)


def get_recent_messages(room: str) -> list:
    """The recent messages of ``room``, oldest first."""
    return list(_messages.get(room, ()))


def get_room_connection_count(room: str) -> int:
    """How many sockets are in ``room`` right now."""
    return app.room_size(room)


# HTTP route to get room info
@app.get("/rooms/:room/info")
def room_info(ctx):
    room = ctx.params["room"]
    # Get room statistics
    return ctx.json({
        "room": room,
        "connections": get_room_connection_count(room),
        "messages": get_recent_messages(room),
    })


# WebSocket for real-time updates
@app.ws("/rooms/:room")
def room_socket(ws, ctx):
    room = ctx.params["room"]
    ws.join(room)

    @ws.on("message")
    def on_message(data):
        # Store message for HTTP API
        save_message(room, data)
        ws.broadcast(room, data)


if __name__ == "__main__":
    app.run(port=3000)
