"""Room history in Redis Streams, shared by every node of a backplane
(``websocket(history_size=N)`` with ``backplane(url)``).

A room that keeps history has two keys on the backplane's Redis: a stream
``<prefix>:h:<room>`` (its last ``history_size`` messages, entry ID
``<offset>-0``, fields ``t`` (ms), ``k`` (kind), ``d`` (payload)) and a hash
``<prefix>:hm:<room>`` (``e`` epoch, ``o`` last offset, ``r`` the Redis run
that numbered it). One script, run atomically by Redis, numbers a message,
stores it and publishes it on the room's channel with its position
(``fastws.cluster.envelope``, ``KEPT``): every node, the sender's included,
delivers it from there, so all nodes deliver a room's messages in offset
order, and a client recovers on whichever node it reconnects to.

The cost: a message of a room with history is delivered, even on its own
node, only once Redis has numbered it (one round trip). Rooms without history
keep the backplane's usual path (local delivery at once, pub/sub across).

Epochs: a new epoch starts when the room's hash is missing (never written,
expired after ``history_ttl`` without a message, Redis restarted empty) or was
written by another Redis run (a restart, perhaps from an older snapshot, whose
offsets may lag what clients saw): offsets are never reused within an epoch.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from typing import TYPE_CHECKING, Any, Hashable

from fastws.cluster.redis_link import Pending
from fastws.errors import BackplaneError, RedisError
from fastws.runtime.history import HistoryMessage, RoomChoice

if TYPE_CHECKING:
    from fastws.cluster.relay import RedisRelay

__all__ = ["RedisHistory", "ShardedHistory", "PUBLISH_SCRIPT", "READ_SCRIPT", "close_v1",
           "reply_of"]

log = logging.getLogger("fastws.backplane")

# KEYS: stream, hash, the instance's count of instance-list changes. ARGV:
# channel, envelope head (through "<seq>:"), payload, kind, size, ttl (s), epoch
# prefix, run id. Returns {epoch, offset}. Each entry is stamped with Redis's
# clock, not a node's: nodes' clocks may disagree. The stamp (run id and that
# count) is read here, in the script, so every node numbers with the same one.
PUBLISH_SCRIPT = """
local m = redis.call('HMGET', KEYS[2], 'e', 'o', 'r')
local epoch, offset = m[1], tonumber(m[2] or '0')
local t = redis.call('TIME')
local stamp = ARGV[8] .. '/' .. (redis.call('GET', KEYS[3]) or '0')
if not epoch or m[3] ~= stamp then
  epoch = ARGV[7] .. string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))
  offset = 0
  redis.call('DEL', KEYS[1])
end
offset = offset + 1
redis.call('HSET', KEYS[2], 'e', epoch, 'o', offset, 'r', stamp)
redis.call('EXPIRE', KEYS[2], ARGV[6])
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[5], offset .. '-0', 't', t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000)), 'k', ARGV[4], 'd', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. epoch .. ':' .. offset .. ':' .. ARGV[3])
return {epoch, offset}
"""

# KEYS: stream, hash, the count of list changes. ARGV: first offset wanted, count (0: the last ARGV[3]
# instead; both 0: no entries), last n, run id, touch ("1": a room without a current epoch gets one
# now, at offset 0, as a join needs a position), epoch prefix, ttl (s).
# Returns {epoch, last offset, entries, Redis's clock in ms}, or {} for a room
# without a current epoch.
READ_SCRIPT = """
local m = redis.call('HMGET', KEYS[2], 'e', 'o', 'r')
local t = redis.call('TIME')
local stamp = ARGV[4] .. '/' .. (redis.call('GET', KEYS[3]) or '0')
if not m[1] or m[3] ~= stamp then
  if ARGV[5] ~= '1' then return {} end
  m[1] = ARGV[6] .. string.format('%x%05x', tonumber(t[1]), tonumber(t[2]))
  m[2] = '0'
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', m[1], 'o', 0, 'r', stamp)
  redis.call('EXPIRE', KEYS[2], ARGV[7])
end
local items
if tonumber(ARGV[2]) > 0 then
  items = redis.call('XRANGE', KEYS[1], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
elseif tonumber(ARGV[3]) > 0 then
  items = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[3])
else
  items = {}  -- the position alone (COUNT 0 would answer a null for a stream that exists)
end
return {m[1], m[2], items, t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))}
"""

_KINDS = (b"1", b"2", b"3")


async def reply_of(pending: Any) -> Any:
    """The store's reply to ``pending`` (a message on its way: its ``reply``,
    and a ``waiter`` made here when the reply has not come yet)."""
    reply = pending.reply
    if reply is None:
        pending.waiter = asyncio.get_running_loop().create_future()
        reply = await pending.waiter
    return reply


def close_v1(registry: Any, keeps: Any, rooms: list[str], why: str) -> None:
    """Close the ``fastws.v1`` members of those ``rooms`` that keep history
    (``keeps(room)``) with 1013, so they reconnect and recover (or are told
    they cannot) rather than miss messages without a word; logged once."""
    closing = 0
    for room in rooms:
        if not keeps(room):
            continue
        for member in registry.members(room):
            if getattr(member, "v1", False) and member.ready_state == 1:
                member.close(1013, "backplane lost: reconnect to recover")
                closing += 1
    if closing:
        log.warning("backplane: closed %d fastws.v1 connection(s) with 1013 so they %s",
                    closing, why)


class _Stored(Pending):
    """The reply to one publish: counted when it comes (in the read callback:
    one per message, so no future), kept for ``app.publish`` to wait on."""

    __slots__ = ("history", "reply", "waiter", "room", "args", "slot", "addr", "counted", "order")

    def __init__(self, history: RedisHistory, room: str, args: tuple[Any, ...]) -> None:
        self.history = history
        self.reply: Any = None
        self.waiter: asyncio.Future | None = None
        self.room = room
        self.args = args            # the script's arguments after its keys
        self.slot = -1              # in a Redis Cluster, the room's slot,
        self.addr = ""              # the master it was sent to,
        self.counted: Any = None    # and the hold that waits for its answer
        self.order = 0              # where it goes in a hold's queue (a cluster's count)

    def resend(self) -> None:
        """Run the script again (a Redis Cluster moved the room's slot)."""
        self.history.relay.resend_history(self)

    def on_reply(self, reply: Any) -> None:
        on_bounce = self.history.relay.on_bounce
        if on_bounce is not None and (self.counted is not None or isinstance(reply, RedisError)):
            # A Redis Cluster (ClusterRelay): an answer a hold waits for, or
            # an error: a MOVED, ASK or TRYAGAIN is sent again where the slot
            # is now, any other comes back through fail().
            on_bounce(self, reply)
            if isinstance(reply, RedisError):
                return
        self._finish(reply)

    def fail(self, exc: Exception) -> None:
        """Not stored (given up by a Redis Cluster's relay)."""
        self._finish(exc if isinstance(exc, RedisError) else RedisError(str(exc)))

    def _finish(self, reply: Any) -> None:
        history = self.history
        self.reply = reply
        if isinstance(reply, RedisError):
            history.stats["failed"] += 1
            if not history.failing:
                # Once per run of failures: a lost link fails every message in flight.
                history.failing = True
                log.error("backplane: Redis did not store a room message (%s); until one is "
                          "stored again, failures are counted, not logged", reply)
        else:
            history.stats["stored"] += 1
            history.failing = False
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(reply)


class RedisHistory:
    """The history of every room of one hub, in the backplane's Redis."""

    def __init__(self, relay: RedisRelay, size: int, ttl: float, rooms: Any = None) -> None:
        self.relay = relay
        self.size = size
        self.ttl = ttl
        self._ttl_s = str(max(1, int(ttl + 0.999)))
        self._choice = RoomChoice(rooms)
        prefix = relay.options.prefix
        self._stream_prefix = f"{prefix}:h:"
        self._hash_prefix = f"{prefix}:hm:"
        # Epochs this node starts: a random prefix, then Redis's clock.
        self._epoch_prefix = os.urandom(3).hex()
        self._seq = itertools.count(1)
        #: publish seq -> the socket that sent it (ws.broadcast skips it), until
        #: the message comes back from Redis. (The masters of a Redis Cluster
        #: share both: a message sent again to another master comes back there.)
        self._senders: dict[int, Any] = {}
        self.shared_senders = False
        self.stats = {"stored": 0, "failed": 0}
        self._last: _Stored | None = None
        self.failing = False        # the last reply was a failure (logged once per run)

    # ------------------------------------------------------------------ writing

    def _keys(self, room: str) -> tuple[Any, ...]:
        """The scripts' key count and keys: the room's stream and hash, and
        the instance's count of list changes (none in a Redis Cluster)."""
        key = self.relay.room_key(room)
        gen = self.relay.ring_gen_key
        if gen:
            return 3, self._stream_prefix + key, self._hash_prefix + key, gen
        return 2, self._stream_prefix + key, self._hash_prefix + key

    def keeps(self, room: Hashable) -> bool:
        """Whether ``room`` keeps history (``history_rooms``)."""
        return self._choice(room)

    def publish(self, room: str, kind: int, payload: Any, skip: Any, members: int) -> int:
        """Number, store and publish one message (Redis runs the script); it
        reaches this node's members when Redis sends it back. Returns
        ``members`` (this node's, ``skip`` excluded), who will get it.

        Raises BackplaneError while Redis is unreachable (nothing is published
        anywhere), BroadcastTooLargeError past ``max_message_size``."""
        relay = self.relay
        payload = relay.as_payload(room, payload)
        cmd = relay.cmd
        if not relay.connected or cmd is None or relay.run_id is None:
            self.stats["failed"] += 1
            raise BackplaneError(f"backplane: Redis at {relay.url.safe} is not reachable: a "
                                 f"message to room {room!r}, which keeps history, is published "
                                 f"nowhere until it is back")
        seq = next(self._seq)
        if skip is not None:
            if len(self._senders) >= 65536:
                self._senders.clear()       # their messages never came back: a lost link
            self._senders[seq] = skip
        head = relay.kept_header(kind) + b"%d:" % seq
        stored = _Stored(self, room, (head, payload, _KINDS[kind - 1]))
        if relay.on_hold is not None:
            stored.slot = relay.slot_of(room)
            if relay.on_hold(stored):
                self._last = stored
                return members      # waits behind a slot that moved
        self.send(stored)
        self._last = stored
        return members

    def send(self, stored: _Stored) -> None:
        """Run the publish script for ``stored`` on this history's Redis."""
        relay = self.relay
        head, payload, kind = stored.args
        stored.history = self
        if not relay.connected or relay.cmd is None or relay.run_id is None:
            stored.on_reply(RedisError(f"Redis at {relay.url.safe} is not reachable"))
            return
        room = stored.room
        relay.cmd.call(stored, "EVALSHA", relay.publish_sha, *self._keys(room),
                       relay.channel_of(room), head, payload, kind, self.size, self._ttl_s,
                       self._epoch_prefix, relay.run_id)

    async def stored_last(self) -> tuple[str, int]:
        """The position Redis gave the message ``publish`` sent last, once it
        has (``app.publish``); BackplaneError if Redis did not confirm it."""
        stored, self._last = self._last, None
        if stored is None:
            raise RuntimeError("no message was published to a room with history")
        reply = await reply_of(stored)
        if isinstance(reply, RedisError):
            # The link went with the message in flight (Redis may or may not
            # have stored it), or the script failed: told as Redis being down.
            raise BackplaneError(f"backplane: Redis at {self.relay.url.safe} did not confirm "
                                 f"the message: {reply}")
        epoch, offset = reply
        return epoch.decode(), int(offset)

    def sender(self, seq: int) -> Any:
        """The socket of this node that published message ``seq`` (to skip), if any."""
        return self._senders.pop(seq, None)

    def lost(self) -> None:
        """The links to Redis went: what is in flight will not come back, and
        what other nodes publish until the links are back never reaches this
        node. So each ``fastws.v1`` member of a room kept here is closed with
        1013: it reconnects (here or on another node) and recovers what it
        missed, or is told it cannot; left connected, it would miss messages
        without a word. Plain members stay (at most once, as always)."""
        if not self.shared_senders:
            self._senders.clear()   # (shared by a cluster's masters: kept, bounded)
        owns = self.relay.owns
        self._close_v1([r for r in self.relay.registry.names() if owns(r)],
                       "recover what the lost link would have brought")

    def moved(self, room: str) -> None:
        """A Redis Cluster gave ``room``'s slot to another master: until this
        node is subscribed there, what is published to the room does not
        reach it. Its ``fastws.v1`` members are closed with 1013, as when the
        link is lost, to recover (or be told they cannot)."""
        self._close_v1([room], f"recover what room {room!r} may have missed moving to "
                       f"another master")

    def _close_v1(self, rooms: list[str], why: str) -> None:
        close_v1(self.relay.registry, self._choice, rooms, why)

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is live (the relay's)."""
        await self.relay.joined(room)

    async def caught_up(self, room: str) -> None:
        """Wait until what Redis published before now has come through (the relay's)."""
        await self.relay.caught_up()

    def sweep(self, now: Any = None) -> None:
        """Nothing to do here: Redis trims and expires the streams itself."""

    # ------------------------------------------------------------------ reading

    async def _read(self, room: Hashable, first: int, count: int, last: int = 0,
                    touch: bool = False) -> list[Any]:
        relay = self.relay
        if not relay.connected or relay.cmd is None or relay.run_id is None:
            raise BackplaneError(f"backplane: Redis at {relay.url.safe} is not reachable")
        try:
            return await relay.cmd.command("EVALSHA", relay.read_sha, *self._keys(str(room)),
                                           first, count, last,
                                           relay.run_id, "1" if touch else "0",
                                           self._epoch_prefix, self._ttl_s)
        except RedisError as exc:
            raise BackplaneError(f"backplane: reading room {room!r}'s history from "
                                 f"{relay.url.safe} failed: {exc}") from None

    def _entries(self, items: list[Any], now_ms: bytes) -> list[tuple[int, int, bytes]]:
        """(offset, kind, payload) of stream entries not past ``history_ttl``
        at ``now_ms`` (Redis's clock, which stamped them)."""
        oldest = int(now_ms) - int(self.ttl * 1000)
        out = []
        for entry_id, fields in items or ():
            values = dict(zip(fields[::2], fields[1::2]))
            if int(values.get(b"t", b"0")) < oldest:
                continue
            out.append((int(entry_id.split(b"-")[0]), int(values[b"k"]), values[b"d"]))
        return out

    async def state(self, room: Hashable, first: int, count: int) -> tuple[str, int, list[tuple[int, int, bytes]]]:
        """For a join: (epoch, last offset, entries from offset ``first``, at
        most ``count``, oldest first, each (offset, kind, payload); ``count``
        0: the position alone). A room without a current epoch (no message
        yet, expired, or numbered by another Redis run: a restart) gets a new
        one now, at offset 0."""
        reply = await self._read(room, first, count, touch=True)
        return reply[0].decode(), int(reply[1]), self._entries(reply[2], reply[3])

    async def read(self, room: Hashable, since: int | None = None, limit: int = 100) -> list[HistoryMessage]:
        """``app.history``: as ``MemoryHistory.read``, from Redis."""
        if limit <= 0 or not self.keeps(room):
            return []
        if since is None:
            reply = await self._read(room, 1, 0, limit)
            items = list(reversed(reply[2])) if reply else []
        else:
            reply = await self._read(room, since + 1, limit)
            items = reply[2] if reply else []
        if not reply:
            return []
        epoch = reply[0].decode()
        return [HistoryMessage(room, epoch, offset, payload.decode() if kind != 2 else payload)
                for offset, kind, payload in self._entries(items, reply[3])]


class ShardedHistory:
    """Room history with the rooms spread over several Redis (``ShardedRelay``'s
    instances, ``ClusterRelay``'s masters): each room's is on its own, in the
    ``RedisHistory`` of that one's relay (``relay.shard(room)``)."""

    def __init__(self, relay: Any, rooms: Any = None) -> None:
        self.relay = relay
        self._choice = RoomChoice(rooms)
        self._last: Any = None
        options = relay.hub.options
        self.size, self.ttl = options.history_size, options.history_ttl

    def _of(self, room: Hashable) -> Any:
        return self.relay.shard(str(room)).history

    @property
    def stats(self) -> dict[str, int]:
        """Every instance's history counters summed."""
        out: dict[str, int] = {}
        for s in self.relay.shards:
            for k, v in s.history.stats.items():
                out[k] = out.get(k, 0) + v
        return out

    def keeps(self, room: Hashable) -> bool:
        """Whether ``room`` keeps history (``history_rooms``)."""
        return self._choice(room)

    def publish(self, room: str, kind: int, payload: Any, skip: Any, members: int) -> int:
        """Number, store and publish on the room's instance (``RedisHistory.publish``)."""
        history = self.relay.shard(room).history
        members = history.publish(room, kind, payload, skip, members)
        self._last = history
        return members

    async def stored_last(self) -> tuple[str, int]:
        """The position the last published message got (``RedisHistory.stored_last``)."""
        history, self._last = self._last, None
        if history is None:
            raise RuntimeError("no message was published to a room with history")
        return await history.stored_last()

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is live."""
        await self.relay.joined(room)

    async def caught_up(self, room: str) -> None:
        """Wait until ``room``'s instance has delivered what it published before now."""
        await self.relay.caught_up(room)

    async def state(self, room: Hashable, first: int, count: int) -> tuple[str, int, list[tuple[int, int, bytes]]]:
        """For a join, from the room's instance (``RedisHistory.state``)."""
        return await self._following(lambda: self._of(room).state(room, first, count))

    async def _following(self, read: Any) -> Any:
        """``read()``; in a Redis Cluster, again (a few times) after a MOVED,
        ASK or TRYAGAIN, once the relay has read the slot map again."""
        moved = getattr(self.relay, "_moved", None)
        for attempt in range(6):
            try:
                return await read()
            except BackplaneError as exc:
                text = str(exc)
                if moved is None or attempt == 5 or not any(
                        w in text for w in (": MOVED ", ": ASK ", ": TRYAGAIN")):
                    raise
                moved()
                await asyncio.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    async def read(self, room: Hashable, since: int | None = None, limit: int = 100) -> list[HistoryMessage]:
        """``app.history``, from the room's instance."""
        if not self.keeps(room):
            return []
        return await self._following(lambda: self._of(room).read(room, since, limit))

    def sweep(self, now: Any = None) -> None:
        """Nothing to do: Redis trims and expires the streams itself."""
