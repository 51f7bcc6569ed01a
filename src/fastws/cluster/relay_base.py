"""What every broker's relay does the same way (``RelayBase``): the node's id,
the counters, what a broadcast must be to cross, dropping publishes while the
broker is out of reach (counted, logged once per outage), the linger before a
room with no member here is unsubscribed, the batching of subscription
changes per loop iteration, and losing the broker and finding it again
(jittered backoff, the app's ``lost``/``restored`` handlers). Each relay says
how to talk to its broker: ``RedisRelay`` (``cluster.relay``) and
``NatsRelay`` (``cluster.nats_relay``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

from fastws.errors import BackplaneError, BroadcastTooLargeError

if TYPE_CHECKING:
    from fastws.cluster.options import BackplaneOptions
    from fastws.runtime.hub import Hub

__all__ = ["RelayBase", "fire"]

log = logging.getLogger("fastws.backplane")


def fire(handlers: dict[str, list[Callable[[], Any]]], event: str,
         loop: asyncio.AbstractEventLoop) -> None:
    """Call the app's ``event`` handlers ("lost", "restored"); a coroutine
    one runs as a task; one that raises is logged, the others still run."""
    for fn in handlers.get(event, ()):
        try:
            result = fn()
            if asyncio.iscoroutine(result):
                loop.create_task(result)
        except Exception:
            log.exception("backplane: %s handler %r failed", event, fn)


class RelayBase:
    """The part of a relay that does not depend on its broker (see the module).

    A subclass sets ``url`` (with a ``safe`` form) and ``broker`` (its name in
    log lines) and provides ``_connect`` (open the links, subscribe every room
    with members; raises one of ``_connect_errors``), ``_drop_links``,
    ``_want``/``_unwant`` (a room to subscribe, or to unsubscribe, at the
    next ``_flush``), ``_flush`` and ``_outage`` (what else to do when the
    broker is lost).
    """

    broker = "the broker"
    _connect_errors: tuple[type[BaseException], ...] = (OSError,)
    url: Any

    def __init__(self, hub: Hub, options: BackplaneOptions,
                 handlers: dict[str, list[Callable[[], Any]]] | None,
                 node: bytes | None = None) -> None:
        self.options = options
        self.hub = hub
        self.registry = hub.rooms
        self.loop = hub.loop
        self._nid = node or secrets.token_bytes(8)
        self.node_id = self._nid.hex()
        self._handlers = handlers if handlers is not None else {}
        self.max_payload = hub.options.max_message_size if hub.options.max_message_size else 1 << 30
        self.connected = False
        self._stopping = False
        self._reconnecting: asyncio.Task | None = None
        self._supervisor: asyncio.Task | None = None
        self._lingering: dict[str, asyncio.TimerHandle] = {}
        self._joined: dict[Any, list[asyncio.Future]] = {}
        self._scheduled = False
        self._outage_started = 0.0
        self._outage_dropped = 0
        self._losses = 0            # links lost so far (a reconnection checks it did not move)
        self.stats = {"published": 0, "received": 0, "echoes": 0, "dropped_outage": 0,
                      "dropped_buffer": 0, "bad_envelopes": 0, "oversized": 0,
                      "reconnects": 0, "subscriptions": 0, "ring_mismatches": 0}

    # ------------------------------------------------------------------ what the subclass says

    async def _connect(self) -> None:
        raise NotImplementedError

    def _drop_links(self) -> None:
        raise NotImplementedError

    def _want(self, room: str) -> None:
        raise NotImplementedError

    def _unwant(self, room: str) -> None:
        raise NotImplementedError

    def _flush(self) -> None:
        raise NotImplementedError

    def _outage(self) -> None:
        """The broker was just lost (after the links are dropped)."""

    # ------------------------------------------------------------------ publishing

    def as_payload(self, room: Any, payload: Any, limit: int | None = None) -> bytes:
        """A broadcast's payload as the bytes that cross; raises
        BroadcastTooLargeError past ``max_message_size`` (or the broker's
        own ``limit``, when smaller), counted."""
        if type(payload) is str:
            payload = payload.encode()
        elif type(payload) is not bytes:
            payload = bytes(payload)
        most = self.max_payload if limit is None or limit >= self.max_payload else limit
        if len(payload) > most:
            self.stats["oversized"] += 1
            what = "max_message_size" if most == self.max_payload else \
                f"what {self.broker} takes (its max_payload)"
            raise BroadcastTooLargeError(
                f"broadcast of {len(payload)} bytes to {room!r} is over {what} ({most}); "
                f"not delivered")
        return payload

    def _dropped(self, link: Any) -> bool:
        """Whether a publish is dropped (counted) rather than written to ``link``:
        the broker is out of reach, or has not read ``max_buffered`` bytes yet."""
        if not self.connected or link is None:
            self.stats["dropped_outage"] += 1
            if self._outage_dropped == 0:
                log.warning("backplane: %s is down; cross-node publishes are dropped until "
                            "it is back (local delivery goes on)", self.broker)
            self._outage_dropped += 1
            return True
        if link.buffered > self.options.max_buffered:
            self.stats["dropped_buffer"] += 1
            return True
        return False

    # ------------------------------------------------------------------ the registry's relay

    def room_opened(self, room: str) -> None:
        """The room got its first local member: subscribe (unless still lingering)."""
        handle = self._lingering.pop(room, None)
        if handle is not None:
            handle.cancel()
            return
        self._want(room)
        self._schedule()

    def room_closed(self, room: str) -> None:
        """The room lost its last local member: unsubscribe after the linger."""
        linger = self.options.unsubscribe_linger
        if linger <= 0:
            self._unsubscribe(room)
        else:
            self._lingering[room] = self.loop.call_later(linger, self._unsubscribe, room)

    def _unsubscribe(self, room: str) -> None:
        self._lingering.pop(room, None)
        if self.registry.size(room):
            return
        self._unwant(room)
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._flush)

    # ------------------------------------------------------------------ life

    def _stop_tasks(self) -> None:
        """Stopping: no more reconnects, probes or lingers."""
        self._stopping = True
        for task in (self._supervisor, self._reconnecting):
            if task is not None:
                task.cancel()
        for handle in self._lingering.values():
            handle.cancel()
        self._lingering.clear()

    def _fail_joined(self, exc: Exception) -> None:
        joined, self._joined = self._joined, {}
        for futs in joined.values():
            for fut in futs:
                if not fut.done():
                    fut.set_exception(exc)

    # ------------------------------------------------------------------ losing and finding the broker

    def _link_lost(self, exc: Exception | None) -> None:
        if not self._stopping:
            log.warning("backplane: lost the connection to %s%s", self.url.safe,
                        f" ({exc})" if exc else "")
            self._lost()

    def _lost(self) -> None:
        if self._stopping:
            return
        self._losses += 1
        if self._reconnecting is not None:
            # A link of the reconnection itself went: _reconnect sees the count
            # move and tries again, rather than declaring a dead link restored.
            self.connected = False
            return
        self.connected = False
        self._drop_links()
        self._outage()
        self._outage_started = time.monotonic()
        self._outage_dropped = 0
        fire(self._handlers, "lost", self.loop)
        self._reconnecting = self.loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.1
        try:
            while not self._stopping:
                # Full jitter: nodes that lost the broker together do not return together.
                await asyncio.sleep(random.uniform(0, delay))
                losses = self._losses
                try:
                    await self._connect()
                    if self._losses != losses:
                        raise OSError("a link went while reconnecting")
                except self._connect_errors as exc:
                    text = str(exc)     # most name the URL already
                    log.debug("backplane: reconnecting failed: %s", text if self.url.safe in text
                              else f"{self.url.safe}: {text}")
                    self.connected = False
                    self._drop_links()
                    delay = min(self.options.max_backoff, delay * 2)
                    continue
                self.stats["reconnects"] += 1
                log.warning("backplane: reconnected to %s after %.1fs; %d cross-node publish(es) "
                            "dropped meanwhile; %d room(s) resubscribed", self.url.safe,
                            time.monotonic() - self._outage_started, self._outage_dropped,
                            self._subscribed_count())
                self._reconnecting = None
                fire(self._handlers, "restored", self.loop)
                return
        finally:
            if self._reconnecting is asyncio.current_task():
                self._reconnecting = None

    def _subscribed_count(self) -> int:
        return 0

    def _unreachable(self) -> BackplaneError:
        return BackplaneError(f"backplane: {self.broker} at {self.url.safe} is not reachable now")
