"""The NATS relay: rooms across processes and machines on NATS (``backplane("nats://host:4222")``).

Every node keeps one connection to NATS (``fastws.cluster.nats_link``) and one
subscription per room that has members here, on the subject
``<prefix>.r.<room>`` (the room name made one valid token by
``subject_token``: two rooms never share a subject). A broadcast is published
once in the backplane's envelope (``fastws.cluster.envelope``) and delivered to
the local members; the connection says ``echo: false``, so NATS never sends a
node its own publishes back. A node subscribes when a room gets its first
local member and unsubscribes ``unsubscribe_linger`` seconds after it lost its
last, so a node receives only the traffic of its own rooms. A join is live
across the cluster once NATS has answered a PING sent after the SUB.

The promise is the Redis backplane's: local delivery never depends on NATS;
across nodes, at most once and in order per publisher per room; a publish
while NATS is unreachable is dropped and counted, never buffered.

Presence needs no store: each node publishes a heartbeat on ``<prefix>.hb``
every ``probe_interval`` (at most ``presence_ttl`` / 3; and one when it connects, which every node answers
with its own), and takes the nodes heard within ``presence_ttl`` as live.
``room_size`` and ``rooms`` ask the live nodes on ``<prefix>.q`` and add up
their answers (each node knows its own rooms exactly); a node that died stops
heartbeating and drops out within ``presence_ttl``, its members with it, and
a join or leave costs NATS nothing. A node that does not answer within
``probe_timeout`` is left out of that answer (logged).

The link is checked by a PING every ``probe_interval``: no PONG within
``probe_timeout`` (a half-open link) and it is reconnected with jittered
backoff, every room resubscribed, and the app told
(``app.cluster.on("lost" | "restored", handler)``).

Room history (``websocket(history_size=N)``) is kept in JetStream
(``fastws.cluster.nats_history``): a room that keeps history is delivered in
offset order on every node, its sender's included, once JetStream has stored
the message. The server needs JetStream on (``nats-server -js``); a node with
history on a server without it does not start, and says so.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from typing import TYPE_CHECKING, Any, Callable

from fastws.cluster.envelope import HEADER_SIZE, header, unpack
from fastws.cluster.envelope import KEPT
from fastws.cluster.nats_history import JetStreamHistory
from fastws.cluster.nats_link import NatsLink, NatsURL, parse_nats_url, subject_token
from fastws.cluster.options import BackplaneOptions
from fastws.cluster.relay_base import RelayBase
from fastws.errors import BackplaneError, NatsError

if TYPE_CHECKING:
    from fastws.runtime.hub import Hub

__all__ = ["NatsRelay"]

log = logging.getLogger("fastws.backplane")

_HB, _QUERY, _ANSWERS, _INBOX = 1, 2, 3, 4   # the node's own subscriptions; rooms' sids follow
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


class NatsRelay(RelayBase):
    """The backplane of one hub on NATS: the registry's relay (see the module)."""

    broker = "NATS"
    _connect_errors = (NatsError, OSError)

    def __init__(self, hub: Hub, options: BackplaneOptions,
                 handlers: dict[str, list[Callable[[], Any]]] | None = None) -> None:
        p = options.prefix
        if not all(_TOKEN.fullmatch(t) for t in p.split(".")):
            raise BackplaneError(f"backplane prefix {p!r} is not a NATS subject: letters, digits, "
                                 f"'_' and '-', tokens split by '.'")
        super().__init__(hub, options, handlers)
        self.url: NatsURL = parse_nats_url(options.url)
        self._room_prefix = f"{p}.r."
        self._hb_subject = f"{p}.hb".encode()
        self._query_subject = f"{p}.q".encode()
        self._answer_subject = f"{p}.a.{self.node_id}"
        self._answer_re = re.compile(re.escape(f"{p}.a.") + "[0-9a-f]{16}")
        self._inbox = f"{p}.i.{self.node_id}."
        self._inbox_b = self._inbox.encode()
        #: inbox subject -> the future awaiting its answer, or
        #: (callback, args, deadline): ``callback(*args, data)``, data None if
        #: it never comes (swept every second, or the link lost).
        self._requests: dict[bytes, Any] = {}
        self._request_seq = 0
        self._sweeping: asyncio.TimerHandle | None = None
        self._hdr = {op: header(self._nid, op) for op in (1, 2, 3)}
        self.link: NatsLink | None = None
        # room -> sid of every room subscribed or about to be; sid -> room
        self._sid_of: dict[str, int] = {}
        self._room_of: dict[int, str] = {}
        self._next_sid = 10
        self._confirmed: set[str] = set()
        self._to_sub: set[str] = set()
        self._to_unsub: set[int] = set()
        self._publish_head: dict[str, bytes] = {}
        self._nodes: dict[str, float] = {}     # node id -> when its heartbeat was last heard
        self._asks: dict[int, tuple[set[str], list[dict], asyncio.Future]] = {}
        self._ask_seq = 0
        #: Room history in JetStream (``websocket(history_size=N)``), or None.
        self.history: JetStreamHistory | None = None
        if hub.options.history_size:
            self.history = JetStreamHistory(self, hub.options.history_size,
                                            hub.options.history_ttl, hub.options.history_rooms)

    def __repr__(self) -> str:
        return (f"<NatsRelay node {self.node_id} {self.url.safe} "
                f"{'connected' if self.connected else 'down'}, {len(self._sid_of)} subjects>")

    # ------------------------------------------------------------------ life

    async def start(self) -> None:
        """Connect (raises BackplaneError naming the URL if NATS cannot be reached)."""
        try:
            await self._connect()
        except NatsError as exc:
            self._stopping = True
            if self._reconnecting is not None:
                self._reconnecting.cancel()
            text = str(exc)
            raise BackplaneError(text if text.startswith("backplane: ") else
                                 f"backplane: {text}") from None
        self._supervisor = self.loop.create_task(self._supervise())
        log.info("backplane: node %s connected to %s", self.node_id, self.url.safe)

    async def stop(self) -> None:
        """Leave the cluster: close the link (the others drop this node within presence_ttl)."""
        self._stop_tasks()
        if self.history is not None:
            self.history.close()
        link, self.link = self.link, None
        self.connected = False
        if link is not None:
            link.on_lost = None
            # Say goodbye first, so the others drop this node at once.
            link.write(b"PUB %s %d\r\n%s\r\n" % (self._hb_subject, len(self._goodbye()),
                                                 self._goodbye()))
            try:
                await asyncio.wait_for(link.ping(), 1.0)
            except (NatsError, asyncio.TimeoutError):
                pass
            link.close()
        self._fail_waiting(BackplaneError("the backplane stopped"))

    def _goodbye(self) -> bytes:
        return json.dumps({"n": self.node_id, "bye": True}).encode()

    async def _connect(self) -> None:
        """Open the link, subscribe every room with members, say hello."""
        if self.history is not None:
            self.history.reset()        # (a failed try may have left rooms half read)
        link = await NatsLink.open(self.url, self.options.connect_timeout,
                                   f"fastws node {self.node_id}", on_msg=self._on_msg)
        # Only a link that is up may report its loss (a server tried and
        # dropped during open is not an outage of this relay).
        link.on_lost = self._link_lost
        link.reply_sid, link.on_reply = _INBOX, self._on_reply
        self.link = link
        self._confirmed.clear()
        self._to_unsub.clear()
        self._to_sub.clear()
        self._sid_of.clear()
        self._room_of.clear()
        link.write(b"SUB %s %d\r\nSUB %s %d\r\nSUB %s %d\r\nSUB %s* %d\r\n" % (
            self._hb_subject, _HB, self._query_subject, _QUERY, self._answer_subject.encode(),
            _ANSWERS, self._inbox.encode(), _INBOX))
        rooms = list(self.registry.names()) + list(self._lingering)
        for room in dict.fromkeys(rooms):
            self._to_sub.add(room)
        self.connected = True
        self._heartbeat(hello=True)
        self._flush()
        try:
            await asyncio.wait_for(link.ping(), self.options.connect_timeout)
        except (NatsError, asyncio.TimeoutError) as exc:
            self.connected = False
            self.link = None
            link.on_lost = None
            link.abort()
            raise NatsError(f"{self.url.safe}: {str(exc) or 'no PONG'}") from None
        if self.history is not None:
            try:
                await self.history.ensure_stream()
            except (BackplaneError, NatsError) as exc:
                self.connected = False
                self.link = None
                link.on_lost = None
                link.abort()
                raise NatsError(str(exc)) from None

    def new_request(self) -> tuple[asyncio.Future, bytes]:
        """A future for one answer, and the subject it is to come on."""
        self._request_seq += 1
        inbox = self._inbox_b + b"%d" % self._request_seq
        fut = self._requests[inbox] = self.loop.create_future()
        return fut, inbox

    def expect(self, callback: Callable[..., None], *args: Any) -> bytes:
        """The subject for one answer, handed to ``callback(*args, data)``
        when it comes (data None if it does not within ``connect_timeout``
        or the link goes): no future, no task, no timer per request."""
        self._request_seq += 1
        inbox = self._inbox_b + b"%d" % self._request_seq
        self._requests[inbox] = (callback, args,
                                 self.loop.time() + self.options.connect_timeout)
        if self._sweeping is None:
            self._sweeping = self.loop.call_later(1.0, self._sweep)
        return inbox

    def _sweep(self) -> None:
        self._sweeping = None
        now = self.loop.time()
        late = [k for k, v in self._requests.items() if type(v) is tuple and v[2] < now]
        for inbox in late:
            self._answer(self._requests.pop(inbox), None)
        if any(type(v) is tuple for v in self._requests.values()):
            self._sweeping = self.loop.call_later(1.0, self._sweep)

    def forget_request(self, inbox: bytes) -> None:
        """The answer came, or is no longer awaited."""
        self._requests.pop(inbox, None)

    def _on_reply(self, subject: bytes, data: bytes) -> None:
        waiting = self._requests.pop(subject, None)
        if waiting is not None:
            self._answer(waiting, data)

    @staticmethod
    def _answer(waiting: Any, data: bytes | None) -> None:
        if type(waiting) is tuple:
            try:
                waiting[0](*waiting[1], data)
            except Exception:
                # One answer's failure must not keep the others from theirs.
                log.exception("backplane: handling an answer from NATS failed")
        elif not waiting.done():
            if data is None:
                waiting.set_exception(NatsError("the link to NATS was lost"))
            else:
                waiting.set_result(data)

    def _heartbeat(self, hello: bool = False) -> None:
        body = json.dumps({"n": self.node_id, "hello": hello}).encode()
        if self.link is not None:
            self.link.write(b"PUB %s %d\r\n%s\r\n" % (self._hb_subject, len(body), body))

    async def _supervise(self) -> None:
        """Heartbeat and PING, forever: a PING not answered in time means the
        link is dead, whatever TCP says."""
        o = self.options
        every = min(o.probe_interval, o.presence_ttl / 3)
        while True:
            await asyncio.sleep(every)
            link = self.link
            if not self.connected or link is None:
                continue
            self._heartbeat()
            try:
                await asyncio.wait_for(link.ping(), o.probe_timeout)
            except asyncio.TimeoutError:
                if self.connected and link is self.link:
                    log.warning("backplane: no PONG from %s within %.1fs: reconnecting",
                                self.url.safe, o.probe_timeout)
                    self._lost()
            except NatsError:
                if self.connected and link is self.link:
                    self._lost()        # the link failed the PING: it is of no use

    # ------------------------------------------------------------------ losing NATS

    def _drop_links(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            link.on_lost = None
            link.abort()

    def _outage(self) -> None:
        self._confirmed.clear()
        self._fail_asks()
        self._fail_requests()
        if self.history is not None:
            self.history.lost()

    def _fail_requests(self) -> None:
        requests, self._requests = self._requests, {}
        for waiting in requests.values():
            self._answer(waiting, None)

    def _subscribed_count(self) -> int:
        return len(self._sid_of)

    def _fail_waiting(self, exc: Exception) -> None:
        self._fail_joined(exc)
        self._fail_asks()
        self._fail_requests()

    def _fail_asks(self) -> None:
        asks, self._asks = self._asks, {}
        for _, _, fut in asks.values():
            if not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ the registry's relay

    def subject_of(self, room: str) -> str:
        """The room's subject."""
        return self._room_prefix + subject_token(room)

    def publish(self, room: Any, opcode: int, payload: Any) -> bytes:
        """Publish one broadcast on the room's subject (before local delivery);
        returns the payload as bytes, for local delivery to reuse."""
        link = self.link
        payload = self.as_payload(room, payload,
                                  None if link is None else link.max_payload - HEADER_SIZE)
        if self._dropped(link):
            return payload
        self.stats["published"] += 1
        head = self._publish_head.get(room)
        if head is None:
            head = b"PUB %s " % self.subject_of(room).encode()
            if len(self._publish_head) >= 4096:
                self._publish_head.clear()          # bounded: rooms come and go
            self._publish_head[room] = head
        n = len(payload) + HEADER_SIZE
        length = b"%d\r\n" % n
        link.write_parts((head, length, self._hdr[opcode], payload, b"\r\n"),
                         len(head) + len(length) + n + 2)
        return payload

    def _want(self, room: str) -> None:
        self._to_sub.add(room)

    def room_sized(self, room: str, n: int) -> None:
        """Presence is asked of the nodes when wanted: nothing to write."""

    def _unwant(self, room: str) -> None:
        self._to_sub.discard(room)
        sid = self._sid_of.pop(room, None)
        self._confirmed.discard(room)
        if sid is not None:
            self._room_of.pop(sid, None)
            self._to_unsub.add(sid)
            if self.history is not None:
                self.history.unwatch(room)

    def _flush(self) -> None:
        """Once per loop iteration: the subscription changes, then a PING
        whose PONG confirms them."""
        self._scheduled = False
        link = self.link
        if not self.connected or link is None:
            return      # _connect subscribes every room when NATS is back
        out = []
        added = []
        for room in self._to_sub:
            if room in self._sid_of:
                continue
            sid = self._next_sid
            self._next_sid += 1
            self._sid_of[room] = sid
            self._room_of[sid] = room
            added.append(room)
            if self.history is not None and self.history.keeps(room):
                self.history.watch(room, sid)
            out.append(b"SUB %s %d\r\n" % (self.subject_of(room).encode(), sid))
        self._to_sub.clear()
        for sid in self._to_unsub:
            out.append(b"UNSUB %d\r\n" % sid)
        self._to_unsub.clear()
        if not out:
            return
        link.write(b"".join(out))
        if added:
            subs = [(room, self._sid_of[room]) for room in added]
            link.ping().add_done_callback(lambda f, subs=subs, link=link: self._subscribed(subs, link, f))

    def _subscribed(self, subs: list[tuple[str, int]], link: NatsLink, fut: asyncio.Future) -> None:
        if fut.cancelled() or fut.exception() is not None or link is not self.link:
            return
        for room, sid in subs:
            subject = self.subject_of(room)
            if subject in link.refused:
                # NATS said no (a permissions violation) and still answered the
                # PING: the room is not live across the cluster, and says so.
                log.error("backplane: NATS refused the subscription to %s (room %r): the room "
                          "does not cross nodes here", subject, room)
                for waiter in self._joined.pop(room, ()):
                    if not waiter.done():
                        waiter.set_exception(BackplaneError(
                            f"backplane: NATS refused the subscription to room {room!r}"))
                continue
            # The subscription this PONG confirms, not a later one of the same
            # room (closed and opened again meanwhile: its SUB is not read yet).
            if self._sid_of.get(room) == sid:
                if self.history is not None and self.history.keeps(room):
                    self.loop.create_task(self._baseline(room, sid, link))
                else:
                    self._confirm(room)

    def _confirm(self, room: str) -> None:
        self._confirmed.add(room)
        self.stats["subscriptions"] += 1
        for waiter in self._joined.pop(room, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def _baseline(self, room: str, sid: int, link: NatsLink) -> None:
        """A room with history is live here once its last stored message is
        read (what follows it is delivered in order); tried again every
        second while JetStream does not answer."""
        assert self.history is not None
        try:
            await self.history.baseline(room, sid)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if link is not self.link or self._sid_of.get(room) != sid:
                return
            log.warning("backplane: reading room %r's position from JetStream failed (%s); "
                        "trying again", room, str(exc) or "no answer")
            for waiter in self._joined.pop(room, ()):
                if not waiter.done():
                    waiter.set_exception(BackplaneError(
                        f"backplane: JetStream did not answer for room {room!r}"))
            self.loop.call_later(1.0, lambda: self.loop.create_task(
                self._baseline(room, sid, link)))
            return
        if link is self.link and self._sid_of.get(room) == sid:
            self._confirm(room)

    # ------------------------------------------------------------------ what NATS sends

    def _on_msg(self, sid: int, data: bytes) -> None:
        room = self._room_of.get(sid)
        if room is None:
            if sid == _HB:
                self._on_heartbeat(data)
            elif sid == _QUERY:
                self._on_query(data)
            elif sid == _ANSWERS:
                self._on_answer(data)
            return          # else: unsubscribed meanwhile
        try:
            _node, opcode, payload = unpack(data)
            if opcode & KEPT:
                history = self.history
                if history is None or not history.keeps(room):
                    raise ValueError("a numbered message of a room that keeps no history")
                # <stream seq>: and the stored bundle (fastws.cluster.nats_history)
                history.announced(room, payload)
                self.stats["received"] += 1
                return
        except (ValueError, UnicodeDecodeError, IndexError) as exc:
            self.stats["bad_envelopes"] += 1
            log.debug("backplane: dropped a message for room %r: %s", room, exc)
            return
        if len(payload) > self.max_payload:
            self.stats["oversized"] += 1
            return
        self.stats["received"] += 1
        try:
            self.registry.deliver(room, opcode, payload, None, None)
        except Exception:
            log.exception("backplane: delivering to room %r failed", room)

    def _json(self, data: bytes) -> dict | None:
        try:
            body = json.loads(data)
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("n"), str):
            self.stats["bad_envelopes"] += 1
            return None
        return body

    def _on_heartbeat(self, data: bytes) -> None:
        body = self._json(data)
        if body is None:
            return
        node = body["n"]
        if body.get("bye"):
            self._nodes.pop(node, None)
            return
        known = node in self._nodes
        self._nodes[node] = time.monotonic()
        if body.get("hello") and not known:
            self._heartbeat()       # so a node that just came finds this one at once

    def _on_query(self, data: bytes) -> None:
        body = self._json(data)
        if body is None:
            return
        reply, seq = body.get("r"), body.get("s")
        # The reply subject goes into a protocol line: only a node's answer subject.
        if not isinstance(reply, str) or not self._answer_re.fullmatch(reply) or \
                type(seq) is not int:
            self.stats["bad_envelopes"] += 1
            return
        link = self.link
        if link is None:
            return
        if body.get("q") == "size" and isinstance(body.get("room"), str):
            answers = [{"n": self.node_id, "s": seq, "size": self.registry.size(body["room"])}]
        elif body.get("q") == "rooms":
            answers = self._rooms_answers(seq, link.max_payload)
        else:
            self.stats["bad_envelopes"] += 1
            return
        for answer in answers:
            out = json.dumps(answer).encode()
            link.write(b"PUB %s %d\r\n%s\r\n" % (reply.encode(), len(out), out))

    def _rooms_answers(self, seq: int, max_payload: int) -> list[dict[str, Any]]:
        """This node's rooms, in as many answers as keep each under what NATS
        takes (a node with many rooms would otherwise be cut off by the server
        for asking too much of it); all but the last say ``more``."""
        # What the answer holds besides the names ("n", "s", "more" and the
        # brackets), with room to spare; each name costs its JSON and ", ".
        room_budget = max(1, max_payload - 200)
        out: list[dict[str, Any]] = []
        batch: list[str] = []
        size = 0
        for room in self.registry.names():
            n = len(json.dumps(room).encode()) + 2
            if batch and size + n > room_budget:
                out.append({"n": self.node_id, "s": seq, "rooms": batch, "more": True})
                batch, size = [], 0
            batch.append(room)
            size += n
        out.append({"n": self.node_id, "s": seq, "rooms": batch})
        return out

    def _on_answer(self, data: bytes) -> None:
        body = self._json(data)
        if body is None:
            return
        seq, size, rooms = body.get("s"), body.get("size", 0), body.get("rooms", [])
        if type(seq) is not int or type(size) is not int or not isinstance(rooms, list):
            self.stats["bad_envelopes"] += 1
            return
        ask = self._asks.get(seq)
        if ask is None:
            return
        waiting, answers, fut = ask
        if body["n"] in waiting:
            answers.append(body)
            if body.get("more") is not True:
                waiting.discard(body["n"])
            if not waiting and not fut.done():
                fut.set_result(None)

    # ------------------------------------------------------------------ cluster answers

    def _require(self) -> NatsLink:
        if not self.connected or self.link is None:
            raise self._unreachable()
        return self.link

    def _live(self) -> list[str]:
        oldest = time.monotonic() - self.options.presence_ttl
        for node in [n for n, t in self._nodes.items() if t < oldest]:
            del self._nodes[node]
        return list(self._nodes)

    async def _ask(self, question: dict[str, Any]) -> list[dict]:
        """Ask every live node; their answers, within probe_timeout."""
        link = self._require()
        nodes = self._live()
        if not nodes:
            return []
        self._ask_seq += 1
        seq = self._ask_seq
        fut = self.loop.create_future()
        answers: list[dict] = []
        waiting = set(nodes)
        self._asks[seq] = (waiting, answers, fut)
        body = json.dumps({**question, "n": self.node_id, "r": self._answer_subject,
                           "s": seq}).encode()
        link.write(b"PUB %s %d\r\n%s\r\n" % (self._query_subject, len(body), body))
        try:
            await asyncio.wait_for(asyncio.shield(fut), self.options.probe_timeout)
        except asyncio.TimeoutError:
            log.warning("backplane: node(s) %s did not answer within %.1fs; left out",
                        ", ".join(sorted(waiting)), self.options.probe_timeout)
        finally:
            self._asks.pop(seq, None)
        return answers

    async def joined(self, room: str) -> None:
        """Wait until this node's subscription to ``room`` is confirmed by NATS;
        ConnectionError at once while NATS is unreachable."""
        if room in self._confirmed and self.connected:
            return
        if not self.connected:
            raise ConnectionError(f"backplane: NATS at {self.url.safe} is not reachable now")
        if room not in self._sid_of and room not in self._to_sub:
            raise LookupError(f"room {room!r} has no member on this node")
        fut = self.loop.create_future()
        self._joined.setdefault(room, []).append(fut)
        await fut

    async def caught_up(self, room: str | None = None) -> None:
        """Wait until NATS has delivered everything it had for this node before now."""
        await self._require().ping()

    async def room_size(self, room: str) -> int:
        """Members of ``room`` on every live node (this one's count is exact)."""
        answers = await self._ask({"q": "size", "room": room})
        return self.registry.size(room) + sum(a.get("size", 0) for a in answers)

    async def rooms(self) -> list[str]:
        """Rooms with a member on any live node."""
        answers = await self._ask({"q": "rooms"})
        out = dict.fromkeys(self.registry.names())
        for a in answers:
            for r in a.get("rooms") or ():
                if isinstance(r, str):
                    out.setdefault(r, None)
        return list(out)

    async def nodes(self) -> list[str]:
        """The ids of the live nodes, this one first."""
        self._require()
        return [self.node_id] + self._live()
