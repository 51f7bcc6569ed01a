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
import logging
import os
from typing import TYPE_CHECKING, Any, Hashable

from fastws.cluster.envelope import KEPT
from fastws.cluster.redis_link import Pending
from fastws.errors import BackplaneError, RedisError
from fastws.runtime.history import HistoryMessage, RoomChoice

if TYPE_CHECKING:
    from fastws.cluster.relay import RedisRelay

__all__ = ["RedisHistory", "PUBLISH_SCRIPT", "READ_SCRIPT"]

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


class _Stored(Pending):
    """The reply to one publish: counted when it comes (in the read callback:
    one per message, so no future), kept for ``app.publish`` to wait on."""

    __slots__ = ("history", "reply", "waiter")

    def __init__(self, history: RedisHistory) -> None:
        self.history = history
        self.reply: Any = None
        self.waiter: asyncio.Future | None = None

    def on_reply(self, reply: Any) -> None:
        self.reply = reply
        history = self.history
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
        self._seq = 0
        #: publish seq -> the socket that sent it (ws.broadcast skips it), until
        #: the message comes back from Redis.
        self._senders: dict[int, Any] = {}
        self.stats = {"stored": 0, "failed": 0}
        self._last: _Stored | None = None
        self.failing = False        # the last reply was a failure (logged once per run)

    # ------------------------------------------------------------------ writing

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
        self._seq += 1
        seq = self._seq
        if skip is not None:
            if len(self._senders) >= 65536:
                self._senders.clear()       # their messages never came back: a lost link
            self._senders[seq] = skip
        head = relay.kept_header(kind) + b"%d:" % seq
        stored = _Stored(self)
        cmd.call(stored, "EVALSHA", relay.publish_sha, 3, self._stream_prefix + room,
                 self._hash_prefix + room, relay.ring_gen_key, relay.channel_of(room), head, payload,
                 _KINDS[kind - 1], self.size, self._ttl_s, self._epoch_prefix, relay.run_id)
        self._last = stored
        return members

    async def stored_last(self) -> tuple[str, int]:
        """The position Redis gave the message ``publish`` sent last, once it
        has (``app.publish``); BackplaneError if Redis did not confirm it."""
        stored, self._last = self._last, None
        if stored is None:
            raise RuntimeError("no message was published to a room with history")
        reply = stored.reply
        if reply is None:
            stored.waiter = asyncio.get_running_loop().create_future()
            reply = await stored.waiter
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
        self._senders.clear()
        registry = self.relay.registry
        closing = 0
        owns = self.relay.owns
        for room in registry.names():
            if not self._choice(room) or not owns(room):
                continue
            for member in registry.members(room):
                if getattr(member, "v1", False) and member.ready_state == 1:
                    member.close(1013, "backplane lost: reconnect to recover")
                    closing += 1
        if closing:
            log.warning("backplane: closed %d fastws.v1 connection(s) with 1013 so they "
                        "recover what the lost link would have brought", closing)

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
            return await relay.cmd.command("EVALSHA", relay.read_sha, 3,
                                           self._stream_prefix + str(room),
                                           self._hash_prefix + str(room), relay.ring_gen_key,
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
