"""Shared start-up for the Python peer servers: port from argv, descriptor limit,
and the JSON chat reply every hand-written chat route builds the same way."""
from __future__ import annotations

import json
import os
import resource
import sys
from datetime import datetime, timezone

HOST = "127.0.0.1"

#: BENCH_COMPRESSION=1 in the environment turns permessage-deflate on, with the
#: server's own defaults (bench/compare.py --modes fanout-deflate sets it).
COMPRESSION = os.environ.get("BENCH_COMPRESSION") == "1"


def port_from_argv() -> int:
    """Return the TCP port given as the first command-line argument."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} PORT")
    return int(sys.argv[1])


def raise_nofile_limit() -> None:
    """Lift the soft descriptor limit to the hard one: a 10k-connection run needs it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds, like JS toISOString()
    (the seed's chat example stamps every message this way)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def chat_reply(user: str, data: str | bytes) -> str | None:
    """The /chat/<room> work of a peer without JSON events, written out by hand: parse
    the client's ``{"type": "message", "content": ...}``, build the chat dict and
    serialize it once for the whole room. None for anything that is not such an event."""
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("type") != "message":
        return None
    # Compact separators, no ASCII escaping: what fastws's default serializer writes.
    return json.dumps({"user": user, "message": event.get("content"), "timestamp": now_iso()},
                      separators=(",", ":"), ensure_ascii=False)
