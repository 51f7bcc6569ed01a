"""Chat Application: rooms from the URL, join/leave notices, JSON chat
messages with user and timestamp, and a ``join-room`` event to switch rooms.

Run: ``python -m examples.chat`` and connect to
ws://localhost:3000/chat/general?user=Alice.
"""

from datetime import datetime, timezone

from fastws import create_app, websocket

app = create_app()
app.use(websocket())


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds, like JS toISOString()."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@app.ws("/chat/:room")
def chat(ws, ctx):
    room = ctx.params["room"]
    user_id = ctx.get_query("user") or "Anonymous"

    # Join the room
    ws.join(room)
    ws.broadcast(room, f"{user_id} joined the room")

    # Handle messages
    @ws.on("message")
    def on_message(data):
        ws.broadcast(room, {
            "user": user_id,
            "message": data,
            "timestamp": now_iso(),
        })

    # Handle room changes
    @ws.on("join-room")
    def on_join_room(new_room):
        # The TypeScript keeps `const room`, so later messages would still go
        # to the room just left; rebinding sends them where the user now is.
        nonlocal room
        ws.leave(room)
        ws.join(new_room)
        room = new_room
        ws.send(f"Switched to room: {new_room}")

    # Handle disconnection
    @ws.on("close")
    def on_close():
        ws.broadcast(room, f"{user_id} left the room")


if __name__ == "__main__":
    app.run(port=3000)
