"""Error Handling: ``error_handler()`` for HTTP routes, and the ``error``
event for exceptions raised by WebSocket handlers.

``process_message`` takes JSON such as ``{"action": "sum", "values": [1, 2]}``
and raises ValueError for anything else. An exception raised inside a
message handler does not reach the ``try`` around its registration (in
Python as in TypeScript that only guards ``ws.on`` itself): the server
catches it, fires ``error`` and keeps the connection open, so the error
listener is where the client is told.

Run: ``python -m examples.error_handling`` and connect to
ws://localhost:3000/robust, or POST the same JSON to
http://localhost:3000/process.
"""

import json
import logging

from fastws import HTTPError, create_app, error_handler, websocket

log = logging.getLogger(__name__)

ACTIONS = {
    "sum": sum,
    "max": max,
    "min": min,
}

app = create_app()
app.use(websocket())
app.use(error_handler())


def process_message(data) -> dict:
    """Run the action a JSON message asks for; ValueError if it is not JSON,
    names no known action, or its values are not a non-empty list of numbers."""
    request = json.loads(data)      # json.JSONDecodeError is a ValueError
    if not isinstance(request, dict) or request.get("action") not in ACTIONS:
        raise ValueError(f"expected an action among {sorted(ACTIONS)}")
    values = request.get("values")
    if (not isinstance(values, list) or not values
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
        raise ValueError("values must be a non-empty list of numbers")
    return {"action": request["action"], "result": ACTIONS[request["action"]](values)}


# The same processing over HTTP. Input it cannot process is the client's
# mistake: a 400 with the same JSON as the WebSocket gets, and a warning in
# the log. Anything else it raises is ours: error_handler() makes it a JSON
# 500, and the traceback goes to the log, never to the client.
@app.post("/process")
async def process(ctx):
    try:
        return ctx.json(process_message(await ctx.body()))
    except ValueError as error:
        log.warning("POST /process: bad input: %s", error)
        raise HTTPError(400, "Failed to process message") from None


@app.ws("/robust")
def robust(ws):
    try:
        @ws.on("message")
        def on_message(data):
            # Process message
            result = process_message(data)
            ws.send(result)
    except Exception as error:
        ws.send({"error": "Failed to process message"})
        log.error("WebSocket error: %s", error)

    @ws.on("error")
    def on_error(error):
        # A message it cannot process is the client's mistake, worth a
        # warning; anything else a handler raises is a bug of ours.
        level = logging.WARNING if isinstance(error, ValueError) else logging.ERROR
        log.log(level, "WebSocket connection error: %s", error)
        ws.send({"error": "Failed to process message"})


if __name__ == "__main__":
    app.run(port=3000)
