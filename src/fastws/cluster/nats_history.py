"""Room history on NATS JetStream, shared by every node of a ``nats://``
backplane (``websocket(history_size=N)``).

The store: one stream per distinct history setting, named
``<prefix>_h<size>_<ttl>`` (dots of the prefix as ``_``), file storage, with
the subjects ``<prefix>.h.<size>.<ttl>.<room token>``, a per-subject limit of
``history_size + 1`` stored messages and ``history_ttl`` as its max age.
JetStream applies limits per stream and numbers messages per stream, so a
room's bound is the per-subject limit and a room's offsets are kept by
fastws. A node has one stored message of a room in flight at a time (the
next one's expectation is this one's sequence, below); what the room's
members send meanwhile waits, and goes as one stored message, a *bundle* of
up to ``BUNDLE`` consecutive messages:

    <epoch>:<last offset>:<prev>:<count>:  then per message  <kind>:<size>:<payload>

``prev`` is the stream sequence of the room's stored message before it. A
node publishes with ``Nats-Expected-Last-Subject-Sequence`` set to the
sequence of the room's last stored message it knows, so two nodes can never
store the same offset: the one JetStream refuses reads the room's last
message and numbers again. The bound counts bundles, so a room keeps at
least ``history_size`` messages (more when they came in bundles).

Live delivery: once JetStream has acknowledged a bundle, the publishing node
delivers it to its own members and publishes it on the room's live subject
(``<prefix>.r.<room token>``, as rooms without history) after its stream
sequence. Messages of one room from several nodes can arrive out of
order, and one can be missing (its node died between the acknowledgement and
the announcement, or the link dropped it): each node delivers a room's
messages in offset order, and fills a gap by reading the missing messages from
the stream, walking ``prev`` back from the message after it. A gap the stream
cannot fill any more (trimmed) is counted and its room's ``fastws.v1``
members are closed with 1013 to recover, as when the link is lost.

A node subscribed to a room reads the room's last message once its
subscription is confirmed: what was stored before it is the joins' business
(read by ``state``), everything after it comes live or is filled.

Epochs: a room with no message in the stream (never written, expired after
``history_ttl``, the stream deleted or its storage lost) starts a new epoch
at offset 1. A join to such a room stores an epoch marker (offset 0, read by
nobody else) so that it gets a position at once, as with Redis. A room whose
last message reads older than one this node saw stored (acknowledged
messages lost: memory storage, or file storage after a machine crash) also
starts a new epoch. A NATS restart with file storage keeps the stream: the
epochs and offsets go on.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any, Hashable

from fastws.cluster.envelope import KEPT, header
from fastws.cluster.history import close_v1, reply_of
from fastws.cluster.nats_link import subject_token
from fastws.errors import BackplaneError, NatsError
from fastws.runtime.history import HistoryMessage, RoomChoice

if TYPE_CHECKING:
    from fastws.cluster.nats_relay import NatsRelay

__all__ = ["JetStreamHistory"]

log = logging.getLogger("fastws.backplane")

_WRONG_LAST = 10071     # JetStream: the subject's last sequence is not the expected one
_NOT_FOUND = 10037      # JetStream: no message found
_NO_STREAM = 10059      # JetStream: stream not found
_MAX_RETRIES = 50       # numbering again after a refusal (another node published first)
#: How long a room's gap may wait for the message in flight from another
#: node before it is read from the stream.
GAP_WAIT = 0.05
_WALK = 64              # up to this many entries back, a read walks `prev`
_EXPECT = b"NATS/1.0\r\nNats-Expected-Last-Subject-Sequence: %d\r\n\r\n"
#: Messages of one room stored as one JetStream message, at most.
BUNDLE = 32
#: Messages of one room that may wait for a gap before the gap is given up;
#: and that may wait to be stored before a publish is refused.
MAX_WAITING = 10_000


class _NoStream(NatsError):
    """Nobody answers on the subject: JetStream is off, or the stream is gone."""


class _Kept:
    """One message on its way to JetStream; ``reply`` is (epoch, offset) once
    stored, or the error."""

    __slots__ = ("kind", "payload", "skip", "reply", "waiter")

    def __init__(self, kind: int, payload: bytes, skip: Any) -> None:
        self.kind = kind            # 0: the epoch marker a join stores
        self.payload = payload
        self.skip = skip
        self.reply: Any = None
        self.waiter: asyncio.Future | None = None

    def done(self, reply: Any) -> None:
        self.reply = reply
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(reply)


class _Tx:
    """What this node knows of a room's last stored message, and its queue."""

    __slots__ = ("epoch", "offset", "seq", "queue", "task", "busy", "sending", "retries",
                 "recreated", "subject", "live")

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.offset = 0
        self.seq: int | None = None       # None: unknown, read before numbering
        self.queue: collections.deque[_Kept] = collections.deque()
        self.task: asyncio.Task | None = None   # reading the room's last message
        self.busy = False                   # a message or a read in flight
        self.sending: tuple[str, int, int] = ("", 0, 0)    # its epoch, offset, prev
        self.retries = 0
        self.recreated = False
        self.subject = b""                  # the room's subject in the stream,
        self.live = b""                     # and its live one


class _Rx:
    """A subscribed room's delivery order on this node."""

    __slots__ = ("ready", "epoch", "last", "pending", "early", "top", "top_seq", "retired",
                 "waiters", "timer", "filling", "sid", "foreign", "checking")

    def __init__(self, sid: int) -> None:
        self.sid = sid              # the subscription it belongs to
        self.ready = False          # the baseline (the room's last message) is read
        self.epoch: str | None = None
        self.last = 0               # the last offset delivered here
        #: offset -> (seq, prev, kind, payload, skip), waiting for the ones before
        self.pending: dict[int, tuple] = {}
        self.early: list[tuple] = []    # what came before the baseline was read
        self.top = 0                # the last offset known stored (a read, an announcement)
        self.top_seq = 0
        #: Epochs the room left (the newest last): their stragglers are dropped.
        self.retired: dict[str, None] = {}
        #: Bundles of an epoch not yet known to be the room's, until a read says.
        self.foreign: list[tuple] = []
        self.checking: asyncio.Task | None = None
        self.waiters: list[tuple[int, asyncio.Future]] = []
        self.timer: asyncio.TimerHandle | None = None
        self.filling: asyncio.Task | None = None


class _Msg:
    """One stored message of the stream: a bundle of a room's consecutive
    messages (``entries``, each (offset, kind, payload)) through ``offset``;
    an epoch marker has none (offset 0)."""

    __slots__ = ("seq", "epoch", "offset", "prev", "first", "entries")

    def __init__(self, seq: int, data: bytes) -> None:
        head = data.split(b":", 4)
        if len(head) != 5 or not head[0]:
            raise ValueError("a stored message is not <epoch>:<offset>:<prev>:<count>:")
        self.seq = seq
        self.epoch = head[0].decode("ascii")
        self.offset, self.prev, n = int(head[1]), int(head[2]), int(head[3])
        self.first = self.offset - n + 1
        if n < 0 or self.first < 1 and n:
            raise ValueError("a stored message's offsets are not valid")
        rest = head[4]
        entries = []
        pos = 0
        for offset in range(self.first, self.offset + 1):
            a = rest.index(b":", pos)
            b = rest.index(b":", a + 1)
            kind, size = int(rest[pos:a]), int(rest[a + 1:b])
            if kind not in (1, 2, 3) or size < 0 or b + 1 + size > len(rest):
                raise ValueError("a stored message's entry is not <kind>:<size>:<payload>")
            entries.append((offset, kind, rest[b + 1:b + 1 + size]))
            pos = b + 1 + size
        if pos != len(rest):
            raise ValueError("a stored message has bytes after its entries")
        self.entries = entries


class JetStreamHistory:
    """The history of every room of one hub, in NATS JetStream (see the module)."""

    def __init__(self, relay: NatsRelay, size: int, ttl: float, rooms: Any = None) -> None:
        self.relay = relay
        self.size = size
        self.ttl = ttl
        self._choice = RoomChoice(rooms)
        ttl_s = max(1, int(ttl + 0.999))
        p = relay.options.prefix
        self.stream = f"{p.replace('.', '_')}_h{size}_{ttl_s}"
        self._subject_prefix = f"{p}.h.{size}.{ttl_s}."
        self._ttl_ns = ttl_s * 1_000_000_000
        self._api = f"$JS.API.STREAM.MSG.GET.{self.stream}".encode()
        self._tx: dict[str, _Tx] = {}
        self._rx: dict[str, _Rx] = {}
        self._last: _Kept | None = None
        self.stats = {"stored": 0, "failed": 0, "renumbered": 0, "gaps_filled": 0, "gaps_lost": 0}
        self.failing = False
        self.closed = False         # the backplane stopped
        # A bundle's announcement: its kinds are per entry (1 + KEPT says "numbered").
        self._hdr = header(relay._nid, 1 + KEPT)

    # ------------------------------------------------------------------ the stream

    async def ensure_stream(self) -> None:
        """Create the stream, or find it as configured (BackplaneError otherwise:
        no JetStream on the server, or a stream of that name set otherwise)."""
        config = {"name": self.stream, "subjects": [self._subject_prefix + "*"],
                  "retention": "limits", "storage": "file", "discard": "old",
                  "max_msgs_per_subject": self.size + 1, "max_age": self._ttl_ns,
                  "max_msgs": -1, "max_bytes": -1, "max_consumers": -1, "num_replicas": 1,
                  "duplicate_window": min(self._ttl_ns, 120_000_000_000)}
        try:
            reply = await self._request(f"$JS.API.STREAM.CREATE.{self.stream}".encode(),
                                        json.dumps(config).encode())
        except (asyncio.TimeoutError, _NoStream):
            raise BackplaneError(
                f"backplane: NATS at {self.relay.url.safe} did not answer JetStream's API: room "
                f"history (history_size) needs JetStream (nats-server -js)") from None
        error = reply.get("error")
        if error:
            raise BackplaneError(f"backplane: JetStream refused stream {self.stream}: "
                                 f"{error.get('description', error)}")

    async def _request(self, subject: bytes, body: bytes) -> dict:
        """One JetStream API call (publishes go by ``_next``, without a future)."""
        link = self.relay.link
        if link is None or link.closed:
            raise NatsError(f"NATS at {self.relay.url.safe} is not reachable")
        fut, inbox = self.relay.new_request()
        link.write(b"PUB %s %s %d\r\n%s\r\n" % (subject, inbox, len(body), body))
        try:
            data = await asyncio.wait_for(fut, self.relay.options.connect_timeout)
        finally:
            self.relay.forget_request(inbox)
        if not data:
            # The server's "no responders" status (its headers are cut off).
            raise _NoStream(f"no JetStream stream answers on {subject.decode()}")
        reply = json.loads(data)
        if not isinstance(reply, dict):
            raise NatsError("JetStream answered with something that is not a JSON object")
        return reply

    def subject_of(self, room: str) -> str:
        """The room's subject in the stream."""
        return self._subject_prefix + subject_token(room)

    async def _get(self, query: dict[str, Any]) -> _Msg | None:
        """One stored message (``{"seq": n}``, ``{"last_by_subj": s}``,
        ``{"seq": n, "next_by_subj": s}``), None if there is none."""
        reply = await self._request(self._api, json.dumps(query).encode())
        error = reply.get("error")
        if error:
            code = error.get("err_code") if type(error) is dict else None
            if code == _NOT_FOUND:
                return None
            if code == _NO_STREAM:
                raise _NoStream(f"JetStream has no stream {self.stream}")
            raise NatsError(f"JetStream: {error.get('description', error)}"
                            if type(error) is dict else f"JetStream: {error}")
        m = reply["message"]
        return _Msg(int(m["seq"]), base64.b64decode(m.get("data") or ""))

    # ------------------------------------------------------------------ writing

    def keeps(self, room: Hashable) -> bool:
        """Whether ``room`` keeps history (``history_rooms``)."""
        return self._choice(room)

    def publish(self, room: str, kind: int, payload: Any, skip: Any, members: int) -> int:
        """Number and store one message (JetStream acknowledges it), then
        deliver it here and announce it to the other nodes. Returns
        ``members`` (this node's, ``skip`` excluded), who will get it.

        Raises BackplaneError while NATS is unreachable (nothing is published
        anywhere), BroadcastTooLargeError past ``max_message_size``."""
        relay = self.relay
        link = relay.link
        payload = relay.as_payload(room, payload, None if link is None else link.max_payload - 200)
        if not relay.connected or link is None:
            self.stats["failed"] += 1
            raise BackplaneError(f"backplane: NATS at {relay.url.safe} is not reachable: a "
                                 f"message to room {room!r}, which keeps history, is published "
                                 f"nowhere until it is back")
        tx = self._tx.get(room)
        if tx is not None and len(tx.queue) >= MAX_WAITING:
            self.stats["failed"] += 1
            raise BackplaneError(f"backplane: JetStream at {relay.url.safe} is not keeping up "
                                 f"with room {room!r}: {len(tx.queue)} messages wait to be "
                                 f"stored; this one is published nowhere")
        kept = _Kept(kind, payload, skip)
        self._queue(room, kept)
        self._last = kept
        return members

    def _queue(self, room: str, kept: _Kept) -> None:
        tx = self._tx.get(room)
        if tx is None:
            if len(self._tx) >= 4096:
                # Bounded: forget rooms with nothing in flight (read again when used).
                for r in [r for r, t in self._tx.items() if not t.busy]:
                    del self._tx[r]
            tx = self._tx[room] = _Tx()
        tx.queue.append(kept)
        if not tx.busy:
            # Sent at the end of this loop iteration, not now: what the same
            # read of a socket brings (a client's burst) goes as one bundle.
            tx.busy = True
            self.relay.loop.call_soon(self._next, room, tx)

    def _next(self, room: str, tx: _Tx) -> None:
        """Send the first of ``room``'s queued messages to JetStream (its
        answer comes to ``_acked``), or read the room's last message first.
        Driven by callbacks: a message costs no task, future or timer."""
        while tx.queue:
            kept = tx.queue[0]
            if self.closed:
                tx.busy = False
                self._fail_all(tx, "the backplane stopped")
                return
            if tx.seq is None:
                tx.busy = True
                tx.task = self.relay.loop.create_task(self._reread(room, tx))
                return
            if kept.kind == 0 and tx.epoch is not None:
                # A join's marker, and the room has its epoch by now.
                tx.queue.popleft()
                kept.done((tx.epoch, tx.offset))
                continue
            link = self.relay.link
            if link is None or link.closed:
                tx.busy = False
                self._fail_all(tx, f"NATS at {self.relay.url.safe} is not reachable")
                return
            epoch = tx.epoch or os.urandom(4).hex() + f"{time.time_ns() // 1000:x}"
            offset = tx.offset if tx.epoch else 0
            prev = tx.seq
            # What waited behind the last message goes as one (a bundle, up
            # to BUNDLE entries and what NATS takes in one message): a room
            # keeps one message in flight, not one publish.
            parts = []
            if kept.kind:
                budget = link.max_payload - 256
                for k in tx.queue:
                    if not k.kind or len(parts) >= 2 * BUNDLE or \
                            parts and budget < len(k.payload) + 32:
                        break
                    budget -= len(k.payload) + 32
                    parts.append(b"%d:%d:" % (k.kind, len(k.payload)))
                    parts.append(k.payload)
            n = len(parts) // 2
            tx.sending = (epoch, offset + n, prev, n)
            parts.insert(0, b"%s:%d:%d:%d:" % (epoch.encode(), offset + n, prev, n))
            data = b"".join(parts)
            head = _EXPECT % prev
            inbox = self.relay.expect(self._acked, room, tx)
            line = b"HPUB %s %s %d %d\r\n" % (tx.subject or self._subject(room, tx), inbox,
                                              len(head), len(head) + len(data))
            link.write_parts((line, head, data, b"\r\n"),
                             len(line) + len(head) + len(data) + 2)
            tx.busy = True
            return
        tx.busy = False

    def _subject(self, room: str, tx: _Tx) -> bytes:
        tx.subject = self.subject_of(room).encode()
        return tx.subject

    def _acked(self, room: str, tx: _Tx, data: bytes | None) -> None:
        """JetStream's answer to the message ``_next`` sent (None: none came)."""
        if not tx.queue:
            tx.busy = False
            return
        if not data:
            tx.seq = None
            if data is None:
                # No answer (in time, or the link went): perhaps stored. Read
                # the room's last message to tell before anything else goes.
                tx.task = self.relay.loop.create_task(self._reread(room, tx, confirm=True))
                return
            if not tx.recreated:
                # Nobody answers on the subject: the stream was deleted under
                # the node (or JetStream lost it). Made again, once, then numbered afresh.
                tx.recreated = True
                tx.task = self.relay.loop.create_task(self._reread(room, tx, again=True))
                return
            self._fail_sent(tx, f"no JetStream stream answers on {self.subject_of(room)}")
            self._next(room, tx)
            return
        try:
            ack = json.loads(data)
            error = ack.get("error")
            seq = None if error else int(ack["seq"])
        except (ValueError, KeyError, TypeError, AttributeError):
            error, seq = {"description": "an answer that is not JetStream's"}, None
        if error:
            tx.seq = None
            if type(error) is dict and error.get("err_code") == _WRONG_LAST and \
                    tx.retries < _MAX_RETRIES:
                # Another node stored the room's next message first: read, number again.
                tx.retries += 1
                self.stats["renumbered"] += 1
            else:
                self._fail_sent(tx, str(error.get("description", error)
                                        if type(error) is dict else error))
            self._next(room, tx)
            return
        self._stored(room, tx, seq)

    def _stored(self, room: str, tx: _Tx, seq: int) -> None:
        """What ``_next`` sent is stored at stream sequence ``seq``: its
        messages are told their positions, delivered here and announced."""
        epoch, offset, prev, n = tx.sending
        tx.retries = 0
        tx.recreated = False
        tx.epoch, tx.offset, tx.seq = epoch, offset, seq
        kept = tx.queue[0]
        if not n:
            tx.queue.popleft()
            kept.done((epoch, offset))        # a join's marker
            self._next(room, tx)
            return
        entries = []
        skips = []
        queue = tx.queue
        first = offset - n + 1
        parts = [b"%d:%s:%d:%d:%d:" % (seq, epoch.encode(), offset, prev, n)]
        for i in range(n):
            k = queue.popleft()
            k.done((epoch, first + i))
            entries.append((first + i, k.kind, k.payload))
            skips.append(k.skip)
            parts.append(b"%d:%d:" % (k.kind, len(k.payload)))
            parts.append(k.payload)
        self.stats["stored"] += n
        self.failing = False
        relay = self.relay
        link = relay.link
        if link is not None:
            out = self._hdr + b"".join(parts)
            if not tx.live:
                tx.live = relay.subject_of(room).encode()
            head = b"PUB %s %d\r\n" % (tx.live, len(out))
            link.write_parts((head, out, b"\r\n"), len(head) + len(out) + 2)
        rx = self._rx.get(room)
        if rx is not None:
            self._arrive(room, rx, (epoch, seq, prev, offset, entries, skips))
        self._next(room, tx)

    def _fail_sent(self, tx: _Tx, why: str) -> None:
        """What ``_next`` sent was not confirmed: each of its messages fails."""
        for _ in range(max(1, tx.sending[3])):
            if tx.queue:
                self._failed(tx.queue.popleft(), why)

    async def _reread(self, room: str, tx: _Tx, again: bool = False,
                      confirm: bool = False) -> None:
        """Read the room's last message into ``tx`` (after making the stream
        ``again``; ``confirm``: and find whether what was sent and not
        answered was stored), then go on with its queue. If JetStream does
        not answer, what waits fails at once (not one message per timeout)."""
        try:
            if again:
                log.warning("backplane: no JetStream stream answers for room %r: creating "
                            "stream %s again", room, self.stream)
                await self.ensure_stream()
            try:
                last = await self._refresh(room, tx)
            except _NoStream:
                if tx.recreated:
                    raise
                tx.recreated = True
                await self.ensure_stream()
                last = await self._refresh(room, tx)
            if confirm and tx.queue:
                # Stored, it is the room's first message after `prev` (the
                # expectation it was sent with sees to that).
                sent = tx.sending[:3]
                m = last
                if m is not None and (m.epoch, m.offset, m.prev) != sent and m.seq > sent[2]:
                    m = await self._get({"seq": sent[2] + 1,
                                         "next_by_subj": self.subject_of(room)})
                if m is not None and (m.epoch, m.offset, m.prev) == sent:
                    tx.task = None
                    self._stored(room, tx, m.seq)
                    return
                self._fail_sent(tx, "no answer from JetStream, and it did not store it")
        except asyncio.CancelledError:
            tx.busy = False
            tx.task = None
            self._fail_all(tx, "the backplane stopped")
            raise
        except Exception as exc:
            if not isinstance(exc, (NatsError, OSError, asyncio.TimeoutError, ValueError,
                                    KeyError, BackplaneError)):
                log.exception("backplane: reading room %r's last message from JetStream "
                              "failed", room)
            tx.seq = None
            tx.recreated = False
            tx.busy = False
            tx.task = None
            self._fail_all(tx, str(exc) or "no answer from JetStream")
            return
        tx.task = None
        self._next(room, tx)

    def _fail_all(self, tx: _Tx, why: str) -> None:
        while tx.queue:
            self._failed(tx.queue.popleft(), why)

    def _failed(self, kept: _Kept, why: str) -> None:
        self.stats["failed"] += 1
        if not self.failing:
            self.failing = True
            log.error("backplane: JetStream did not store a room message (%s); until one is "
                      "stored again, failures are counted, not logged", why)
        kept.done(BackplaneError(f"backplane: JetStream at {self.relay.url.safe} did not "
                                 f"confirm the message: {why}"))

    async def _refresh(self, room: str, tx: _Tx) -> _Msg | None:
        """Read the room's last stored message into ``tx`` (and return it); a
        room that went back (acknowledged messages lost) gets a new epoch."""
        last = await self._get({"last_by_subj": self.subject_of(room)})
        if last is None:
            tx.epoch, tx.offset, tx.seq = None, 0, 0
        elif last.epoch == tx.epoch and last.offset < tx.offset:
            log.warning("backplane: room %r's history in JetStream lost messages this node saw "
                        "stored (offset %d, now %d): a new epoch", room, tx.offset, last.offset)
            tx.epoch, tx.offset, tx.seq = None, 0, last.seq
        else:
            tx.epoch, tx.offset, tx.seq = last.epoch, last.offset, last.seq
        return last

    async def stored_last(self) -> tuple[str, int]:
        """The position the message ``publish`` sent last got, once JetStream
        stored it (``app.publish``); BackplaneError if it did not."""
        kept, self._last = self._last, None
        if kept is None:
            raise RuntimeError("no message was published to a room with history")
        reply = await reply_of(kept)
        if isinstance(reply, Exception):
            raise reply
        return reply

    # ------------------------------------------------------------------ delivering in order

    def watch(self, room: str, sid: int) -> None:
        """The node subscribes to ``room`` (subscription ``sid``): keep what
        comes until ``baseline``."""
        rx = self._rx.get(room)
        if rx is None or rx.sid != sid:
            if rx is not None:
                self._end(rx, None)
            self._rx[room] = _Rx(sid)

    def unwatch(self, room: str) -> None:
        """The node unsubscribed from ``room``."""
        rx = self._rx.pop(room, None)
        if rx is not None:
            self._end(rx, None)

    def _end(self, rx: _Rx, exc: Exception | None) -> None:
        if rx.timer is not None:
            rx.timer.cancel()
        for task in (rx.filling, rx.checking):
            if task is not None:
                task.cancel()
        for _, fut in rx.waiters:
            if not fut.done():
                fut.set_exception(exc or BackplaneError("the room's subscription ended"))
        rx.waiters.clear()

    async def baseline(self, room: str, sid: int) -> None:
        """Read ``room``'s last message: what follows it is delivered here
        (for subscription ``sid``: a later one reads its own)."""
        rx = self._rx.get(room)
        if rx is None or rx.ready or rx.sid != sid:
            return
        last = await self._get({"last_by_subj": self.subject_of(room)})
        if self._rx.get(room) is not rx or rx.ready:
            return
        if last is not None:
            rx.epoch, rx.last, rx.top, rx.top_seq = last.epoch, last.offset, last.offset, last.seq
        rx.ready = True
        early, rx.early = rx.early, []
        for bundle in early:
            self._take(room, rx, *bundle)

    def announced(self, room: str, data: bytes) -> None:
        """Another node's stored message of ``room``: ``<seq>:`` and what the
        stream holds (ValueError if it is not that)."""
        rx = self._rx.get(room)
        if rx is None:
            return          # no member here
        colon = data.index(b":")
        m = _Msg(int(data[:colon]), data[colon + 1:])
        self._arrive(room, rx, (m.epoch, m.seq, m.prev, m.offset, m.entries, None))

    def _arrive(self, room: str, rx: _Rx, bundle: tuple) -> None:
        if rx.ready:
            self._take(room, rx, *bundle)
        else:
            # Until the baseline is read. Bounded: one dropped here is read
            # back from the stream as a gap, if it is after the baseline.
            if len(rx.early) >= MAX_WAITING:
                del rx.early[0]
            rx.early.append(bundle)

    def _take(self, room: str, rx: _Rx, epoch: str, seq: int, prev: int, last: int,
              entries: list[tuple[int, int, bytes]], skips: list[Any] | None) -> None:
        """A stored bundle of ``room`` (through offset ``last``, stream
        sequence ``seq``): delivered here in offset order."""
        if epoch != rx.epoch:
            if epoch in rx.retired:
                return          # a straggler of an epoch the room left
            if rx.epoch is not None and skips is None:
                # Another node's, of another epoch: a new one of the room's, or
                # a straggler of an older one. The stream says which (its last
                # message). (This node's own was just stored: the room's now.)
                if len(rx.foreign) < MAX_WAITING:
                    rx.foreign.append((epoch, seq, prev, last, entries, skips))
                if rx.checking is None:
                    rx.checking = self.relay.loop.create_task(self._check_epoch(room, rx))
                return
            self._adopt(rx, epoch)
        if last <= rx.last:
            return          # delivered already
        tx = self._tx.get(room)
        if tx is not None and not tx.busy and tx.seq is not None and last > tx.offset:
            # Another node's message: this node numbers after it without a refusal first.
            if epoch == tx.epoch:
                tx.offset, tx.seq = last, seq
            else:
                tx.seq = None
        pending = rx.pending
        for i, (offset, kind, payload) in enumerate(entries):
            if offset > rx.last:
                pending[offset] = (seq, prev, kind, payload, None if skips is None else skips[i])
        if last > rx.top:
            rx.top, rx.top_seq = last, seq
        if len(pending) > MAX_WAITING:
            # The gap does not fill (JetStream does not answer): give it up.
            self._give_up(room, rx, min(pending) - 1)
        self._drain(room, rx)

    def _give_up(self, room: str, rx: _Rx, last: int) -> None:
        """Messages up to ``last`` cannot be delivered here: counted, and
        the room's ``fastws.v1`` members closed to recover them."""
        self.stats["gaps_lost"] += last - rx.last
        log.warning("backplane: room %r: %d message(s) could not be read back from JetStream; "
                    "its fastws.v1 members reconnect to recover", room, last - rx.last)
        rx.last = last
        self._close_v1([room], "recover what the room missed")

    def _adopt(self, rx: _Rx, epoch: str) -> None:
        """The room is in a new epoch: take it from offset 1. Whoever waited
        for the old one to catch up waits no more (its top is moot)."""
        if rx.epoch is not None:
            rx.retired[rx.epoch] = None
            if len(rx.retired) > 16:
                del rx.retired[next(iter(rx.retired))]
        rx.retired.pop(epoch, None)
        rx.epoch, rx.last, rx.top, rx.top_seq = epoch, 0, 0, 0
        rx.pending.clear()
        for _, fut in rx.waiters:
            if not fut.done():
                fut.set_result(None)
        rx.waiters.clear()

    async def _check_epoch(self, room: str, rx: _Rx) -> None:
        """Bundles of another epoch came: read the room's last message; if
        its epoch is theirs, the room moved on (adopt it), else they are
        stragglers (dropped). Tried again every second while JetStream does
        not answer."""
        try:
            last = await self._get({"last_by_subj": self.subject_of(room)})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("backplane: reading room %r's epoch from JetStream failed (%s); trying "
                        "again", room, str(exc) or "no answer")
            await asyncio.sleep(1.0)
            if self._rx.get(room) is rx:
                rx.checking = self.relay.loop.create_task(self._check_epoch(room, rx))
            return
        finally:
            if rx.checking is asyncio.current_task():
                rx.checking = None
        if self._rx.get(room) is not rx:
            return
        foreign, rx.foreign = rx.foreign, []
        if last is not None and last.epoch != rx.epoch:
            self._adopt(rx, last.epoch)
            if last.offset > rx.top:
                rx.top, rx.top_seq = last.offset, last.seq
        for bundle in foreign:
            if bundle[0] == rx.epoch:
                self._take(room, rx, *bundle)
            elif bundle[0] not in rx.retired:
                rx.retired[bundle[0]] = None
                if len(rx.retired) > 16:
                    del rx.retired[next(iter(rx.retired))]
        self._drain(room, rx)

    def _drain(self, room: str, rx: _Rx) -> None:
        pending = rx.pending
        deliver = self.relay.registry.deliver
        while rx.last + 1 in pending:
            rx.last += 1
            _seq, _prev, kind, payload, skip = pending.pop(rx.last)
            if len(payload) > self.relay.max_payload:
                self.relay.stats["oversized"] += 1
                continue
            try:
                deliver(room, kind, payload, skip, (rx.epoch, rx.last))
            except Exception:
                log.exception("backplane: delivering to room %r failed", room)
        if rx.waiters:
            still = []
            for want, fut in rx.waiters:
                if rx.last >= want:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    still.append((want, fut))
            rx.waiters = still
        if (pending or rx.top > rx.last) and rx.timer is None and rx.filling is None:
            rx.timer = self.relay.loop.call_later(GAP_WAIT, self._fill_soon, room, rx)

    def _fill_soon(self, room: str, rx: _Rx) -> None:
        rx.timer = None
        if self._rx.get(room) is rx and rx.filling is None:
            rx.filling = self.relay.loop.create_task(self._fill(room, rx))

    async def _fill(self, room: str, rx: _Rx) -> None:
        """Read what ``room`` misses here from the stream, walking back from
        the first message known after the gap."""
        try:
            while self._rx.get(room) is rx and (rx.pending or rx.top > rx.last):
                for stale in [o for o in rx.pending if o <= rx.last]:
                    del rx.pending[stale]       # (never expected: a loop must not spin on it)
                if not rx.pending and rx.top <= rx.last:
                    break
                epoch = rx.epoch
                if rx.pending:
                    after = min(rx.pending)
                    from_seq = rx.pending[after][1]
                else:
                    after, from_seq = rx.top + 1, rx.top_seq
                got = []
                lost = False
                seq = from_seq
                want = after - 1
                while want > rx.last:
                    m = await self._get({"seq": seq}) if seq else None
                    if m is None or m.epoch != epoch or m.offset != want:
                        lost = True
                        break
                    got.append(m)
                    want = m.first - 1
                    seq = m.prev
                if self._rx.get(room) is not rx or rx.epoch != epoch:
                    continue
                for m in got:
                    for offset, kind, payload in m.entries:
                        if offset > rx.last:
                            rx.pending.setdefault(offset, (m.seq, m.prev, kind, payload, None))
                            self.stats["gaps_filled"] += 1
                if lost and rx.last < want:
                    # Trimmed before this node read it: the members here miss it.
                    self._give_up(room, rx, want)
                elif not got and not lost and not rx.pending and rx.top > rx.last:
                    rx.top = rx.last        # nothing more to find
                self._drain(room, rx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, (NatsError, OSError, asyncio.TimeoutError, ValueError, KeyError)):
                log.warning("backplane: reading room %r's missing messages from JetStream "
                            "failed (%s); trying again", room, str(exc) or "no answer")
            else:
                log.exception("backplane: reading room %r's missing messages failed", room)
            if self._rx.get(room) is rx:
                rx.timer = self.relay.loop.call_later(1.0, self._fill_soon, room, rx)
        finally:
            if rx.filling is asyncio.current_task():
                rx.filling = None

    def _learn(self, room: str, epoch: str, top: int, top_seq: int) -> None:
        """A read saw ``room`` stored up to ``top``: this node delivers that far."""
        rx = self._rx.get(room)
        if rx is None or not rx.ready:
            return
        if epoch != rx.epoch:
            if epoch in rx.retired:
                return          # (read before the room moved on)
            self._adopt(rx, epoch)
        if top > rx.top:
            rx.top, rx.top_seq = top, top_seq
            self._drain(room, rx)

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is live and its
        baseline read (the relay's)."""
        await self.relay.joined(room)

    async def caught_up(self, room: str) -> None:
        """Wait until this node has delivered ``room`` as far as the last read saw it."""
        rx = self._rx.get(room)
        if rx is None or not rx.ready or rx.last >= rx.top:
            return
        fut = self.relay.loop.create_future()
        rx.waiters.append((rx.top, fut))
        if rx.timer is not None:
            rx.timer.cancel()
            rx.timer = None
            self._fill_soon(room, rx)
        try:
            await asyncio.wait_for(fut, self.relay.options.connect_timeout)
        except asyncio.TimeoutError:
            raise BackplaneError(f"backplane: room {room!r} did not catch up with "
                                 f"JetStream in time") from None

    def lost(self) -> None:
        """The link to NATS went: the rooms' order starts again once it is
        back, and each ``fastws.v1`` member of a room kept here is closed
        with 1013 to recover (it would miss what other nodes publish meanwhile)."""
        self.reset()
        for tx in self._tx.values():
            tx.seq = None
        self._close_v1(list(self.relay.registry.names()),
                       "recover what the lost link would have brought")

    def reset(self) -> None:
        """Forget every room's delivery order (a new link subscribes again)."""
        rx, self._rx = self._rx, {}
        for one in rx.values():
            self._end(one, BackplaneError("the link to NATS was lost"))

    def close(self) -> None:
        """The backplane stops: nothing more is read or stored; what waits fails."""
        self.closed = True
        self.reset()
        for tx in self._tx.values():
            if tx.task is not None:
                tx.task.cancel()
            self._fail_all(tx, "the backplane stopped")

    def _close_v1(self, rooms: list[str], why: str) -> None:
        close_v1(self.relay.registry, self._choice, rooms, why)

    def sweep(self, now: Any = None) -> None:
        """Nothing to do here: JetStream trims and expires the stream itself."""

    # ------------------------------------------------------------------ reading

    def _unreachable(self) -> BackplaneError:
        return BackplaneError(f"backplane: NATS at {self.relay.url.safe} is not reachable")

    async def _range(self, room: str, last: _Msg, first: int,
                     count: int) -> list[tuple[int, int, bytes]]:
        """Up to ``count`` stored entries of ``room`` (offset, kind, payload)
        from offset ``first`` through ``last`` (its last stored message),
        oldest first; from the oldest kept if ``first`` is gone."""
        first = max(first, 1)
        if count <= 0 or first > last.offset:
            return []
        bundles: list[_Msg] = []
        if last.offset - first < _WALK:
            # Near the end: walk back by `prev`.
            m: _Msg | None = last
            while m is not None and m.epoch == last.epoch:
                if bundles and m.offset != bundles[-1].first - 1:
                    break                   # not the one before: a hole, read no further
                bundles.append(m)
                if m.first <= first or not m.prev:
                    break
                m = await self._get({"seq": m.prev})
            bundles.reverse()
        else:
            # Far back: find `first` by its sequence (the room's sequences
            # grow with its offsets), then read forward. `found` is the
            # earliest known ending at or after `first`; anything earlier is
            # in [lo, hi).
            subject = self.subject_of(room)
            lo, hi, found = 1, last.seq, last
            while lo < hi:
                mid = (lo + hi) // 2
                m = await self._get({"seq": mid, "next_by_subj": subject})
                if m is None or m.seq >= hi:
                    hi = mid                    # none of the room's in [mid, hi)
                elif m.epoch != last.epoch or m.offset < first:
                    lo = m.seq + 1
                else:
                    found, hi = m, m.seq
            m = found
            got = 0
            while m is not None and got < count and m.epoch == last.epoch and \
                    m.offset <= last.offset:
                if bundles and m.first != bundles[-1].offset + 1:
                    break                       # a hole: read no further
                bundles.append(m)
                got += sum(1 for e in m.entries if e[0] >= first)
                if m.seq >= last.seq:
                    break
                m = await self._get({"seq": m.seq + 1, "next_by_subj": subject})
        out = [e for b in bundles for e in b.entries if e[0] >= first]
        return out[:count]

    async def _read(self, room: str, first: int, count: int,
                    touch: bool) -> tuple[Any, list[tuple[int, int, bytes]]]:
        relay = self.relay
        if not relay.connected or relay.link is None:
            raise self._unreachable()
        try:
            last = await self._get({"last_by_subj": self.subject_of(room)})
            if last is None and touch:
                tx = self._tx.get(room)
                if tx is not None and not tx.busy:
                    tx.seq = None       # what it knows of the room is gone (expired, purged)
                marker = _Kept(0, b"", None)
                marker.waiter = relay.loop.create_future()
                self._queue(room, marker)
                got = await asyncio.wait_for(asyncio.shield(marker.waiter),
                                             2 * relay.options.connect_timeout)
                if isinstance(got, Exception):
                    raise got
                last = await self._get({"last_by_subj": self.subject_of(room)})
            if last is None:
                return None, []
            if first < 0:       # the last -first
                first = last.offset + first + 1
            entries = await self._range(room, last, first, count)
        except (NatsError, OSError, asyncio.TimeoutError, ValueError, KeyError) as exc:
            raise BackplaneError(f"backplane: reading room {room!r}'s history from JetStream "
                                 f"at {relay.url.safe} failed: {str(exc) or 'no answer'}") from None
        self._learn(room, last.epoch, last.offset, last.seq)
        return last, entries

    async def state(self, room: Hashable, first: int, count: int) -> tuple[str, int, list[tuple[int, int, bytes]]]:
        """For a join: (epoch, last offset, entries from offset ``first``, at
        most ``count``, oldest first, each (offset, kind, payload)). A room
        with no message gets a new epoch now, at offset 0."""
        last, entries = await self._read(str(room), first, count, touch=True)
        if last is None:
            raise BackplaneError(f"backplane: room {room!r} has no position in JetStream")
        return last.epoch, last.offset, entries

    async def read(self, room: Hashable, since: int | None = None, limit: int = 100) -> list[HistoryMessage]:
        """``app.history``: as ``MemoryHistory.read``, from JetStream."""
        if limit <= 0 or not self.keeps(room):
            return []
        room = str(room)
        if since is None:
            last, entries = await self._read(room, -limit, limit, touch=False)
        else:
            last, entries = await self._read(room, since + 1, limit, touch=False)
        if last is None:
            return []
        return [HistoryMessage(room, last.epoch, offset, payload.decode() if kind != 2 else payload)
                for offset, kind, payload in entries]
