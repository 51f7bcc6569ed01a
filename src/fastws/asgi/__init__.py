"""fastws.asgi."""
