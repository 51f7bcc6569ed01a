"""The app of the cluster recovery tests (``fastws tests.cluster.recovery_app:app``
in child processes, or ``make_app`` in the test's own): rooms with history in
the backplane's Redis.

Environment: FASTWS_BACKPLANE (the Redis URL), CLUSTER_PREFIX (this test's keys
and channels), HISTORY_SIZE (default 5000). A fastws.v1 client joins room R on
/feed/R. ``POST /publish/R`` broadcasts ``{"n": <body>}``
with ``await app.publish`` and answers 200 once Redis has numbered it (so
messages answered one after another reach clients in that order, whichever
worker took them), 503 while Redis is unreachable.
``GET /history/R`` is ``app.history(R)``.
"""

from __future__ import annotations

import os
from typing import Any

from fastws import BackplaneError, backplane, create_app, websocket


def make_app(url: str | None = None, prefix: str | None = None, **options: Any) -> Any:
    """The app, on the backplane at ``url`` (default FASTWS_BACKPLANE)."""
    settings = {"history_size": int(os.environ.get("HISTORY_SIZE", "5000")), "ping_interval": 0.5}
    settings.update(options)
    app = create_app()
    app.use(websocket(**settings))
    app.use(backplane(url or os.environ["FASTWS_BACKPLANE"],
                      prefix=prefix or os.environ.get("CLUSTER_PREFIX", "fastws-test"),
                      probe_interval=1.0, probe_timeout=1.0))

    @app.ws("/feed/:room")
    def feed(ws, ctx):
        ws.join(ctx.params["room"])
        ws.on("message", lambda text: ws.broadcast(ctx.params["room"], text))

    @app.post("/publish/:room")
    async def publish(ctx):
        n = int(await ctx.body())
        try:
            epoch, offset = await app.publish(ctx.params["room"], {"n": n})
            return {"epoch": epoch, "offset": offset}
        except BackplaneError as exc:
            return ctx.json({"error": str(exc)}, status=503)

    @app.get("/history/:room")
    async def history(ctx):
        return [[m.epoch, m.offset, m.data] for m in await app.history(ctx.params["room"])]

    return app


app = make_app() if os.environ.get("FASTWS_BACKPLANE") else None
