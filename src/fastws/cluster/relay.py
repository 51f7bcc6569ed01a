"""The Redis relay: rooms across processes and machines (``app.use(backplane(url))``).

Every node (one event loop of one process serving the app) keeps its rooms as
before and, through ``RedisRelay`` (the room registry's relay), one Redis
pub/sub channel per room that has members here (``<prefix>:r:<room>``). A
broadcast is published once to the room's channel in an envelope
(``fastws.cluster.envelope``: version, origin node id, opcode, payload), then
delivered to the local members. Each node subscribed to the channel frames (and
deflates) the payload once for all its members; the sender's node drops its own
echo by node id before looking at anything else. A node subscribes when a room
gets its first local member and unsubscribes ``unsubscribe_linger`` seconds
after it lost its last (a room that empties and fills again does not churn
subscriptions); changes are sent once per loop iteration. A node therefore
receives only the traffic of rooms it has members in.

The promise: local delivery never depends on Redis. Across nodes, delivery is
at most once and in order per publisher per room; a message published while
the link is down is dropped and counted (``app.cluster.stats()``), never
buffered without bound. A join is *live across the cluster* once its node's
subscription to the room is confirmed by Redis (``await app.cluster.joined(room)``):
from then on every broadcast to the room, from any node, reaches the member.

Presence (``app.cluster.room_size``, ``app.cluster.rooms``) is a hash per node
(room -> local member count) and a liveness key per node that expires after
``presence_ttl`` seconds unless refreshed; a node that dies drops out within
that time. It is eventually consistent within the TTL (this node's own counts
are always exact).

A periodic probe (a message the node publishes to itself) finds a subscriber
link that looks connected but receives nothing (cut by Redis's pub/sub output
limit, a half-open TCP link); any lost link is reconnected with jittered
backoff, every room with members resubscribed and the app told
(``app.cluster.on("lost" | "restored", handler)``).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
from typing import TYPE_CHECKING, Any, Callable

from fastws.cluster.envelope import HEADER_SIZE, KEPT, header, origin, unpack, unpack_kept
from fastws.cluster.history import PUBLISH_SCRIPT, READ_SCRIPT, RedisHistory
from fastws.cluster.options import BackplaneOptions
from fastws.cluster.redis_link import Link, Pending, RedisError, RedisURL, parse_url
from fastws.cluster.relay_base import RelayBase, fire
from fastws.errors import BackplaneError

if TYPE_CHECKING:
    from fastws.runtime.hub import Hub

__all__ = ["ManyRelays", "RedisRelay", "fire", "ring_fingerprint"]

log = logging.getLogger("fastws.backplane")


class RedisRelay(RelayBase):
    """The backplane of one hub (one app on one loop): the registry's relay.

    Three links to Redis, each written once per loop iteration: ``pub``
    carries publishes and the probe with ``CLIENT REPLY OFF`` (Redis answers
    nothing, so nothing is parsed per broadcast; the probe, which comes back
    through ``sub``, proves the path); ``cmd`` carries presence and queries,
    whose replies are read; ``sub`` is the subscriber.
    """

    broker = "Redis"
    _connect_errors = (RedisError, OSError, asyncio.TimeoutError)

    def __init__(self, hub: Hub, options: BackplaneOptions,
                 handlers: dict[str, list[Callable[[], Any]]] | None = None, *,
                 url: str | None = None, node: bytes | None = None,
                 owns: Callable[[str], bool] | None = None, ring: str = "",
                 seen_rings: dict[str, str] | None = None, redis_url: RedisURL | None = None,
                 tag: str | None = None) -> None:
        super().__init__(hub, options, handlers, node)
        self.url: RedisURL = redis_url or parse_url(url or options.urls[0])
        #: One master of a Redis Cluster (``cluster.redis_cluster``): this
        #: node's own keys on it carry the hash tag ``tag`` (a slot the master
        #: serves), rooms' keys and channels their name as hash tag, and pub/sub
        #: is sharded (SPUBLISH, SSUBSCRIBE). None: a plain Redis.
        self.tag = tag
        self.room_key: Callable[[str], str] = _plain if tag is None else cluster_name
        #: In a cluster, what gets each publish's reply (a MOVED is followed):
        #: ``on_publish(room, opcode, payload)`` returns a ``Pending``.
        self.on_publish: Callable[[str, int, bytes], Pending] | None = None
        #: In a cluster, called when this master says a room is no longer its
        #: own (MOVED, an unasked sunsubscribe): the slot map must be read again.
        self.on_moved: Callable[[], None] | None = None
        #: In a cluster, what a history publish answered MOVED, ASK or
        #: TRYAGAIN goes to (it is sent again where the room's slot is now);
        #: ``resend_history`` sends one again, ``slot_of`` says a room's slot.
        self.on_bounce: Callable[[Any, Any], None] | None = None
        #: In a cluster, whether a history message must wait behind a slot
        #: that moved (it is queued there: True).
        self.on_hold: Callable[[Any], bool] | None = None
        self.resend_history: Callable[[Any], None] = _no_resend
        self.slot_of: Callable[[str], int] = _no_slot
        #: Whether a room lives on this instance (one shard of several: the
        #: others' rooms are neither subscribed nor counted here).
        self.owns: Callable[[str], bool] = owns or _every_room
        #: The fingerprint of this node's instance list, written where other
        #: nodes compare it: two lists would split rooms without a word.
        self.ring = ring or ring_fingerprint([self.url])
        #: Where this instance counts the changes of the instance list it has
        #: seen (``_RING_SCRIPT``): the history scripts stamp each room's hash
        #: with the Redis run and that count, so after any change every room
        #: with history starts a new epoch, and a room that comes back to an
        #: instance after living on another never goes on from an offset that
        #: missed what the other numbered.
        self._ring_key_now = f"{options.prefix}:ring:now"
        self.ring_gen_key = f"{options.prefix}:ring:gen"
        # node -> the differing list it was last seen with (logged once; the
        # shards of one node share it, so they log and count a node once)
        self._seen_rings: dict[str, str] = {} if seen_rings is None else seen_rings
        self._room_prefix = f"{options.prefix}:r:".encode()
        if tag is not None:
            self._ring_key_now = self.ring_gen_key = ""
        self._name_keys(tag)
        self._sharded = tag is not None
        self._sub_cmd, self._unsub_cmd, self._pub_cmd = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE", b"SPUBLISH") if tag is not None
            else ("SUBSCRIBE", "UNSUBSCRIBE", b"PUBLISH"))
        self._echo = origin(self._nid)
        self._hdr = {op: header(self._nid, op) for op in (1, 2, 3)}
        self._kept_hdr = {op: header(self._nid, op + KEPT) for op in (1, 2, 3)}
        #: Room history in Redis (``websocket(history_size=N)``), or None.
        self.history: RedisHistory | None = None
        if hub.options.history_size:
            self.history = RedisHistory(self, hub.options.history_size, hub.options.history_ttl,
                                        hub.options.history_rooms)
        #: What the history needs of each connection: the Redis run (a restart
        #: is a new epoch) and the two scripts' SHA1s.
        self.run_id: str | None = None
        self.publish_sha = self.read_sha = ""
        self.pub: Link | None = None
        self.cmd: Link | None = None
        self.sub: Link | None = None
        # channel -> the RESP of "PUBLISH <channel>" up to the envelope's length
        self._publish_head: dict[str, bytes] = {}
        # channel -> room for every room subscribed or about to be
        self._channels: dict[bytes, str] = {}
        self._confirmed: set[bytes] = set()
        self._to_sub: set[bytes] = set()
        self._to_unsub: set[bytes] = set()
        self._sizes: dict[str, int] = {}           # presence changes not written yet
        self._probe_token = 0
        # caught_up() callers, answered in order by the subscriber link's pongs
        self._pongs: list[asyncio.Future] = []
        self._probe_back: asyncio.Event | None = None
        self._retry_sub: asyncio.TimerHandle | None = None

    def _name_keys(self, tag: str | None) -> None:
        p = self.options.prefix
        if tag is not None:
            p = f"{p}:{{{tag}}}"    # every node's keys on this master in one slot it serves
        self._key_prefix = p
        self._nodes_key = f"{p}:nodes"
        self._ring_key = f"{p}:ring"
        self._alive_key = f"{p}:alive:{self.node_id}"
        self._presence_key = f"{p}:n:{self.node_id}"
        self._probe_channel = f"{p}:probe:{self.node_id}".encode()

    def retag(self, tag: str) -> None:
        """A cluster's slot map moved the slot of this master's tag: every
        node now keeps its presence on this master under ``tag`` (the old
        keys expire). Resubscribes the probe, writes presence anew."""
        if tag == self.tag:
            return
        self.tag = tag
        self._name_keys(tag)
        if self._probe_back is not None:
            self._probe_back.set()      # the one in flight went to the old tag's slot
        if self.connected and self.sub is not None and self.cmd is not None:
            self._subscribe(self.sub, [self._probe_channel])
            self._write_presence()

    def _write_presence(self) -> None:
        cmd = self.cmd
        owns = self.owns
        cmd.send("DEL", self._presence_key)
        sizes = []
        for r in self.registry.names():
            if owns(r):
                sizes += [r, self.registry.size(r)]
        if sizes:
            cmd.send("HSET", self._presence_key, *sizes)
        self._sizes.clear()
        self._heartbeat(int(self.options.presence_ttl * 1000))

    def __repr__(self) -> str:
        return (f"<RedisRelay node {self.node_id} {self.url.safe} "
                f"{'connected' if self.connected else 'down'}, {len(self._channels)} channels>")

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Connect (raises BackplaneError naming the URL if Redis cannot be reached)."""
        try:
            await self._connect()
        except BaseException as exc:
            # A link that failed on its way up may have started a reconnection.
            self._stopping = True
            if self._reconnecting is not None:
                self._reconnecting.cancel()
            if isinstance(exc, RedisError):     # its message names the URL (password masked)
                raise BackplaneError(f"backplane: {exc}") from None
            if isinstance(exc, asyncio.TimeoutError):
                raise BackplaneError(f"backplane: no answer from {self.url.safe} within "
                                     f"{self.options.connect_timeout:g}s") from None
            if isinstance(exc, OSError):
                raise BackplaneError(f"backplane: cannot use Redis at {self.url.safe}: "
                                     f"{exc.strerror or exc}") from None
            raise
        self._supervisor = self.loop.create_task(self._supervise())
        log.info("backplane: node %s connected to %s", self.node_id, self.url.safe)

    async def stop(self) -> None:
        """Leave the cluster: remove this node's presence, close the links."""
        self._stop_tasks()
        if self.connected and self.cmd is not None:
            try:
                await asyncio.wait_for(asyncio.gather(
                    self.cmd.command("DEL", self._presence_key, self._alive_key),
                    self.cmd.command("SREM", self._nodes_key, self.node_id),
                    self.cmd.command("HDEL", self._ring_key, self.node_id)), 1.0)
            except (RedisError, asyncio.TimeoutError):
                pass
        self.connected = False
        self._drop_links()
        self._fail_joined(BackplaneError("the backplane stopped"))

    def _drop_links(self) -> None:
        for link in (self.pub, self.cmd, self.sub):
            if link is not None:
                link.on_lost = None
                link.abort()
        self.pub = self.cmd = self.sub = None

    async def _connect(self) -> None:
        """Open both links, subscribe every room with members, write presence."""
        timeout = self.options.connect_timeout
        links: list[Link] = []
        try:
            cmd = await Link.open(self.url, timeout, on_lost=self._link_lost)
            links.append(cmd)
            pub = await Link.open(self.url, timeout, on_lost=self._link_lost)
            links.append(pub)
            sub = await Link.open(self.url, timeout, on_push=self._on_push, on_lost=self._link_lost)
            links.append(sub)
            try:
                await asyncio.wait_for(asyncio.gather(cmd.command("PING"), pub.command("PING")),
                                       timeout)
            except RedisError as exc:
                # The first command on a URL without a password, when Redis
                # wants one (NOAUTH): named like every other connect error.
                raise RedisError(f"{self.url.safe}: {exc}") from None
            if self.history is not None and self._sharded:
                # A cluster has no instance list to count changes of: a room's
                # epoch follows the run of the master that numbers it (a
                # failover or a slot moved to another master starts a new one).
                info, self.publish_sha, self.read_sha = await asyncio.wait_for(asyncio.gather(
                    cmd.command("INFO", "server"),
                    cmd.command("SCRIPT", "LOAD", sharded_script(PUBLISH_SCRIPT)),
                    cmd.command("SCRIPT", "LOAD", sharded_script(READ_SCRIPT))), timeout)
                self.run_id = _run_id(info)
            elif self.history is not None:
                info, self.publish_sha, self.read_sha, _ = await asyncio.wait_for(asyncio.gather(
                    cmd.command("INFO", "server"), cmd.command("SCRIPT", "LOAD", PUBLISH_SCRIPT),
                    cmd.command("SCRIPT", "LOAD", READ_SCRIPT),
                    # Only history needs the count of list changes (no script otherwise:
                    # a Redis whose ACL refuses scripts serves a backplane without history).
                    cmd.command("EVAL", _RING_SCRIPT, 2, self._ring_key_now, self.ring_gen_key,
                                self.ring)), timeout)
                self.run_id = _run_id(info)
        except BaseException:
            for link in links:
                link.on_lost = None
                link.abort()
            raise
        if not self._sharded:
            # In a cluster every publish's reply is read: a MOVED is followed.
            pub.push_only("CLIENT", "REPLY", "OFF")
        self.pub, self.cmd, self.sub = pub, cmd, sub
        self._confirmed.clear()
        self._to_unsub.clear()
        self._to_sub.clear()
        owns = self.owns
        names = [r for r in self.registry.names() if owns(r)]
        self._channels = {self.channel_of(r): r for r in names}
        for r in list(self._lingering):
            self._channels[self.channel_of(r)] = r
        self._subscribe(sub, [self._probe_channel, *self._channels])
        self._write_presence()
        self.connected = True

    def _heartbeat(self, ttl_ms: int) -> None:
        cmd = self.cmd
        cmd.send("SET", self._alive_key, "1", "PX", ttl_ms)
        cmd.send("PEXPIRE", self._presence_key, ttl_ms * 2)
        cmd.send("SADD", self._nodes_key, self.node_id)
        cmd.send("HSET", self._ring_key, self.node_id, self.ring)

    async def _check_ring(self) -> None:
        """Compare the live nodes' instance lists with ours: a node that spreads
        rooms over other instances publishes them where this one never looks."""
        cmd = self.cmd
        if cmd is None:
            return
        rings = await cmd.command("HGETALL", self._ring_key)
        theirs = {rings[i].decode(): rings[i + 1].decode() for i in range(0, len(rings), 2)}
        live = set(await self._live_nodes(cmd))
        gone = [n for n in theirs if n not in live and n != self.node_id]
        if gone:
            cmd.send("HDEL", self._ring_key, *gone)
        for node in live:
            fp = theirs.get(node)
            if fp is None or fp == self.ring or self._seen_rings.get(node) == fp:
                continue
            self._seen_rings[node] = fp
            self.stats["ring_mismatches"] += 1
            log.error("backplane: node %s spreads rooms over other Redis instances than this "
                      "node (instance list %s here, %s there): rooms are split between them "
                      "until every node is given the same list", node, self.ring, fp)

    async def _supervise(self) -> None:
        """Heartbeat and probe, forever: a probe that does not come back means
        the subscriber link is dead, whatever TCP says."""
        o = self.options
        every = min(o.probe_interval, o.presence_ttl / 3)
        ttl = int(o.presence_ttl * 1000)
        while True:
            await asyncio.sleep(every)
            if not self.connected or self.pub is None:
                continue
            self._heartbeat(ttl)
            try:
                await asyncio.wait_for(self._check_ring(), o.probe_timeout)
            except (RedisError, asyncio.TimeoutError):
                pass        # the probe below finds a dead link
            self._probe_token += 1
            self._probe_back = asyncio.Event()
            if self._sharded:
                self.pub.call(_ProbeSent(self), "SPUBLISH", self._probe_channel,
                              str(self._probe_token))
            else:
                self.pub.push_only("PUBLISH", self._probe_channel, str(self._probe_token))
            try:
                await asyncio.wait_for(self._probe_back.wait(), o.probe_timeout)
            except asyncio.TimeoutError:
                if self.connected:
                    log.warning("backplane: no probe back from %s within %.1fs: reconnecting",
                                self.url.safe, o.probe_timeout)
                    self._lost()

    # ------------------------------------------------------------------ losing Redis

    def _outage(self) -> None:
        if self.history is not None:
            self.history.lost()
        pongs, self._pongs = self._pongs, []
        for fut in pongs:
            if not fut.done():
                fut.set_exception(BackplaneError("the connection to Redis was lost"))
        self._confirmed.clear()

    def _subscribed_count(self) -> int:
        return len(self._channels)

    # ------------------------------------------------------------------ the registry's relay

    def channel_of(self, room: str) -> bytes:
        """The room's pub/sub channel."""
        return self._room_prefix + self.room_key(room).encode()

    def kept_header(self, kind: int) -> bytes:
        """The envelope header of this node's numbered messages of ``kind``."""
        return self._kept_hdr[kind]

    def publish(self, room: Any, opcode: int, payload: Any) -> bytes:
        """Publish one broadcast to the room's channel (called before local
        delivery); returns the payload as bytes, for local delivery to reuse.
        ``room`` is a str: the registry checks that before calling."""
        payload = self.as_payload(room, payload)
        pub = self.pub
        if self._dropped(pub):
            return payload
        self.stats["published"] += 1
        head = self._publish_head.get(room)
        if head is None:
            ch = self.channel_of(room)
            cmd = self._pub_cmd
            head = b"*3\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(cmd), cmd, len(ch), ch)
            if len(self._publish_head) >= 4096:
                self._publish_head.clear()          # bounded: rooms come and go
            self._publish_head[room] = head
        # RESP by hand: the payload is not copied until the one write per iteration.
        n = len(payload) + HEADER_SIZE
        length = b"$%d\r\n" % n
        if self.on_publish is not None:
            pub.call_parts(self.on_publish(room, opcode, payload),
                           (head, length, self._hdr[opcode], payload, b"\r\n"),
                           len(head) + len(length) + n + 2)
            return payload
        pub.write_parts((head, length, self._hdr[opcode], payload, b"\r\n"),
                        len(head) + len(length) + n + 2)
        return payload

    def _want(self, room: str) -> None:
        ch = self.channel_of(room)
        self._channels[ch] = room
        self._to_unsub.discard(ch)
        self._to_sub.add(ch)

    def room_sized(self, room: str, n: int) -> None:
        """Presence: the room has ``n`` local members now (written once per iteration)."""
        self._sizes[room] = n
        self._schedule()

    def _unwant(self, room: str) -> None:
        ch = self.channel_of(room)
        self._channels.pop(ch, None)
        self._confirmed.discard(ch)
        self._to_sub.discard(ch)
        self._to_unsub.add(ch)

    def _flush(self) -> None:
        """Once per loop iteration: the subscription changes and presence writes."""
        self._scheduled = False
        if not self.connected:
            return      # _connect rewrites both from the registry when Redis is back
        if self._to_sub:
            chs = list(self._to_sub)
            self._to_sub.clear()
            self._subscribe(self.sub, chs)
        if self._to_unsub:
            chs = list(self._to_unsub)
            self._to_unsub.clear()
            self._subscribe(self.sub, chs, self._unsub_cmd)
        if self._sizes:
            sizes, self._sizes = self._sizes, {}
            sets, gone = [], []
            for room, n in sizes.items():
                if n:
                    sets += [room, n]
                else:
                    gone.append(room)
            if sets:
                self.cmd.send("HSET", self._presence_key, *sets)
            if gone:
                self.cmd.send("HDEL", self._presence_key, *gone)

    def _subscribe(self, sub: Link, chs: list[bytes], cmd: str = "") -> None:
        cmd = cmd or self._sub_cmd
        if self._sharded:
            # A sharded (un)subscribe takes channels of one slot: one per command.
            for ch in chs:
                sub.push_only(cmd, ch)
            return
        for i in range(0, len(chs), 1000):
            sub.push_only(cmd, *chs[i:i + 1000])

    def _subscribe_again(self) -> None:
        self._retry_sub = None
        if self._stopping or not self.connected:
            return
        for ch in self._channels:
            if ch not in self._confirmed:
                self._to_sub.add(ch)
        if self.sub is not None:
            self._subscribe(self.sub, [self._probe_channel])
        self._schedule()

    def resync(self) -> None:
        """The cluster's slot map changed: subscribe the rooms with members
        here that are this master's now; forget those that are not (the
        master dropped their subscriptions itself when their slot left it).
        A join waiting on a room that moved waits on its new master instead."""
        owns = self.owns
        for ch, room in list(self._channels.items()):
            if not owns(room):
                del self._channels[ch]
                self._sizes[room] = 0           # its presence lives with its slot now
                self._confirmed.discard(ch)
                self._to_sub.discard(ch)
                self._to_unsub.discard(ch)
                handle = self._lingering.pop(room, None)
                if handle is not None:
                    handle.cancel()
                for fut in self._joined.pop(ch, ()):
                    if not fut.done():
                        # The cluster's joined() asks the room's new master.
                        fut.set_exception(LookupError(f"room {room!r} moved to another master"))
                if self.history is not None and self.registry.size(room):
                    self.history.moved(room)
        for room in self.registry.names():
            if owns(room) and self.channel_of(room) not in self._channels:
                self._want(room)
                self._sizes[room] = self.registry.size(room)
        self._schedule()

    # ------------------------------------------------------------------ what Redis sends

    def _on_push(self, reply: list) -> None:
        if type(reply) is not list or not reply:
            if self._sharded and str(reply).startswith(("MOVED", "ASK", "CROSSSLOT",
                                                        "CLUSTERDOWN", "TRYAGAIN")):
                # A room (un)subscribed where its slot no longer is, or while
                # the cluster fails over: read the slot map again and ask for
                # what is not confirmed once more, shortly; the link is fine.
                if self.on_moved is not None:
                    self.on_moved()
                if self._retry_sub is None:
                    self._retry_sub = self.loop.call_later(0.5, self._subscribe_again)
                return
            # An error where a push belongs (Redis refusing the link: -DENIED,
            # -NOAUTH, an output limit): the link is of no use, said once.
            if self.sub is not None and not self._stopping:
                log.warning("backplane: %s answered the subscriber link with %r: reconnecting",
                            self.url.safe, str(reply)[:200])
                self._lost()
            return
        kind = reply[0]
        if kind == b"message" or kind == b"smessage":
            channel, data = reply[1], reply[2]
            if channel == self._probe_channel:
                if self._probe_back is not None and data == str(self._probe_token).encode():
                    self._probe_back.set()
                return
            if data.startswith(self._echo) and len(data) >= HEADER_SIZE and \
                    not data[HEADER_SIZE - 1] & KEPT:
                self.stats["echoes"] += 1       # our own publish, delivered here already
                return
            position = skip = None
            try:
                node, opcode, payload = unpack(data)
                if opcode & KEPT:
                    # Numbered by Redis: every node delivers it from here, ours too.
                    seq, epoch, offset, payload = unpack_kept(payload)
                    opcode -= KEPT
                    position = (epoch, offset)
                    if node == self._nid and self.history is not None:
                        skip = self.history.sender(seq)
            except ValueError as exc:
                self.stats["bad_envelopes"] += 1
                log.debug("backplane: dropped a message on %r: %s", channel, exc)
                return
            if len(payload) > self.max_payload:
                self.stats["oversized"] += 1
                return
            room = self._channels.get(channel)
            if room is None:
                return          # unsubscribed meanwhile
            self.stats["received"] += 1
            try:
                self.registry.deliver(room, opcode, payload, skip, position)
            except Exception:
                # A member's failure must never stop the reader.
                log.exception("backplane: delivering to room %r failed", room)
        elif kind == b"subscribe" or kind == b"ssubscribe":
            ch = reply[1]
            if ch in self._channels:
                self._confirmed.add(ch)
                self.stats["subscriptions"] += 1
                for fut in self._joined.pop(ch, ()):
                    if not fut.done():
                        fut.set_result(None)
        elif kind == b"unsubscribe" or kind == b"sunsubscribe":
            ch = reply[1]
            self._confirmed.discard(ch)
            if self._sharded and self.on_moved is not None and (
                    ch == self._probe_channel or ch in self._channels and ch not in self._to_sub):
                # Not asked for: the master gave the slot away (a room's, or
                # this node's tag on it).
                self.on_moved()
        elif kind == b"pong" and self._pongs:
            fut = self._pongs.pop(0)
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ cluster answers

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is confirmed;
        ConnectionError at once while Redis is unreachable."""
        ch = self.channel_of(room)
        if ch in self._confirmed and self.connected:
            return
        if not self.connected:
            raise ConnectionError(f"backplane: Redis at {self.url.safe} is not reachable now")
        if ch not in self._channels:
            raise LookupError(f"room {room!r} has no member on this node")
        fut = self.loop.create_future()
        self._joined.setdefault(ch, []).append(fut)
        await fut

    async def caught_up(self) -> None:
        """Wait until the subscriber link has delivered every message Redis
        published before now: a PING on it is answered after them. (A reply on
        the command link can overtake them, each link being its own TCP
        stream; a recovery that read the history must not release its hold
        before the messages that history already held have come through.)"""
        sub = self.sub
        if not self.connected or sub is None:
            raise BackplaneError(f"backplane: Redis at {self.url.safe} is not reachable now")
        fut = self.loop.create_future()
        self._pongs.append(fut)
        sub.push_only("PING")
        await fut

    def _fail_joined(self, exc: Exception) -> None:
        super()._fail_joined(exc)
        pongs, self._pongs = self._pongs, []
        for fut in pongs:
            if not fut.done():
                fut.set_exception(exc)

    def _require(self) -> Link:
        if not self.connected or self.cmd is None:
            raise self._unreachable()
        return self.cmd

    async def _live_nodes(self, cmd: Link) -> list[str]:
        nodes = [n.decode() for n in await cmd.command("SMEMBERS", self._nodes_key)
                 if n.decode() != self.node_id]
        alive = await asyncio.gather(*[cmd.command("EXISTS", f"{self._key_prefix}:alive:{n}")
                                       for n in nodes])
        dead = [n for n, a in zip(nodes, alive) if not a]
        if dead:
            cmd.send("SREM", self._nodes_key, *dead)
        return [n for n, a in zip(nodes, alive) if a]

    async def room_size(self, room: str) -> int:
        """Members of ``room`` on every live node (this one's count is exact)."""
        cmd = self._require()
        nodes = await self._live_nodes(cmd)
        counts = await asyncio.gather(*[cmd.command("HGET", f"{self._key_prefix}:n:{n}", room)
                                        for n in nodes])
        return self.registry.size(room) + sum(int(c) for c in counts if c)

    async def rooms(self) -> list[str]:
        """Rooms with a member on any live node."""
        cmd = self._require()
        nodes = await self._live_nodes(cmd)
        keys = await asyncio.gather(*[cmd.command("HKEYS", f"{self._key_prefix}:n:{n}")
                                      for n in nodes])
        out = dict.fromkeys(self.registry.names())
        for ks in keys:
            for k in ks:
                out.setdefault(k.decode(), None)
        return list(out)

    async def nodes(self) -> list[str]:
        """The ids of the live nodes, this one first."""
        cmd = self._require()
        return [self.node_id] + await self._live_nodes(cmd)


class ManyRelays:
    """The cluster answers of a relay made of several ``RedisRelay``s (sharded
    instances, a cluster's masters): a subclass has ``shards``, ``shard(room)``
    (the one ``room`` lives on), ``_up()`` (those reachable; BackplaneError if
    none is), ``registry`` and ``node_id``."""

    registry: Any
    node_id: str
    shards: Any     # the RedisRelays, a list or a property

    def _init_node(self, hub: Any, options: BackplaneOptions,
                   handlers: dict[str, list[Callable[[], Any]]] | None) -> None:
        """What every relay of several Redis sets first: the hub's parts, the
        app's handlers, and the one node id all its RedisRelays share."""
        self.options = options
        self.hub = hub
        self.registry = hub.rooms
        self.loop = hub.loop
        self._nid = secrets.token_bytes(8)
        self.node_id = self._nid.hex()
        self._handlers = handlers if handlers is not None else {}

    def shard(self, room: str) -> RedisRelay:
        raise NotImplementedError

    def _up(self) -> list[RedisRelay]:
        raise NotImplementedError

    async def caught_up(self, room: str | None = None) -> None:
        """Wait until ``room``'s Redis (every one without a room) has delivered
        what it published before now."""
        relays = self.shards if room is None else [self.shard(room)]
        await asyncio.gather(*[r.caught_up() for r in relays])

    async def room_size(self, room: str) -> int:
        """Members of ``room`` on every live node, from its Redis."""
        return await self.shard(room).room_size(room)

    async def rooms(self) -> list[str]:
        """Rooms with a member on any live node, from every reachable Redis
        (the rooms of one that is down are missing until it is back)."""
        out = dict.fromkeys(self.registry.names())
        for names in await asyncio.gather(*[r.rooms() for r in self._up()]):
            for name in names:
                out.setdefault(name, None)
        return list(out)

    async def nodes(self) -> list[str]:
        """The ids of the live nodes (as any reachable Redis knows them), this one first."""
        out = dict.fromkeys([self.node_id])
        for ids in await asyncio.gather(*[r.nodes() for r in self._up()]):
            for n in ids:
                out.setdefault(n, None)
        return list(out)


# KEYS: the list this instance last saw, the count of changes. ARGV: ours.
# Returns the count, counting ours if it differs.
_RING_SCRIPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1])
  return redis.call('INCR', KEYS[2])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""


def _every_room(room: str) -> bool:
    return True


def _plain(room: str) -> str:
    return room


class _ProbeSent(Pending):
    """The reply to a cluster master's probe: a MOVED means the slot of this
    node's tag moved (the map is read again), not that the link is dead."""

    __slots__ = ("relay",)

    def __init__(self, relay: RedisRelay) -> None:
        self.relay = relay

    def on_reply(self, reply: Any) -> None:
        relay = self.relay
        if isinstance(reply, RedisError) and \
                str(reply).startswith(("MOVED", "CLUSTERDOWN", "TRYAGAIN")):
            # Not a dead link: the map moved, or the cluster is failing over
            # (a master elsewhere is down). This round of the probe passes.
            if relay._probe_back is not None:
                relay._probe_back.set()
            if relay.on_moved is not None:
                relay.on_moved()


def _no_resend(stored: Any) -> None:
    raise RuntimeError("only a Redis Cluster sends a message again")


def _no_slot(room: str) -> int:
    return -1


def cluster_name(room: str) -> str:
    """A room's part of its key and channel names in Redis Cluster: a hash tag,
    so that its channel, history stream and hash share one slot. A name that
    cannot be a tag (empty, or with a ``}``) is tagged by its SHA-1 and
    follows the tag, so no two rooms share a name."""
    if room and "}" not in room:
        return "{" + room + "}"
    return "{=" + hashlib.sha1(room.encode()).hexdigest() + "}:" + room


def sharded_script(script: str) -> str:
    """A history script for Redis Cluster: sharded pub/sub, and no count of
    instance-list changes (there is no list: KEYS[3] is not given)."""
    return script.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'").replace(
        "(redis.call('GET', KEYS[3]) or '0')", "(KEYS[3] and redis.call('GET', KEYS[3]) or '0')")


def ring_fingerprint(urls: list[RedisURL]) -> str:
    """16 hex digits naming an ordered list of instances (host, port, db;
    never the credentials): nodes given the same list have the same one.
    One instance alone is "single" whatever its spelling (nodes may reach
    one Redis as localhost and as 127.0.0.1; there is nothing to split)."""
    if len(urls) == 1:
        return "single"
    text = "\n".join(f"{u.host}:{u.port}/{u.db}" for u in urls)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _run_id(info: bytes) -> str:
    """Redis's run id (it changes at every start) from ``INFO server``."""
    for line in info.split(b"\r\n"):
        if line.startswith(b"run_id:"):
            return line[7:].decode()[:12]
    raise RedisError("INFO server has no run_id")
