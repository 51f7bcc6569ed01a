"""A small Redis client for the backplane: RESP over an asyncio transport, parsed by hiredis.

Why not redis-py's asyncio client: the backplane's hot paths are one PUBLISH per
broadcast and one pub/sub message per broadcast received. redis-py runs a
coroutine per command and a task-driven ``get_message`` loop per message; here a
publish is a few bytes appended to a buffer written once per loop iteration,
and a received message is parsed by hiredis's C reader inside ``data_received``
and handed on in the same callback. What redis-py would add (pools, cluster
mode, every command) the backplane does not use. hiredis is the parser redis-py
itself uses when it is installed.

``Link`` is one connection. Commands are pipelined: each ``command`` queues its
reply's future in order; ``send`` queues a command whose reply is read and
dropped. A link in subscriber mode hands every pushed message to ``on_push``.
Nothing here logs or raises the password: ``RedisURL.safe`` is what may be shown.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl as _ssl
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import parse_qs, unquote

from fastws.cluster.link_base import BatchedLink, client_tls, split_url
from fastws.errors import RedisError

try:
    import hiredis
except ImportError:     # pragma: no cover - a broken install; backplane() says so
    hiredis = None

__all__ = ["RedisURL", "Link", "Pending", "RedisError", "cluster_seeds", "parse_url"]

log = logging.getLogger("fastws.backplane")


@dataclass(frozen=True)
class RedisURL:
    """Where Redis is, parsed from ``redis://[user:password@]host[:port][/db]``
    or ``rediss://`` (TLS). ``safe`` is the URL with the password masked."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    tls: bool
    tls_verify: bool
    tls_ca: str | None
    safe: str

    def ssl_context(self) -> _ssl.SSLContext | None:
        """The client TLS context for ``rediss://`` (None for plain)."""
        return client_tls(self.tls_ca, self.tls_verify) if self.tls else None


def parse_url(url: str, schemes: tuple[str, ...] = ("redis", "rediss")) -> RedisURL:
    """Parse a Redis URL. Query options: ``ssl_cert_reqs=none`` (do not verify
    the server's certificate), ``ssl_ca_certs=PATH`` (trust this CA file).
    ``schemes``: those accepted (a Redis Cluster's are ``redis+cluster`` and
    ``rediss+cluster``)."""
    parts, host, port = split_url(url, schemes, 6379)
    path = parts.path.strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise ValueError(f"backplane URL: the path must be a database number, got {path!r}") from None
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if password is None and username is not None and ":" not in parts.netloc.split("@")[0]:
        # redis://secret@host: a lone user part is the password (as redis-cli -u reads it).
        username, password = None, username
    auth = ""
    if username or password is not None:
        auth = (f"{username}:" if username else ":") + "***@" if password is not None else f"{username}@"
    shown_host = f"[{host}]" if ":" in host else host
    safe = f"{parts.scheme}://{auth}{shown_host}:{port}/{db}"
    return RedisURL(host=host, port=port, db=db, username=username or None, password=password,
                    tls=parts.scheme.startswith("rediss"),
                    tls_verify=query.get("ssl_cert_reqs", "required").lower() != "none",
                    tls_ca=query.get("ssl_ca_certs"), safe=safe)


def cluster_seeds(url: str) -> list[RedisURL]:
    """The seed nodes of ``redis+cluster://[user:password@]host:port,host:port``
    (``rediss+cluster://`` for TLS): items after the first may leave out the
    scheme and credentials, which they take from the first; a query (TLS
    options) anywhere applies to all."""
    items = [u.strip() for u in url.split(",") if u.strip()]
    if not items:
        raise ValueError("backplane needs a Redis Cluster URL")
    query = ""
    for i, item in enumerate(items):
        if "?" in item:
            item, query = item.split("?", 1)
            items[i] = item
    first = items[0]
    scheme, rest = first.split("://", 1) if "://" in first else ("", first)
    if scheme not in ("redis+cluster", "rediss+cluster"):
        raise ValueError("a Redis Cluster backplane URL starts with redis+cluster:// or "
                         "rediss+cluster://")
    userinfo = rest.rsplit("@", 1)[0] + "@" if "@" in rest else ""
    seeds = []
    for item in items:
        full = item if "://" in item else f"{scheme}://{userinfo}{item}"
        if query:
            full += "?" + query
        seed = parse_url(full, ("redis+cluster", "rediss+cluster"))
        if seed.db:
            raise ValueError(f"backplane: Redis Cluster has only database 0, got {seed.safe}")
        seeds.append(seed)
    return seeds


_DROP = object()      # a reply nobody waits for


class Pending:
    """A command whose reply is handed to ``on_reply(reply)`` from the read
    callback itself (a RedisError for an error reply or a lost link): no
    future, no loop callback per reply, for commands sent once per message."""

    __slots__ = ()

    def on_reply(self, reply: Any) -> None:
        raise NotImplementedError


class Link(BatchedLink):
    """One Redis connection: pipelined commands, or pub/sub pushes.

    ``on_push(reply)`` receives every reply that answers no queued command
    (the messages of a subscriber link); ``on_lost(exc)`` is called once when
    the connection is gone.
    """

    def __init__(self, on_push: Callable[[list], None] | None = None,
                 on_lost: Callable[[Exception | None], None] | None = None) -> None:
        super().__init__()
        self._reader = hiredis.Reader(notEnoughData=False)
        self._waiting: collections.deque[Any] = collections.deque()
        self.on_push = on_push
        self.on_lost = on_lost

    # ------------------------------------------------------------------ connecting

    @classmethod
    async def open(cls, url: RedisURL, timeout: float, **kw: Any) -> Link:
        """Connect, authenticate and select the database, within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        link = cls(**kw)
        try:
            await asyncio.wait_for(link._open(loop, url), timeout)
        except asyncio.TimeoutError:
            link.close()
            raise RedisError(f"no answer from {url.safe} within {timeout:g}s") from None
        except OSError as exc:
            link.close()
            raise RedisError(f"cannot connect to {url.safe}: {exc.strerror or exc}") from None
        except BaseException:
            link.close()
            raise
        return link

    async def _open(self, loop: asyncio.AbstractEventLoop, url: RedisURL) -> None:
        await loop.create_connection(lambda: self, url.host, url.port, ssl=url.ssl_context(),
                                     server_hostname=url.host if url.tls else None)
        try:
            if url.password is not None:
                args = ("AUTH", url.username, url.password) if url.username else ("AUTH", url.password)
                try:
                    await self.command(*args)
                except RedisError as exc:
                    # Redis's own message (WRONGPASS, NOAUTH) never contains the password.
                    raise RedisError(f"refused the credentials: {exc}") from None
            if url.db:
                await self.command("SELECT", url.db)
        except RedisError as exc:
            # Name the server (password masked) as the connect errors do: with
            # several backplanes or environments, "ERR DB index is out of range"
            # alone does not say which URL to fix.
            raise RedisError(f"{url.safe}: {exc}") from None

    # ------------------------------------------------------------------ commands

    def command(self, *args: Any) -> asyncio.Future:
        """Send a command; the future gets its reply (RedisError for an error reply)."""
        fut = self._loop.create_future() if self._loop is not None else \
            asyncio.get_running_loop().create_future()
        if self.closed:
            fut.set_exception(RedisError("the Redis connection is closed"))
            return fut
        self._waiting.append(fut)
        self.write(hiredis.pack_command(args))
        return fut

    def call(self, pending: Pending, *args: Any) -> None:
        """Send a command; ``pending.on_reply`` gets its reply."""
        if self.closed:
            pending.on_reply(RedisError("the Redis connection is closed"))
            return
        self._waiting.append(pending)
        self.write(hiredis.pack_command(args))

    def call_parts(self, pending: Pending, parts: tuple[bytes, ...], size: int) -> None:
        """Send an already encoded command (``parts``, ``size`` bytes, copied
        only by the write); ``pending.on_reply`` gets its reply."""
        if self.closed:
            pending.on_reply(RedisError("the Redis connection is closed"))
            return
        self._waiting.append(pending)
        self.write_parts(parts, size)

    def send(self, *args: Any) -> None:
        """Send a command whose reply is read and dropped (errors included)."""
        if self.closed:
            return
        self._waiting.append(_DROP)
        self.write(hiredis.pack_command(args))

    def push_only(self, *args: Any) -> None:
        """Send a command with no reply to wait for: answered by pushes
        (SUBSCRIBE on a subscriber link), or on a link told ``CLIENT REPLY OFF``."""
        if not self.closed:
            self.write(hiredis.pack_command(args))

    def _error(self, text: str) -> Exception:
        return RedisError(f"the Redis connection was {text}")

    def _fail(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, collections.deque()
        for fut in waiting:
            if fut is _DROP:
                continue
            if isinstance(fut, Pending):
                fut.on_reply(exc)
            elif not fut.done():
                fut.set_exception(exc)

    # ------------------------------------------------------------------ asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        waiting = self._waiting
        on_push = self.on_push
        if on_push is not None and not waiting:
            # A subscriber's steady state: every reply is a push.
            try:
                reply = reader.gets()
                while reply is not False:
                    on_push(reply)
                    if self.closed:
                        return      # the handler dropped the link: the rest is not ours
                    reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._protocol_error(exc)
            return
        while True:
            try:
                reply = reader.gets()
            except hiredis.ProtocolError as exc:
                self._protocol_error(exc)
                return
            if reply is False:
                return
            if type(reply) is list and self.on_push is not None and \
                    (not waiting or reply[0] in _PUSH_KINDS):
                self.on_push(reply)
                if self.closed:
                    return
                continue
            if not waiting:
                continue        # an answer nobody asked for (cannot happen with Redis)
            fut = waiting.popleft()
            if fut is _DROP:
                continue
            if isinstance(fut, Pending):
                try:
                    fut.on_reply(RedisError(str(reply)) if isinstance(reply, hiredis.ReplyError)
                                 else reply)
                except Exception:
                    # The replies after it are still theirs: the read goes on.
                    log.exception("backplane: a handler of a Redis reply raised")
                continue
            if fut.done():
                continue
            if isinstance(reply, hiredis.ReplyError):
                fut.set_exception(RedisError(str(reply)))
            else:
                fut.set_result(reply)

    def _protocol_error(self, exc: Exception) -> None:
        self._fail(RedisError(f"bad reply from Redis: {exc}"))
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        was_closed = self.closed
        self.closed = True
        self._fail(RedisError("the connection to Redis was lost"))
        if self.on_lost is not None and not was_closed:
            self.on_lost(exc)


# What a subscriber link receives without asking: messages and (un)subscribe
# confirmations, of classic and of sharded (Redis Cluster) pub/sub.
_PUSH_KINDS = frozenset((b"message", b"subscribe", b"unsubscribe", b"pong",
                         b"smessage", b"ssubscribe", b"sunsubscribe"))
