"""Rooms sharded over several Redis instances (``backplane("redis://a,redis://b")``).

One Redis's pub/sub runs on one thread: past what that thread delivers, the
rooms are spread over several instances. A room lives on one instance, chosen
by a jump consistent hash of its name (Lamping and Veach, the scheme
Centrifugo shards Redis by): its channel, its history stream and hash, and the
node's presence entry for it are all on that instance. ``ShardedRelay`` is the
registry's relay, like ``RedisRelay``, and hands each room to the
``RedisRelay`` of its instance; each of those connects, probes, reconnects and
resubscribes on its own, so an instance that goes down stops only its rooms
from crossing nodes (local delivery goes on everywhere; the other rooms never
notice).

Every node must be given the same list in the same order (the hash maps a
room to a position in the list). Each node writes a fingerprint of its list
on every instance with its heartbeat and compares the others': a node whose
list differs is logged and counted (``ring_mismatches``). Adding an instance
at the end moves about 1/N of the rooms (that is what a jump hash promises);
a moved room's channel is on its new instance. Each instance counts the list
changes it has seen (``relay._RING_SCRIPT``) and the history scripts stamp
every room with that count: after a change every room with history there
starts a new epoch, so a client that recovers across a move is told
``recovered: false`` rather than handed a partial replay.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Callable

from fastws.cluster.options import BackplaneOptions
from fastws.cluster.redis_link import parse_url
from fastws.cluster.relay import ManyRelays, RedisRelay, ring_fingerprint
from fastws.cluster.history import ShardedHistory
from fastws.cluster.relay_base import fire
from fastws.errors import BackplaneError

if TYPE_CHECKING:
    from fastws.runtime.hub import Hub

__all__ = ["ShardedRelay", "ShardedHistory", "jump_hash", "make_relay", "shard_of"]

log = logging.getLogger("fastws.backplane")

_CACHE_MAX = 1 << 16


def jump_hash(key: int, buckets: int) -> int:
    """Lamping and Veach's jump consistent hash: the bucket of a 64-bit
    ``key`` among ``buckets``; growing the count moves only 1/n of the keys."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_of(room: str, shards: int) -> int:
    """The instance (index in the list) that ``room`` lives on."""
    key = int.from_bytes(hashlib.blake2b(room.encode(), digest_size=8).digest(), "little")
    return jump_hash(key, shards)


class ShardedRelay(ManyRelays):
    """The registry's relay over several Redis instances: each room on one,
    each instance its own ``RedisRelay`` (links, probe, reconnects)."""

    def __init__(self, hub: Hub, options: BackplaneOptions,
                 handlers: dict[str, list[Callable[[], Any]]] | None = None) -> None:
        self._init_node(hub, options, handlers)
        urls = options.urls
        parsed = [parse_url(u) for u in urls]
        self.ring = ring_fingerprint(parsed)
        self._count = len(urls)
        self._index: dict[str, int] = {}
        self._down: set[int] = set()
        seen: dict[str, str] = {}
        self.shards = [
            RedisRelay(hub, options, {"lost": [lambda i=i: self._shard_lost(i)],
                                      "restored": [lambda i=i: self._shard_restored(i)]},
                       url=u, node=self._nid, owns=lambda room, i=i: self.index(room) == i,
                       ring=self.ring, seen_rings=seen)
            for i, u in enumerate(urls)]
        self.max_payload = self.shards[0].max_payload
        #: Room history, each room's on its instance, or None.
        self.history: ShardedHistory | None = None
        if hub.options.history_size:
            self.history = ShardedHistory(self, hub.options.history_rooms)

    def __repr__(self) -> str:
        up = self._count - len(self._down)
        return f"<ShardedRelay node {self.node_id} {up}/{self._count} instances up>"

    @property
    def url(self) -> Any:
        """Where the first instance is (as ``RedisRelay.url``; each shard has its own)."""
        return self.shards[0].url

    def index(self, room: str) -> int:
        """The position, in the instance list, of the instance ``room`` lives on."""
        i = self._index.get(room)
        if i is None:
            i = shard_of(room, self._count)
            if len(self._index) >= _CACHE_MAX:
                self._index.clear()     # bounded: rooms come and go
            self._index[room] = i
        return i

    def shard(self, room: str) -> RedisRelay:
        """The relay of the instance ``room`` lives on."""
        return self.shards[self.index(room)]

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Connect to every instance (BackplaneError naming the one that fails:
        a node that cannot reach one of its instances does not start, as a
        node that cannot reach its one Redis does not)."""
        results = await asyncio.gather(*[s.start() for s in self.shards], return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await asyncio.gather(*[s.stop() for s in self.shards], return_exceptions=True)
            raise failed[0]
        log.info("backplane: node %s sharding rooms over %d Redis instances (list %s)",
                 self.node_id, self._count, self.ring)

    async def stop(self) -> None:
        """Leave the cluster on every instance."""
        await asyncio.gather(*[s.stop() for s in self.shards], return_exceptions=True)

    @property
    def connected(self) -> bool:
        """True while every instance is reachable."""
        return all(s.connected for s in self.shards)

    @property
    def stats(self) -> dict[str, int]:
        """Every instance's counters summed, and how many instances are up."""
        out: dict[str, int] = {}
        for s in self.shards:
            for k, v in s.stats.items():
                out[k] = out.get(k, 0) + v
        out["instances"] = self._count
        out["instances_up"] = sum(1 for s in self.shards if s.connected)
        return out

    def _shard_lost(self, i: int) -> None:
        first = not self._down
        self._down.add(i)
        if first:
            self._fire("lost")

    def _shard_restored(self, i: int) -> None:
        self._down.discard(i)
        if not self._down:
            self._fire("restored")

    def _fire(self, event: str) -> None:
        fire(self._handlers, event, self.loop)

    # ------------------------------------------------------------------ the registry's relay

    def publish(self, room: Any, opcode: int, payload: Any) -> bytes:
        """Publish one broadcast on the room's instance (see ``RedisRelay.publish``)."""
        return self.shards[self.index(room)].publish(room, opcode, payload)

    def room_opened(self, room: str) -> None:
        """The room got its first local member: subscribe on its instance."""
        self.shards[self.index(room)].room_opened(room)

    def room_closed(self, room: str) -> None:
        """The room lost its last local member: unsubscribe on its instance."""
        self.shards[self.index(room)].room_closed(room)

    def room_sized(self, room: str, n: int) -> None:
        """Presence, on the room's instance."""
        self.shards[self.index(room)].room_sized(room, n)

    # ------------------------------------------------------------------ cluster answers

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is confirmed by its instance."""
        await self.shard(room).joined(room)

    def _up(self) -> list[RedisRelay]:
        up = [s for s in self.shards if s.connected]
        if not up:
            raise BackplaneError("backplane: none of the Redis instances is reachable now")
        return up


def make_relay(hub: Hub, options: BackplaneOptions,
               handlers: dict[str, list[Callable[[], Any]]] | None = None) -> Any:
    """The relay ``options.url`` asks for: NATS, a Redis Cluster, one Redis,
    or rooms sharded over several."""
    if options.engine == "redis-cluster":
        from fastws.cluster.redis_cluster import ClusterRelay
        return ClusterRelay(hub, options, handlers)
    if options.engine == "nats":
        from fastws.cluster.nats_relay import NatsRelay
        return NatsRelay(hub, options, handlers)
    if len(options.urls) > 1:
        return ShardedRelay(hub, options, handlers)
    return RedisRelay(hub, options, handlers)
