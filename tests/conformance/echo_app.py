"""The echo server the Autobahn cases (run by kosoku) are played against.

Text comes back as text and binary as binary, byte for byte; JSON events are
off so a text message that happens to be JSON is echoed, not dispatched.

Serve it with the CLI (``python -m fastws tests.conformance.echo_app:app
--port 9001``) or with ``python -m tests.conformance.echo_app [--port P]
[--until-stdin-eof]``, which binds 127.0.0.1 (a free port by default), prints
``PORT <n>`` on stdout and serves until SIGTERM or SIGINT, or, with
``--until-stdin-eof``, until its stdin closes: a test that starts it as a
subprocess with a pipe on stdin never leaves it behind.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from fastws import WebSocket, create_app, websocket
from fastws.deflate.permessage import DeflateOptions
from fastws.serve.server import new_event_loop

__all__ = ["app", "MAX_MESSAGE", "main"]

# Section 9 sends messages of up to 16 MiB; a little headroom over that keeps
# a real limit in place (Autobahn has no case just above it).
MAX_MESSAGE = 16 * 2**20 + 1024

app = create_app()
# A 16 MiB echo sits in the send buffer while kosoku reads it, so the
# backpressure limit must hold a whole echoed message. Compression is on so
# sections 12-13 (permessage-deflate) are played; the other sections offer
# no extension, so they run uncompressed as before.
app.use(websocket(max_message_size=MAX_MESSAGE, max_backpressure=2 * MAX_MESSAGE,
                  json_events=False,
                  # Every echo compressed, whatever its size: the cases then
                  # test our deflate on every message (and kosoku 0.1.0
                  # raises on uncompressed text echoes in 12.*/13.*).
                  compression=DeflateOptions(compress_min_size=0)))


@app.ws("/")
def echo(ws: WebSocket) -> None:
    """Send every message back as it came."""
    ws.on("message", ws.send)


async def _serve_until_stopped(port: int, until_stdin_eof: bool) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if until_stdin_eof:
        # The parent holds the other end of the pipe: EOF means it is gone.
        stdin = sys.stdin.fileno()
        loop.add_reader(stdin, lambda: sys.stdin.buffer.raw.read(4096) or stop.set())
    server = await app.serve("127.0.0.1", port)
    print(f"PORT {server.port}", flush=True)
    await stop.wait()
    if until_stdin_eof:
        loop.remove_reader(stdin)
    await server.shutdown(2.0)


def main(argv: list[str] | None = None) -> int:
    """Serve the echo app on 127.0.0.1 until stopped (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m tests.conformance.echo_app",
                                     description="fastws echo server for the Autobahn cases")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--until-stdin-eof", action="store_true",
                        help="also stop when stdin reaches end of file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve_until_stopped(args.port, args.until_stdin_eof))
    finally:
        loop.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
