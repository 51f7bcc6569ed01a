"""Joining and Leaving Rooms: a welcome for the newcomer, a notice for the
others, and a ``switch-room`` event.

Run: ``python -m examples.rooms`` and connect to ws://localhost:3000/room/42.
Send ``{"type": "switch-room", "roomId": "43"}`` to move.
"""

from fastws import create_app, websocket

app = create_app()
app.use(websocket())


@app.ws("/room/:roomId")
def room_handler(ws, ctx):
    room_id = ctx.params["roomId"]

    # Join room
    ws.join(room_id)

    # Send welcome message to the user
    ws.send(f"Welcome to room {room_id}!")

    # Notify others in the room
    ws.broadcast(room_id, "A new user joined")

    # Handle room switching
    @ws.on("switch-room")
    def on_switch_room(new_room_id):
        # Rebind so a second switch leaves the room actually held (the
        # TypeScript's `const roomId` would keep leaving the first one).
        nonlocal room_id
        ws.leave(room_id)
        ws.join(new_room_id)
        room_id = new_room_id
        ws.send(f"Switched to room {new_room_id}")


if __name__ == "__main__":
    app.run(port=3000)
