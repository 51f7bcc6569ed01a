"""Error paths that once left a connection half done (found while hunting the
siblings of the Python 3.13 crash: state used after a step that failed).

- A text message that looks like a JSON event but nests deeper than the JSON
  decoder's recursion limit raised RecursionError out of the read callback:
  uvloop aborted the connection (1006, no close frame) and the message was lost.
  It is now what any unreadable JSON is: a plain ``message``.
- A handler that removed itself while its event was being dispatched (the "once"
  pattern) made the next handler be skipped, then an IndexError aborted the
  connection.
"""

from __future__ import annotations

from fastws import create_app, websocket
from tests.conftest import serving
from tests.integration.clients import recv, ws_connect


def echo_app(**options):
    app = create_app()
    app.use(websocket(**options))

    @app.ws("/echo")
    def echo(ws):
        ws.on("message", lambda data: ws.send(f"message: {len(data)}"))

        @ws.on("ping-me")
        def ping_me(payload):
            ws.send(f"event: {payload}")

    return app


def test_json_nested_past_the_recursion_limit_is_a_plain_message():
    # Past the limit of every supported version's decoder (3.10-3.12 give up
    # near 1,000 levels, 3.13 near 10,000 or more).
    depth = 100_000
    deep = '{"type": "ping-me", "x": ' + "[" * depth + "]" * depth + "}"
    with serving(echo_app(max_message_size=1 << 20)) as srv, ws_connect(srv.url("/echo")) as ws:
        ws.send(deep)
        assert recv(ws) == f"message: {len(deep)}"
        ws.send('{"type": "ping-me", "payload": "still here"}')
        assert recv(ws) == "event: still here"


def test_a_handler_that_removes_itself_does_not_skip_the_next():
    app = create_app()
    app.use(websocket())

    @app.ws("/once")
    def once(ws):
        def first(data):
            ws.off("message", first)
            ws.send(f"once: {data}")

        ws.on("message", first)
        ws.on("message", lambda data: ws.send(f"always: {data}"))

    with serving(app) as srv, ws_connect(srv.url("/once")) as ws:
        ws.send("a")
        assert [recv(ws), recv(ws)] == ["once: a", "always: a"]
        ws.send("b")
        assert recv(ws) == "always: b"
        ws.send("c")
        assert recv(ws) == "always: c"
