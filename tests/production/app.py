"""The app the production tests serve through the real CLI (``fastws tests.production.app:app``).

PROD_HOOKS=path: startup and shutdown hooks append a line there;
PROD_FAIL_STARTUP=1: the second startup hook raises.
"""

from __future__ import annotations

import asyncio
import os

from fastws import create_app, websocket

app = create_app()
app.use(websocket())
VERSION = "1"


def _note(line: str) -> None:
    path = os.environ.get("PROD_HOOKS")
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


@app.on_startup
def first():
    _note("startup 1")


@app.on_startup
async def second():
    await asyncio.sleep(0)
    if os.environ.get("PROD_FAIL_STARTUP") == "1":
        raise RuntimeError("the database is not there")
    _note("startup 2")


@app.on_shutdown
async def goodbye():
    _note("shutdown")


@app.ws("/ws")
def ws_route(ws, ctx):
    addr = ws.remote_address
    ws.send(f"{addr[0] if isinstance(addr, tuple) else 'unix'} {ctx.scheme}")
    ws.on("message", ws.send)


@app.get("/whoami")
def whoami(ctx):
    remote = ctx.remote
    return ctx.json({"client": remote[0] if isinstance(remote, tuple) else "unix",
                     "scheme": ctx.scheme})


@app.get("/version")
def version(ctx):
    return ctx.text(VERSION)


def make_app():
    """For --factory."""
    return app
