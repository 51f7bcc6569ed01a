"""A small NATS client for the backplane: the core protocol over an asyncio transport.

Why not nats-py here: the backplane's hot paths are one publish per broadcast
and one message per broadcast received. nats-py's ``publish`` is a coroutine
(a broadcast is a synchronous call: each publish would need a task of its
own), and each subscription with a callback runs a task fed by a queue, so a
received message costs a queue put, a task switch and a ``Msg`` object before
the room sees it (``bench/nats_link.py`` measures both ways). Here a publish
is a few bytes appended to one write per loop iteration, and a received
message is cut out of the read buffer inside ``data_received`` and handed on
in the same callback. The core protocol is small and stable (INFO, CONNECT,
PUB, HPUB, SUB, UNSUB, MSG, HMSG, PING, PONG, +OK, -ERR); what the backplane
does not use (queue groups, the JetStream client API) is not here: room
history (``fastws.cluster.nats_history``) speaks JetStream's JSON API over
``request``.

Nothing here logs or raises the password or the token: ``NatsURL.safe`` is
what may be shown.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import re
import ssl as _ssl
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

from fastws._version import __version__
from fastws.cluster.link_base import BatchedLink, client_tls, split_url
from fastws.errors import NatsError

__all__ = ["NatsURL", "NatsLink", "NatsError", "parse_nats_url", "subject_token"]

log = logging.getLogger("fastws.backplane")

_LONGEST = 256
_REFUSED_SUB = re.compile(r"Permissions Violation for Subscription to \"?([^\s\"]+)")
#: More than this waiting in the read buffer without a whole protocol line or
#: message in it is a broken (or hostile) server, not a slow one.
_MAX_PENDING = 64 << 20
_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def subject_token(room: str) -> str:
    """``room`` as one subject token: letters, digits, ``_`` and ``-`` as
    they are, every other byte of its UTF-8 as ``=XX`` (``=`` itself
    included), so two rooms never share a subject, and a name with dots,
    spaces, ``*`` or ``>`` stays one token; a token longer than 256
    characters is ``=H`` and the SHA-256 of the name, so a SUB line stays
    well within what NATS reads."""
    data = room.encode()
    if all(b in _SAFE for b in data) and data and len(data) <= _LONGEST:
        return room
    token = "".join(chr(b) if b in _SAFE else f"={b:02X}" for b in data) or "="
    if len(token) > _LONGEST:
        # NATS reads a protocol line of at most 4 KiB: a long name is named by
        # its hash ("=H" never starts an escape, whose two digits are hex).
        token = "=H" + hashlib.sha256(data).hexdigest()
    return token


@dataclass(frozen=True)
class NatsURL:
    """Where NATS is, from ``nats://[user:password@ | token@]host[:port]`` or
    ``tls://`` (``?tls_ca=PATH`` trusts a CA file, ``?tls_verify=none``
    does not check the certificate). Several servers of one NATS cluster:
    ``nats://a:4222,nats://b:4222`` (tried in turn). ``safe`` masks the secret."""

    servers: tuple[tuple[str, int], ...]
    user: str | None
    password: str | None
    token: str | None
    tls: bool
    tls_verify: bool
    tls_ca: str | None
    safe: str
    extra: dict = field(default_factory=dict, compare=False)

    def ssl_context(self) -> _ssl.SSLContext:
        """The client TLS context (used for ``tls://``, or when the server asks for TLS)."""
        return client_tls(self.tls_ca, self.tls_verify)


def parse_nats_url(url: str) -> NatsURL:
    """Parse a NATS URL (several, comma-separated, for one NATS cluster's servers)."""
    servers = []
    user = password = token = None
    tls = False
    query: dict[str, str] = {}
    shown = []
    for one in [u.strip() for u in url.split(",") if u.strip()]:
        parts, host, port = split_url(one, ("nats", "tls"), 4222)
        if parts.path.strip("/"):
            raise ValueError("a NATS backplane URL has no path (the prefix option keeps apps apart)")
        servers.append((host, port))
        tls = tls or parts.scheme == "tls"
        query.update({k: v[-1] for k, v in parse_qs(parts.query).items()})
        auth = ""
        if parts.username is not None and parts.password is not None:
            user, password = unquote(parts.username), unquote(parts.password)
            auth = f"{user}:***@"
        elif parts.username is not None:
            token = unquote(parts.username)     # nats://TOKEN@host, as the NATS CLI reads it
            auth = "***@"
        shown.append(f"{parts.scheme}://{auth}{f'[{host}]' if ':' in host else host}:{port}")
    if not servers:
        raise ValueError("backplane needs a NATS URL")
    return NatsURL(servers=tuple(servers), user=user, password=password, token=token, tls=tls,
                   tls_verify=query.get("tls_verify", "required").lower() != "none",
                   tls_ca=query.get("tls_ca"), safe=",".join(shown))


class NatsLink(BatchedLink):
    """One connection to a NATS server: publishes, subscriptions, PING/PONG.

    ``on_msg(sid, payload)`` receives every MSG (in the read callback), but
    those to ``reply_sid``: ``on_reply(subject, payload)`` takes them (the
    answers to requests, told apart by subject). A message with headers
    (HMSG) is handed on without them. ``on_lost(exc)`` is called once when
    the connection is gone.
    """

    def __init__(self, on_msg: Callable[[int, bytes], None] | None = None,
                 on_lost: Callable[[Exception | None], None] | None = None) -> None:
        super().__init__()
        self.on_msg = on_msg
        self.on_lost = on_lost
        self.reply_sid = 0
        self.on_reply: Callable[[bytes, bytes], None] | None = None
        self._buf = bytearray()
        self._pongs: collections.deque[asyncio.Future] = collections.deque()
        self._info: asyncio.Future | None = None
        self.info: dict[str, Any] = {}
        self.max_payload = 1 << 20
        #: Subjects whose SUB the server refused (a permissions violation).
        self.refused: set[str] = set()
        self._said: set[str] = set()
        self.error: str | None = None       # the server's last -ERR

    # ------------------------------------------------------------------ connecting

    @classmethod
    async def open(cls, url: NatsURL, timeout: float, name: str, **kw: Any) -> NatsLink:
        """Connect to the first server of ``url`` that answers, authenticate,
        and wait for the first PONG (the server accepted CONNECT), within
        ``timeout`` seconds each."""
        failures = []
        for host, port in url.servers:
            link = cls(**kw)
            try:
                await asyncio.wait_for(link._open(url, host, port, name), timeout)
                return link
            except asyncio.TimeoutError:
                failures.append(f"no answer within {timeout:g}s")
            except OSError as exc:
                failures.append(f"cannot connect: {exc.strerror or exc}")
            except NatsError as exc:
                failures.append(str(exc))
            link.on_lost = None
            link.abort()
        raise NatsError(f"{url.safe}: {'; '.join(dict.fromkeys(failures))}")

    async def _open(self, url: NatsURL, host: str, port: int, name: str) -> None:
        loop = asyncio.get_running_loop()
        self._info = loop.create_future()
        await loop.create_connection(lambda: self, host, port)
        info = await self._info
        if url.tls or info.get("tls_required"):
            # NATS says INFO in the clear, then the client upgrades the link.
            transport = await loop.start_tls(self.transport, self, url.ssl_context(),
                                             server_hostname=host)
            self.transport = transport      # type: ignore[assignment]
        connect: dict[str, Any] = {"verbose": False, "pedantic": False, "echo": False,
                                   "lang": "python-fastws", "version": __version__,
                                   "protocol": 1, "headers": True, "no_responders": True, "name": name,
                                   "tls_required": bool(url.tls or info.get("tls_required"))}
        if url.user is not None:
            connect.update(user=url.user, **{"pass": url.password})
        elif url.token is not None:
            connect["auth_token"] = url.token
        self._write(b"CONNECT " + json.dumps(connect).encode() + b"\r\n")
        pong = self.ping()
        try:
            await pong
        except NatsError as exc:
            # The server's -ERR ('Authorization Violation') never holds the secret.
            raise NatsError(f"refused the connection: {exc}") from None

    # ------------------------------------------------------------------ commands

    def ping(self) -> asyncio.Future:
        """PING; the future is done at the PONG (everything sent before it has
        been read by the server, everything it sent before is delivered)."""
        fut = self._loop.create_future()
        if self.closed:
            fut.set_exception(NatsError("the NATS connection is closed"))
            return fut
        self._pongs.append(fut)
        self.write(b"PING\r\n")
        return fut

    def _write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)

    def _error(self, text: str) -> Exception:
        return NatsError(f"the NATS connection was {text}")

    def _fail(self, exc: Exception) -> None:
        pongs, self._pongs = self._pongs, collections.deque()
        for fut in pongs:
            if not fut.done():
                fut.set_exception(exc)
        if self._info is not None and not self._info.done():
            self._info.set_exception(exc)

    # ------------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        end = len(buf)
        on_msg = self.on_msg
        try:
            while pos < end:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if buf.startswith(b"MSG ", pos) or buf.startswith(b"HMSG ", pos):
                    # MSG <subject> <sid> [reply-to] <#bytes>, or
                    # HMSG <subject> <sid> [reply-to] <#header bytes> <#bytes>
                    hmsg = buf[pos] == 72
                    head = bytes(buf[pos + 4 + hmsg:eol]).split()
                    if len(head) not in (3 + hmsg, 4 + hmsg):
                        raise ValueError("a MSG line has 3 or 4 fields, an HMSG line 4 or 5")
                    n, sid = int(head[-1]), int(head[1])
                    skip = int(head[-2]) if hmsg else 0
                    if n < 0 or not 0 <= skip <= n:
                        raise ValueError(f"a MSG of {n} bytes ({skip} of headers)")
                    start = eol + 2
                    if start + n + 2 > end:
                        break       # the payload is still coming
                    if buf[start + n:start + n + 2] != b"\r\n":
                        raise ValueError("a MSG payload not followed by CRLF")
                    payload = bytes(buf[start + skip:start + n])
                    pos = start + n + 2
                    if sid == self.reply_sid and self.on_reply is not None:
                        try:
                            self.on_reply(head[0], payload)
                        except Exception:
                            log.exception("backplane: a NATS reply handler raised")
                        continue
                    if on_msg is not None:
                        try:
                            on_msg(sid, payload)
                        except Exception:
                            # A member's failure must never stop the reader.
                            log.exception("backplane: a NATS message handler raised")
                    continue
                line = bytes(buf[pos:eol])
                pos = eol + 2
                self._control(line)
        except (ValueError, IndexError, TypeError, AttributeError, OverflowError,
                RecursionError) as exc:
            self._protocol_error(f"bad protocol line from NATS: {exc}")
            return
        del buf[:pos]
        if len(buf) > max(_MAX_PENDING, self.max_payload + 4096):
            self._protocol_error(f"NATS sent {len(buf)} bytes without a whole line or message")

    def _control(self, line: bytes) -> None:
        if line == b"PING":
            self.write(b"PONG\r\n")
        elif line == b"PONG":
            self.error = None       # alive after it: that -ERR did not end the link
            if self._pongs:
                fut = self._pongs.popleft()
                if not fut.done():
                    fut.set_result(None)
        elif line.startswith(b"INFO "):
            info = json.loads(line[5:])
            if not isinstance(info, dict):
                raise ValueError("INFO is not a JSON object")
            self.info = info
            self.max_payload = int(info.get("max_payload") or self.max_payload)
            if self._info is not None and not self._info.done():
                self._info.set_result(self.info)
        elif line.startswith(b"-ERR"):
            # Most -ERRs end the connection (the server closes it, and
            # connection_lost fails what waits, with this text); a few
            # (a permissions violation) leave it open, and its PONGs still come.
            self.error = line[4:].strip().strip(b"'").decode("utf-8", "replace")
            refused = _REFUSED_SUB.match(self.error)
            if refused:
                self.refused.add(refused.group(1))
            if self.error not in self._said:
                if len(self._said) < 64:        # each text once: a refused publish repeats
                    self._said.add(self.error)
                log.warning("backplane: NATS said: %s", self.error)
        elif line in (b"+OK", b""):
            pass
        else:
            raise ValueError(f"unknown line {line[:40]!r}")

    def _protocol_error(self, text: str) -> None:
        log.warning("backplane: %s", text)
        self._fail(NatsError(text))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        was_closed = self.closed
        self.closed = True
        self._fail(NatsError(self.error or "the connection to NATS was lost"))
        if self.on_lost is not None and not was_closed:
            self.on_lost(exc)
