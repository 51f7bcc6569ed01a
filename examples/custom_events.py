"""Custom Events: a client sends JSON objects with a ``"type"``; the server
receives each as the event of that name, its payload being the remaining
field (``{"type": "join-room", "room": "general"}`` calls the ``join-room``
handler with ``"general"``).

The guide shows only the browser side; ``client()`` is its Python twin
(with the ``websockets`` library) and ``app`` is a server that answers it
with JSON, so the client's ``json.loads`` has something to parse.

Run the server: ``python -m examples.custom_events``
Run the client: ``python -m examples.custom_events client`` (it needs the
``websockets`` library: ``pip install websockets``); it prints the server's two
replies and exits.
"""

import asyncio
import json
import sys

from fastws import create_app, websocket

app = create_app()
app.use(websocket())


@app.ws("/chat")
def chat(ws):
    @ws.on("join-room")
    def on_join_room(room):
        if ws.room is not None:
            ws.leave(ws.room)
        ws.join(room)
        ws.send({"type": "joined", "room": room})

    @ws.on("message")
    def on_message(content):
        if ws.room is None:
            ws.send({"type": "error", "error": "join a room first"})
            return
        ws.broadcast_all(ws.room, {"type": "message", "room": ws.room, "content": content})


async def client(url="ws://localhost:3000/chat", count=None):
    """Connect, send the two custom events, then print (and collect) what
    arrives, parsed as JSON: ``count`` messages, or until the server closes."""
    from websockets.asyncio.client import connect

    received = []
    async with connect(url) as ws:
        # Send custom events
        await ws.send(json.dumps({
            "type": "join-room",
            "room": "general",
        }))

        await ws.send(json.dumps({
            "type": "message",
            "content": "Hello!",
        }))

        async for message in ws:      # ws.onmessage
            data = json.loads(message)
            print(data)
            received.append(data)
            if count is not None and len(received) >= count:
                break
    return received


if __name__ == "__main__":
    if sys.argv[1:] == ["client"]:
        try:
            import websockets  # noqa: F401
        except ImportError:
            sys.exit("the client needs the websockets library: pip install websockets")
        asyncio.run(client(count=2))    # "joined", then the room's echo of "Hello!"
    else:
        app.run(port=3000)
