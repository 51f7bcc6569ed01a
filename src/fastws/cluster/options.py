"""``BackplaneOptions``: the settings of the Redis backplane, their defaults and
their validation (a bad URL or value fails when ``backplane()`` is called, not
when the server starts)."""

from __future__ import annotations

from dataclasses import dataclass

from fastws.cluster.nats_link import parse_nats_url
from fastws.cluster.redis_link import cluster_seeds, parse_url

__all__ = ["BackplaneOptions"]


@dataclass(frozen=True)
class BackplaneOptions:
    """Settings of the backplane (Redis or NATS), with their defaults.

    url: ``redis://[user:password@]host[:port][/db]``, or ``rediss://`` for TLS
        (query ``ssl_ca_certs=PATH`` to trust a CA file, ``ssl_cert_reqs=none``
        not to verify). The password never appears in a log line or an error.
        Several URLs, comma-separated (``backplane()`` also takes a list),
        shard rooms over that many Redis instances by a jump hash of the
        room name: every node must be given the same list, in the same order.
        Or a Redis Cluster: ``redis+cluster://[user:password@]host:port,host:port``
        (``rediss+cluster://`` for TLS): some of its nodes, from which the
        slot map is read; pub/sub is sharded (Redis 7). Or NATS: ``nats://[user:password@ | token@]host[:port]`` (``tls://``
        for TLS; several servers of one NATS cluster comma-separated).

    prefix: the start of every key and channel name (default "fastws"); apps
        sharing one Redis keep apart by prefix.

    connect_timeout: seconds to connect and authenticate (default 5); at
        start, failing to reach Redis within it stops the server from starting.

    presence_ttl: seconds after which a node that stopped refreshing its
        liveness key drops out of ``cluster.room_size`` and ``rooms`` (default 15).

    probe_interval / probe_timeout: every probe_interval seconds (default 5)
        the node publishes a probe to itself; if it is not back within
        probe_timeout seconds (default 3) the link is taken for dead and reconnected.

    unsubscribe_linger: seconds a room's channel stays subscribed after its
        last local member left (default 2).

    max_backoff: longest wait, in seconds, between reconnection attempts
        (default 5; attempts start at 0.1 s, doubling, with full jitter).

    max_buffered: bytes of publishes that may wait for Redis to read them
        (default 16 MiB); past it, further cross-node publishes are dropped and
        counted until Redis catches up.
    """

    url: str
    prefix: str = "fastws"
    connect_timeout: float = 5.0
    presence_ttl: float = 15.0
    probe_interval: float = 5.0
    probe_timeout: float = 3.0
    unsubscribe_linger: float = 2.0
    max_backoff: float = 5.0
    max_buffered: int = 16 << 20

    @property
    def urls(self) -> list[str]:
        """The instances' URLs, in order (one without sharding)."""
        return [u.strip() for u in self.url.split(",") if u.strip()]

    @property
    def engine(self) -> str:
        """"nats" for a ``nats://`` or ``tls://`` URL, "redis-cluster" for
        ``redis+cluster://`` or ``rediss+cluster://``, else "redis"."""
        url = self.url.lstrip()
        if url.startswith(("nats://", "tls://")):
            return "nats"
        if url.startswith(("redis+cluster://", "rediss+cluster://")):
            return "redis-cluster"
        return "redis"

    def __post_init__(self) -> None:
        if self.engine == "nats":
            parse_nats_url(self.url)
            self._check_values()
            return
        if self.engine == "redis-cluster":
            cluster_seeds(self.url)
            if "{" in self.prefix or "}" in self.prefix:
                raise ValueError(f"backplane prefix must not contain {{ or }} with Redis Cluster "
                                 f"(they make hash tags), got {self.prefix!r}")
            self._check_values()
            return
        urls = self.urls
        if not urls:
            raise ValueError("backplane needs a Redis URL")
        seen = set()
        for u in urls:      # a bad URL fails when the plugin is made
            parsed = parse_url(u)
            where = (parsed.host, parsed.port, parsed.db)
            if where in seen:
                raise ValueError(f"backplane: {parsed.safe} is listed twice")
            seen.add(where)
        self._check_values()

    def _check_values(self) -> None:
        for name in ("connect_timeout", "presence_ttl", "probe_interval", "probe_timeout",
                     "max_backoff"):
            if not getattr(self, name) > 0:
                raise ValueError(f"backplane {name} must be > 0, got {getattr(self, name)!r}")
        if self.unsubscribe_linger < 0:
            raise ValueError(f"backplane unsubscribe_linger must be >= 0, got {self.unsubscribe_linger!r}")
        if self.max_buffered < 1:
            raise ValueError(f"backplane max_buffered must be >= 1, got {self.max_buffered!r}")
        if not self.prefix or any(c in self.prefix for c in " \r\n"):
            raise ValueError(f"backplane prefix must be a non-empty name without spaces, got {self.prefix!r}")
