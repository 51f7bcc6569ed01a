"""The Redis Cluster backplane (``backplane("redis+cluster://host:7000,host:7001")``).

A room lives in the slot of its name: its channel and its history stream and
hash carry the name as hash tag (``relay.cluster_name``), so they share one
slot and one master. Pub/sub is sharded (Redis 7: SPUBLISH, SSUBSCRIBE): a
message goes only to the master that serves its room's slot, and only the
nodes subscribed there get it, instead of every master of the cluster.

``ClusterRelay`` reads the slot map (``CLUSTER SLOTS``) from the seeds given
in the URL, and keeps one ``RedisRelay`` per master (its links, probe,
reconnects), each owning the rooms of the slots that master serves. A node's
own keys on a master (liveness, its presence counts, the probe channel) carry
a hash tag of that master (the first of ``n0``, ``n1``, ... in a slot it
serves), so every node finds them there.

Following the cluster:

- Every publish's reply is read. A ``MOVED`` (the slot was given to another
  master) updates the map at once, and the message is sent again to the new
  master, after the messages sent before it that are still in flight to the
  old one (so per-publisher order holds across the move); ``TRYAGAIN`` (a slot
  in the middle of a migration) is tried again shortly.
- A master that drops the subscriptions of a slot it gave away (an unasked
  ``sunsubscribe``), a ``MOVED`` anywhere, a master lost, and every
  ``probe_interval`` seconds: the map is read again. Rooms whose slot moved are
  subscribed on their new master; a master that left the map (failed over to
  its replica, removed) is dropped, a new one is connected.
- The app hears ``lost`` when a master it relies on goes, ``restored`` when
  every master of the map is reachable again.

History: a room's epoch is stamped with the run of the master that numbers
it, so a failover (the promoted replica may lack the last writes: replication
is asynchronous) and a slot moved to another master both start a new epoch
for the rooms concerned; no offset is reused, no partial replay presented as
complete.
"""

from __future__ import annotations

import asyncio
import binascii
import bisect
import dataclasses
import itertools
import logging
import random
from typing import TYPE_CHECKING, Any, Callable

from fastws.cluster.redis_link import Link, Pending, RedisError, RedisURL, cluster_seeds
from fastws.cluster.history import ShardedHistory
from fastws.cluster.relay import ManyRelays, RedisRelay, cluster_name
from fastws.cluster.relay_base import fire
from fastws.errors import BackplaneError, BroadcastTooLargeError

if TYPE_CHECKING:
    from fastws.cluster.options import BackplaneOptions
    from fastws.runtime.hub import Hub

__all__ = ["ClusterRelay", "cluster_seeds", "key_slot", "room_slot"]

log = logging.getLogger("fastws.backplane")

SLOTS = 16384
_HOLD_MAX = 65536       # messages held for one moved slot before further ones are dropped


def key_slot(tag: str) -> int:
    """The slot of a hash tag (Redis Cluster: CRC16-XMODEM of the tag, mod 16384)."""
    return binascii.crc_hqx(tag.encode(), 0) & (SLOTS - 1)


def room_slot(room: str) -> int:
    """The slot a room's channel and keys are in."""
    name = cluster_name(room)
    return key_slot(name[1:name.index("}")])


def _by_order(item: Any) -> int:
    return item.order


def _ranges(reply: Any, host: str) -> list[tuple[int, int, str]]:
    """``CLUSTER SLOTS`` as (first, last, "host:port" of the master); an
    endpoint Redis does not know (empty, "?") is the host that answered."""
    out = []
    for item in reply or ():
        first, last, master = int(item[0]), int(item[1]), item[2]
        endpoint = master[0].decode() if master[0] else ""
        out.append((first, last, f"{endpoint if endpoint not in ('', '?') else host}:"
                                 f"{int(master[1])}"))
    return out


def _at(seed: RedisURL, host: str, port: int) -> RedisURL:
    """The seed's credentials and TLS settings, for another node of the cluster."""
    head, _, _ = seed.safe.partition("://")
    auth = seed.safe.split("://", 1)[1].rsplit("@", 1)[0] + "@" if "@" in seed.safe else ""
    shown = f"[{host}]" if ":" in host else host
    return dataclasses.replace(seed, host=host, port=port, db=0,
                               safe=f"{head}://{auth}{shown}:{port}/0")


class _Sent(Pending):
    """A publish in flight to a master: its reply says delivered, or MOVED."""

    __slots__ = ("relay", "room", "opcode", "payload", "slot", "addr", "counted", "order")

    def __init__(self, relay: ClusterRelay, room: str, opcode: int, payload: bytes,
                 slot: int, addr: str) -> None:
        self.relay = relay
        self.room = room
        self.opcode = opcode
        self.payload = payload
        self.slot = slot
        self.addr = addr            # the master it was written to
        self.counted: Any = None    # the hold that waits for its answer
        self.order = next(relay._order)     # where it goes in a hold's queue

    def on_reply(self, reply: Any) -> None:
        relay = self.relay
        if relay._holding or isinstance(reply, RedisError):
            relay._answered(self, reply)

    def resend(self) -> None:
        """Publish it again, wherever its room's slot is now."""
        self.relay.publish(self.room, self.opcode, self.payload)

    def fail(self, exc: Exception) -> None:
        """Given up (a hold that overflowed, timed out, or the node stopping)."""
        self.relay._extra["dropped_moved"] += 1


class _Hold:
    """Messages for a slot that moved, waiting for those still in flight to
    its old master (answered, or bounced to join the queue) before they go
    to the new one, in order."""

    __slots__ = ("waiting", "queue", "since")

    def __init__(self, waiting: int, since: float) -> None:
        self.waiting = waiting
        self.queue: list[Any] = []
        self.since = since


class ClusterRelay(ManyRelays):
    """The registry's relay over a Redis Cluster (see the module)."""

    def __init__(self, hub: Hub, options: BackplaneOptions,
                 handlers: dict[str, list[Callable[[], Any]]] | None = None) -> None:
        self._init_node(hub, options, handlers)
        self.seeds = cluster_seeds(options.url)
        self.url = self.seeds[0]
        #: slot -> "host:port" of the master serving it (None: not served)
        self._owner: list[str | None] = [None] * SLOTS
        #: "host:port" -> the relay of that master
        self.by_addr: dict[str, RedisRelay] = {}
        self._down: set[str] = set()
        self._lost_told = False
        self._holding: dict[int, _Hold] = {}
        self._order = itertools.count()
        self._slots: dict[str, int] = {}
        #: the map as last read from the cluster (``_owner`` may be ahead of
        #: it where a MOVED said a slot's new master)
        self._applied: list[str | None] = [None] * SLOTS
        self._seq = itertools.count(1)
        self._senders: dict[int, Any] = {}
        self._refreshing: asyncio.Task | None = None
        self._refresh_again = False
        self._expect = 0
        self._supervisor: asyncio.Task | None = None
        self._stopping = False
        self._retired: dict[str, int] = {}     # counters of relays no longer in the map
        self._extra = {"redirects": 0, "dropped_moved": 0, "dropped_refused": 0,
                       "topology_changes": 0}
        self.max_payload = hub.options.max_message_size or 1 << 30
        self.history: ShardedHistory | None = None
        if hub.options.history_size:
            self.history = ShardedHistory(self, hub.options.history_rooms)

    def __repr__(self) -> str:
        up = len(self.by_addr) - len(self._down)
        return f"<ClusterRelay node {self.node_id} {up}/{len(self.by_addr)} masters up>"

    # ------------------------------------------------------------------ the map

    def slot_of(self, room: str) -> int:
        """``room_slot(room)``, remembered (every publish asks)."""
        slot = self._slots.get(room)
        if slot is None:
            if len(self._slots) >= 65536:
                self._slots.clear()     # bounded: rooms come and go
            slot = self._slots[room] = room_slot(room)
        return slot

    def owner(self, room: str) -> str | None:
        """Where (``host:port``) the master serving ``room``'s slot is."""
        return self._owner[self.slot_of(room)]

    def shard(self, room: str) -> RedisRelay:
        """The relay of the master serving ``room`` (BackplaneError if none does)."""
        relay = self.by_addr.get(self._owner[self.slot_of(room)] or "")
        if relay is None:
            raise BackplaneError(f"backplane: no master of the Redis Cluster at "
                                 f"{self.url.safe} serves room {room!r}'s slot now")
        return relay

    @property
    def shards(self) -> list[RedisRelay]:
        """The relays of the masters in the map."""
        return list(self.by_addr.values())

    def _tag_of(self, addr: str, owner: list[str | None]) -> str:
        """The hash tag of this master's node keys: the first ``n<k>`` it serves
        in ``owner`` (every node computes the same from the same map)."""
        for k in range(1 << 20):        # n0 .. n145000 or so cover every slot
            if owner[key_slot(f"n{k}")] == addr:
                return f"n{k}"
        raise RuntimeError(f"{addr} serves no slot")

    async def _read_map(self) -> list[tuple[int, int, str]]:
        """(first slot, last slot, master) from the first node that answers:
        a connected master on its command link (in random order), else the
        seeds (and the masters known, in case the seeds are gone) on a link
        of their own."""
        tried = []
        timeout = self.options.connect_timeout
        up = [r for r in self.by_addr.values() if r.connected and r.cmd is not None]
        random.shuffle(up)
        for relay in up:
            try:
                reply = await asyncio.wait_for(relay.cmd.command("CLUSTER", "SLOTS"), timeout)
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                tried.append(f"{relay.url.safe}: {exc}")
                continue
            ranges = _ranges(reply, relay.url.host)
            if ranges:
                return ranges
        others = [r.url for a, r in self.by_addr.items() if r not in up and a not in self._down]
        for url in self.seeds + others:
            try:
                link = await Link.open(url, timeout)
                try:
                    reply = await asyncio.wait_for(link.command("CLUSTER", "SLOTS"), timeout)
                finally:
                    link.close()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                tried.append(f"{url.safe}: {exc}")
                continue
            ranges = _ranges(reply, url.host)
            if ranges:
                return ranges
            tried.append(f"{url.safe}: serves no slot (is it a cluster?)")
        raise RedisError("no node of the Redis Cluster gave its slot map (" +
                         "; ".join(tried[:4]) + ")")

    def _relay_for(self, addr: str) -> RedisRelay:
        host, port = addr.rsplit(":", 1)
        relay = RedisRelay(self.hub, self.options,
                           {"lost": [lambda a=addr: self._master_lost(a)],
                            "restored": [lambda a=addr: self._master_restored(a)]},
                           node=self._nid, redis_url=_at(self.url, host, int(port)),
                           owns=lambda room, a=addr: self.owner(room) == a,
                           ring="cluster", tag=self._tag_of(addr, self._owner))
        relay.on_publish = lambda room, op, payload, a=addr: _Sent(
            self, room, op, payload, self.slot_of(room), a)
        relay.on_moved = self._moved
        relay.on_hold = self._hold_history
        relay.on_bounce = self._answered
        relay.slot_of = self.slot_of
        relay.resend_history = self._resend_history
        if relay.history is not None:
            # One sequence and one table of senders for every master: a
            # message sent again to another master comes back from there.
            relay.history._seq = self._seq
            relay.history._senders = self._senders
            relay.history.shared_senders = True
        return relay

    def _resend_history(self, stored: Any) -> None:
        relay = self.by_addr.get(self._owner[stored.slot] or "")
        if relay is None or relay.history is None:
            stored.history.send(stored)     # fails it, said as Redis not reachable
            return
        stored.addr = self._owner[stored.slot]
        relay.history.send(stored)

    def _hold_history(self, stored: Any) -> bool:
        """A history message to a slot on hold waits its turn (True), in order."""
        stored.addr = self._owner[stored.slot]
        stored.order = next(self._order)
        hold = self._holding.get(stored.slot) if self._holding else None
        if hold is None:
            return False
        self._queue(hold, stored)
        return True

    async def _apply(self, ranges: list[tuple[int, int, str]], *, first: bool = False) -> bool:
        """Make the slot map ``ranges`` this node's: connect new masters, drop
        the ones gone, move rooms to their slots' masters."""
        owner: list[str | None] = [None] * SLOTS
        for lo, hi, addr in ranges:
            for slot in range(lo, hi + 1):
                owner[slot] = addr
        masters = set(a for a in owner if a is not None)
        self._down &= masters
        applied, raw = self._applied, list(owner)
        if not first:
            # Where this map still says what the last one did and a MOVED
            # since said otherwise, the MOVED is newer: kept (a master may
            # answer with a map that has not caught up with the move yet).
            current = self._owner
            for slot in range(SLOTS):
                if owner[slot] == applied[slot] and current[slot] != applied[slot] and \
                        current[slot] in masters:
                    owner[slot] = current[slot]
        if raw == applied:
            if masters.issubset(self.by_addr):
                return False        # nothing new
            # The same map, a master not connected yet (it failed last time).
        elif not first:
            self._extra["topology_changes"] += 1
            log.warning("backplane: the Redis Cluster's slot map changed; following it")
        old = self._owner
        moved = {slot for slot in range(SLOTS) if old[slot] != owner[slot] and old[slot]}
        if moved:
            self._hold_moved(moved, old)
        self._owner = owner
        self._applied = raw
        for relay in self.by_addr.values():
            relay.resync()          # before any wait: the rooms of moved slots follow at once
        for addr in [a for a in self.by_addr if a not in masters]:
            relay = self.by_addr.pop(addr)
            self._down.discard(addr)
            for k, v in relay.stats.items():
                self._retired[k] = self._retired.get(k, 0) + v
            await relay.stop()
            log.warning("backplane: %s no longer serves slots of the Redis Cluster", relay.url.safe)
        new = [a for a in masters if a not in self.by_addr]
        for addr in self.by_addr:
            self.by_addr[addr].retag(self._tag_of(addr, owner))
        for addr in new:
            self.by_addr[addr] = self._relay_for(addr)
        results = await asyncio.gather(*[self.by_addr[a].start() for a in new],
                                       return_exceptions=True)
        for addr, result in zip(new, results):
            if isinstance(result, BaseException):
                if first:
                    raise result
                # Its relay is gone; the next reading of the map tries again.
                self.by_addr.pop(addr, None)
                self._down.add(addr)
                log.warning("backplane: cannot reach %s, a master of the Redis Cluster: %s",
                            addr, result)
                if not self._lost_told:
                    self._lost_told = True
                    fire(self._handlers, "lost", self.loop)
            else:
                self._down.discard(addr)
        for relay in self.by_addr.values():
            relay.resync()
        self._release_holds()
        self._check_restored()
        return True

    def _hold_moved(self, moved: set[int], old: Any) -> None:
        """Slots given to another master while publishes to them are in
        flight to the old one: later ones wait until those are answered."""
        counts: dict[int, list[Any]] = {}
        for addr in {old[slot] for slot in moved}:
            relay = self.by_addr.get(addr or "")
            if relay is None:
                continue
            for link in (relay.pub, relay.cmd):
                if link is None:
                    continue
                for p in link._waiting:
                    slot = getattr(p, "slot", -1)
                    if slot in moved and getattr(p, "counted", 1) is None:
                        counts.setdefault(slot, []).append(p)
        now = self.loop.time()
        for slot, items in counts.items():
            hold = self._holding.get(slot)
            if hold is None:
                hold = self._holding[slot] = _Hold(0, now)
            for p in items:
                p.counted = hold
            hold.waiting += len(items)

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Read the slot map from the seeds and connect to every master
        (BackplaneError naming what failed)."""
        try:
            await self._apply(await self._read_map(), first=True)
        except BaseException as exc:
            await asyncio.gather(*[r.stop() for r in self.by_addr.values()],
                                 return_exceptions=True)
            if isinstance(exc, BackplaneError):
                raise
            if isinstance(exc, (RedisError, OSError, asyncio.TimeoutError)):
                raise BackplaneError(f"backplane: {exc}") from None
            raise
        self._supervisor = self.loop.create_task(self._supervise())
        log.info("backplane: node %s on a Redis Cluster of %d masters", self.node_id,
                 len(self.by_addr))

    async def stop(self) -> None:
        """Leave the cluster on every master."""
        self._stopping = True
        for task in (self._supervisor, self._refreshing):
            if task is not None:
                task.cancel()
        holding, self._holding = self._holding, {}
        for hold in holding.values():
            for item in hold.queue:
                item.fail(BackplaneError("backplane: the backplane stopped"))
        await asyncio.gather(*[r.stop() for r in self.by_addr.values()], return_exceptions=True)

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(self.options.probe_interval)
            self._moved(expect_change=False)
            if self._holding:
                self._release_holds()       # times out holds whose master never came

    def _moved(self, expect_change: bool = True) -> None:
        """Read the slot map again (once at a time; asked again meanwhile,
        once more). ``expect_change``: a master said a slot moved, so a map
        without the change is one not everywhere yet: read it a few times more."""
        if self._stopping:
            return
        if expect_change:
            self._expect = max(self._expect, 6)
        if self._refreshing is not None:
            self._refresh_again = True
            return
        self._refreshing = self.loop.create_task(self._refresh())

    async def _refresh(self) -> None:
        try:
            delay = 0.1
            while not self._stopping:
                self._refresh_again = False
                try:
                    ranges = await self._read_map()
                    log.debug("backplane: the Redis Cluster's slot map: %s", ranges)
                    if await self._apply(ranges):
                        self._expect = 0
                    elif self._expect:
                        self._expect -= 1
                        self._refresh_again = True
                except (RedisError, OSError, asyncio.TimeoutError) as exc:
                    log.debug("backplane: reading the Redis Cluster's slot map failed: %s", exc)
                    self._refresh_again = True
                except Exception:
                    log.exception("backplane: following the Redis Cluster's slot map failed")
                    self._refresh_again = True
                if not self._refresh_again and not self._down:
                    return
                # A master down or the map changing: read it again until it settles
                # (a failover takes the cluster's node timeout and an election).
                await asyncio.sleep(random.uniform(delay / 2, delay))
                delay = min(delay * 2, self.options.max_backoff if self._down else 1.0)
        finally:
            self._refreshing = None

    def _master_lost(self, addr: str) -> None:
        self._down.add(addr)
        if not self._lost_told:
            self._lost_told = True
            fire(self._handlers, "lost", self.loop)
        self._moved()

    def _master_restored(self, addr: str) -> None:
        self._down.discard(addr)
        self._release_holds()
        self._check_restored()

    def _check_restored(self) -> None:
        if self._lost_told and not self._down and all(r.connected for r in self.by_addr.values()):
            self._lost_told = False
            fire(self._handlers, "restored", self.loop)

    @property
    def connected(self) -> bool:
        """True while every master of the map is reachable."""
        return bool(self.by_addr) and not self._down and \
            all(r.connected for r in self.by_addr.values())

    @property
    def stats(self) -> dict[str, int]:
        """Every master's counters summed (those of masters gone included),
        the masters known and up, and the cluster's own counters."""
        out = dict(self._retired)
        for r in self.by_addr.values():
            for k, v in r.stats.items():
                out[k] = out.get(k, 0) + v
        out.update(self._extra)
        out["instances"] = len(self.by_addr)
        out["instances_up"] = sum(1 for r in self.by_addr.values() if r.connected)
        return out

    # ------------------------------------------------------------------ publishing, and MOVED

    def publish(self, room: Any, opcode: int, payload: Any) -> bytes:
        """Publish one broadcast on the master serving the room's slot."""
        slot = self.slot_of(room)
        hold = self._holding.get(slot) if self._holding else None
        if hold is None:
            relay = self.by_addr.get(self._owner[slot] or "")
            if relay is not None:
                return relay.publish(room, opcode, payload)
        payload = self._checked(room, payload)
        if hold is not None:
            self._queue(hold, _Sent(self, room, opcode, payload, slot, ""))
        else:
            self._extra["dropped_moved"] += 1        # no master serves the slot now
        return payload

    def _checked(self, room: Any, payload: Any) -> bytes:
        if type(payload) is str:
            payload = payload.encode()
        elif type(payload) is not bytes:
            payload = bytes(payload)
        if len(payload) > self.max_payload:
            raise BroadcastTooLargeError(
                f"broadcast of {len(payload)} bytes to {room!r} is over max_message_size "
                f"({self.max_payload}); not delivered")
        return payload

    def _queue(self, hold: _Hold, item: Any) -> None:
        """Into the hold's queue in the order the messages were first made:
        one bounced back later goes before those published after it."""
        if len(hold.queue) >= _HOLD_MAX:
            item.fail(BackplaneError("backplane: too many messages wait for a slot that moved"))
            return
        queue = hold.queue
        if not queue or queue[-1].order < item.order:
            queue.append(item)
        else:
            bisect.insort(queue, item, key=_by_order)

    def _held(self, slot: int, addr: str) -> _Hold:
        """The slot's hold; a new one waits for what is in flight to ``addr``."""
        hold = self._holding.get(slot)
        if hold is None:
            self._hold_moved({slot}, {slot: addr})
            hold = self._holding.get(slot)
            if hold is None:
                hold = self._holding[slot] = _Hold(0, self.loop.time())
        return hold

    def _bounced(self, sent: Any, reply: RedisError) -> None:
        """A publish answered with an error: follow a MOVED, ASK or TRYAGAIN;
        any other (a lost link) leaves it lost, at most once, as a publish
        made while the link is down (a history message fails, and says so)."""
        text = str(reply)
        if self._stopping:
            self._give_up(sent, reply)
        elif text.startswith("MOVED "):
            self._extra["redirects"] += 1
            slot, addr = self._redirect(text, sent)
            if slot != sent.slot:
                self._give_up(sent, reply)
                return
            hold = self._held(slot, sent.addr)
            if self._owner[slot] != addr:
                # The first word of the move: the room's subscriptions follow now.
                self._owner[slot] = addr
                for relay in (self.by_addr.get(addr), self.by_addr.get(sent.addr)):
                    if relay is not None:
                        relay.resync()
            self._queue(hold, sent)
            self._moved()
            self._release_holds()
        elif text.startswith(("TRYAGAIN", "ASK ")):
            # A slot being migrated, the room's keys on both sides for now:
            # held and sent again shortly, in order, until the move is done
            # (a script run on the importing master with ASKING would publish
            # where no node is subscribed yet).
            self._extra["redirects"] += 1
            self._queue(self._held(sent.slot, sent.addr), sent)
            self.loop.call_later(0.05, self._release_holds)
        else:
            if text.startswith("CLUSTERDOWN"):
                self._extra["dropped_refused"] += 1
            self._give_up(sent, reply)

    def _redirect(self, text: str, sent: Any) -> tuple[int, str]:
        """(slot, master) of ``MOVED <slot> <host>:<port>`` (or ``ASK``); an
        endpoint without a host is the one that answered."""
        parts = text.split(" ")
        addr = parts[2] if len(parts) > 2 else ""
        host, _, port = addr.rpartition(":")
        if host in ("", "?"):
            addr = f"{sent.addr.rpartition(':')[0] if sent.addr else self.url.host}:{port}"
        return int(parts[1]), addr

    def _give_up(self, sent: Any, reply: Exception) -> None:
        if isinstance(sent, _Sent):
            return
        sent.fail(reply)

    def _answered(self, sent: Any, reply: Any) -> None:
        hold = sent.counted
        if hold is not None:
            sent.counted = None
            if self._holding.get(sent.slot) is hold and hold.waiting:
                hold.waiting -= 1
        if isinstance(reply, RedisError):
            self._bounced(sent, reply)
        if self._holding:
            self._release_holds()

    def _release_holds(self) -> None:
        """Send what waits for a moved slot, once nothing older is in flight
        and the slot's master is connected; give up on a hold older than
        ``connect_timeout`` whose master is still not there."""
        now = self.loop.time()
        for slot, hold in list(self._holding.items()):
            relay = self.by_addr.get(self._owner[slot] or "")
            if relay is None or not relay.connected or hold.waiting:
                if now - hold.since > self.options.connect_timeout:
                    self._holding.pop(slot, None)
                    exc = BackplaneError("backplane: the master of a moved slot did not come")
                    for item in hold.queue:
                        item.fail(exc)
                continue
            if self._holding.pop(slot, None) is not hold:
                continue
            for item in hold.queue:
                item.resend()

    # ------------------------------------------------------------------ the registry's relay

    def room_opened(self, room: str) -> None:
        """The room got its first local member: subscribe on its master."""
        relay = self.by_addr.get(self.owner(room) or "")
        if relay is not None:
            relay.room_opened(room)

    def room_closed(self, room: str) -> None:
        """The room lost its last local member: unsubscribe on its master."""
        relay = self.by_addr.get(self.owner(room) or "")
        if relay is not None:
            relay.room_closed(room)

    def room_sized(self, room: str, n: int) -> None:
        """Presence, on the room's master."""
        relay = self.by_addr.get(self.owner(room) or "")
        if relay is not None:
            relay.room_sized(room, n)

    # ------------------------------------------------------------------ cluster answers

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is confirmed by its
        master (by its new one, if its slot moves meanwhile)."""
        for _ in range(8):
            relay = self.shard(room)
            try:
                await relay.joined(room)
                return
            except (LookupError, BackplaneError):
                if relay is self.by_addr.get(self.owner(room) or "") or \
                        not self.registry.size(room):
                    raise
        raise BackplaneError(f"backplane: room {room!r} keeps moving between masters")

    def _up(self) -> list[RedisRelay]:
        up = [r for r in self.by_addr.values() if r.connected]
        if not up:
            raise BackplaneError(f"backplane: no master of the Redis Cluster at "
                                 f"{self.url.safe} is reachable now")
        return up
