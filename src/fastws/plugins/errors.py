"""``error_handler()``: unhandled exceptions become JSON error responses."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fastws.http.context import Context, HTTPError, Response

if TYPE_CHECKING:
    from fastws.app import App

__all__ = ["error_handler"]

log = logging.getLogger("fastws")


class ErrorHandlerPlugin:
    """Answers ``HTTPError`` with its status and anything else with a 500,
    both as ``{"error": message}``; tracebacks go to the log, never the client."""

    def install(self, app: App) -> None:
        """Make this the app's handler for exceptions from routes and middleware."""
        app.error_responder = self.respond

    @staticmethod
    def respond(ctx: Context, exc: BaseException) -> Response:
        """The response for ``exc`` raised while handling ``ctx``."""
        if isinstance(exc, HTTPError):
            return ctx.json({"error": exc.message}, status=exc.status, headers=exc.headers)
        log.error("unhandled exception in %s %s", ctx.method, ctx.path, exc_info=exc)
        return ctx.json({"error": "Internal Server Error"}, status=500)


def error_handler() -> ErrorHandlerPlugin:
    """The error-handling plugin: ``app.use(error_handler())``."""
    return ErrorHandlerPlugin()
