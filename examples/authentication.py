"""Authentication: the token comes in the query string; without a valid one
the client gets an error and the connection is closed.

Run: ``python -m examples.authentication`` and connect to
ws://localhost:3000/protected?token=let-me-in. Tokens come from the
``FASTWS_EXAMPLE_TOKENS`` environment variable (comma-separated), default
"let-me-in".
"""

import hmac
import os

from fastws import create_app, websocket

VALID_TOKENS = frozenset(
    t for t in os.environ.get("FASTWS_EXAMPLE_TOKENS", "let-me-in").split(",") if t)

app = create_app()
app.use(websocket())


def is_valid_token(token: str) -> bool:
    """Whether ``token`` is one of VALID_TOKENS; constant-time per comparison
    so response times do not reveal how much of a token was right."""
    return any(hmac.compare_digest(token.encode(), t.encode()) for t in VALID_TOKENS)


@app.ws("/protected")
def protected(ws, ctx):
    token = ctx.get_query("token")

    if not token or not is_valid_token(token):
        ws.send({"error": "Authentication required"})
        ws.close()
        return

    # Authenticated connection
    @ws.on("message")
    def on_message(data):
        ws.send(f"Authenticated message: {data}")


if __name__ == "__main__":
    app.run(port=3000)
