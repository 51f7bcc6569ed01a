"""Access logs: one line per HTTP request, per answered upgrade and per WebSocket close.

Lines go to the ``fastws.access`` logger at INFO, and every field is also on the
record as ``extra`` (``client``, ``method``, ``path``, ``query``, ``status``,
``duration_ms``, and for closes ``code``, ``closed_by``, ``messages_in``,
``messages_out``, ``bytes_in``, ``bytes_out``), so ``JsonFormatter`` (or any
formatter that reads record attributes) sees them. Query values whose names are
in ``REDACT`` (or the list given) are replaced by ``***``: the WebSocket plugin's
own authentication example passes ``?token=``. Nothing here runs per message:
with the access log off (the default) the server holds no ``AccessLog`` at all.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote

__all__ = ["AccessLog", "JsonFormatter", "REDACT", "redact_query"]

log = logging.getLogger("fastws.access")

#: Query parameter names whose values never reach a log line (case-insensitive).
REDACT = frozenset({"token", "access_token", "refresh_token", "id_token", "auth", "authorization",
                    "password", "passwd", "pwd", "secret", "client_secret", "api_key", "apikey",
                    "key", "session", "sessionid", "sig", "signature", "jwt", "code"})


def redact_query(query: str, names: frozenset[str] = REDACT) -> str:
    """``query`` with the values of ``names`` replaced by ``***``."""
    if not query:
        return ""
    out = []
    for k, v in parse_qsl(query, keep_blank_values=True):
        shown = "***" if k.lower() in names else quote(v, safe="")
        out.append(f"{quote(k, safe='')}={shown}")
    return "&".join(out)


# What a client sends (its path, a method, an address a proxy passed on) is
# written into the line with quotes, backslashes and anything not printable
# escaped, as nginx does: a client must not be able to end a field or a line.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f)}
_ESCAPES.update({ord('"'): '\\"', ord("\\"): "\\\\"})


def escape(text: str) -> str:
    """``text`` safe to put between quotes on one log line."""
    if text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return "".join(_ESCAPES.get(ord(ch), ch) if ch.isprintable() or ord(ch) in _ESCAPES
                   else f"\\u{ord(ch):04x}" for ch in text)


def client_text(remote: Any) -> str:
    """The client address as log lines show it: ``host:port``, a Unix socket's
    name, or ``-`` when unknown (escaped, as it may come from a proxy header)."""
    if isinstance(remote, tuple) and remote:
        return escape(f"{remote[0]}:{remote[1]}" if len(remote) > 1 and remote[1] else str(remote[0]))
    return "-" if not remote else escape(str(remote))


class AccessLog:
    """Writes the access lines of one server."""

    def __init__(self, redact: Iterable[str] | None = None) -> None:
        self.redact = frozenset(n.lower() for n in redact) if redact is not None else REDACT

    def _target(self, path: str, query: str) -> tuple[str, str]:
        q = redact_query(query, self.redact)
        return (f"{path}?{q}" if q else path), q

    def request(self, ctx: Any, status: int, started: float) -> None:
        """An HTTP request answered with ``status``."""
        target, q = self._target(ctx.path, ctx.raw_query)
        ms = (time.monotonic() - started) * 1000
        client = client_text(ctx.remote)
        log.info('%s - "%s %s HTTP/%s" %d %.1fms', client, escape(ctx.method), escape(target),
                 ctx.http_version, status, ms, extra={"client": client, "method": ctx.method, "path": ctx.path,
                                    "query": q, "status": status, "duration_ms": round(ms, 3),
                                    "kind": "http"})

    def upgrade(self, ctx: Any, status: int, started: float) -> None:
        """An upgrade request answered: 101, or the refusal's status."""
        target, q = self._target(ctx.path, ctx.raw_query)
        ms = (time.monotonic() - started) * 1000
        client = client_text(ctx.remote)
        log.info('%s - "WebSocket %s" %d handshake %.1fms', client, escape(target), status, ms,
                 extra={"client": client, "method": "GET", "path": ctx.path, "query": q,
                        "status": status, "duration_ms": round(ms, 3), "kind": "upgrade"})

    def closed(self, ws: Any) -> None:
        """A WebSocket's end: code, who closed, how long, what went each way."""
        ctx = ws.ctx
        stats = ws.stats
        target, q = self._target(ctx.path, ctx.raw_query) if ctx is not None else ("-", "")
        client = client_text(ctx.remote if ctx is not None else ws.remote_address)
        code = ws.close_code
        by = stats["closed_by"] or "nobody (connection lost)"
        log.info('%s - "WebSocket %s" closed %s by %s after %.1fs; in %d msg %d B, out %d msg %d B',
                 client, escape(target), code, by, stats["seconds"], stats["messages_in"],
                 stats["bytes_in"], stats["messages_out"], stats["bytes_out"],
                 extra={"client": client, "path": ctx.path if ctx is not None else None,
                        "query": q, "code": code, "closed_by": stats["closed_by"],
                        "duration_ms": round(stats["seconds"] * 1000, 3),
                        "messages_in": stats["messages_in"], "messages_out": stats["messages_out"],
                        "bytes_in": stats["bytes_in"], "bytes_out": stats["bytes_out"],
                        "kind": "close"})


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and every
    ``extra`` field of the record (``--log-format json``).

    ``time`` is RFC 3339 in UTC with milliseconds, ``2026-12-06T22:55:09.123+00:00``:
    lines from hosts in different zones sort and join as written, and two lines
    of one connection within a second keep their order. The ``+00:00`` form
    (not ``Z``) is what ``datetime.fromisoformat`` reads on every Python fastws
    supports.
    """

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds")
        out: dict[str, Any] = {"time": stamp,
                               "level": record.levelname, "logger": record.name,
                               "message": record.getMessage()}
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
