"""Heartbeat/Ping-Pong: ping each client every PING_INTERVAL seconds and
log its pongs; the timer stops when the connection closes.

Run: ``python -m examples.heartbeat`` and connect to
ws://localhost:3000/heartbeat. PING_INTERVAL defaults to 30 s; set the
``HEARTBEAT_INTERVAL`` environment variable (seconds) to change it.
"""

import asyncio
import logging
import os

from fastws import ReadyState, create_app, websocket

PING_INTERVAL = float(os.environ.get("HEARTBEAT_INTERVAL", "30"))

log = logging.getLogger(__name__)

app = create_app()
app.use(websocket())


def set_interval(callback, seconds: float) -> asyncio.Task:
    """Call ``callback()`` every ``seconds`` on the running loop until the
    returned task is cancelled (the twin of JavaScript's setInterval)."""
    async def tick():
        while True:
            await asyncio.sleep(seconds)
            callback()
    return asyncio.get_running_loop().create_task(tick(), name="heartbeat")


@app.ws("/heartbeat")
def heartbeat(ws):
    # Send ping every PING_INTERVAL seconds
    def send_ping():
        if ws.ready_state == ReadyState.OPEN:
            ws.ping()

    ping_interval = set_interval(send_ping, PING_INTERVAL)

    @ws.on("pong")
    def on_pong():
        log.info("Received pong from client")

    @ws.on("close")
    def on_close():
        ping_interval.cancel()      # clearInterval


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    app.run(port=3000)
