"""The runtime of one app on one event loop: rooms, open sockets, the flusher,
the counters, per-address limits, and what every connection shares of them.

An ``App`` is configuration only; what changes while it is served lives in its
``Hub``. The server makes the hub when it starts on a loop and every listener of
that app on that loop (TCP ports, a Unix socket, TLS and plain) shares it, so a
process never splits its rooms. The HTTP protocol and each WebSocket get the
hub handed down; the app reaches it through ``find_hub(app)`` when user code calls
``app.broadcast``, ``app.room_size`` and the like.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from typing import Any

from fastws.runtime._rooms import RoomRegistry
from fastws.ws._counters import Counters
from fastws.runtime._adapter import SocketFlusher
from fastws.runtime._shared import RuntimeShared
from fastws.runtime.history import MemoryHistory
from fastws.options import WebSocketOptions

__all__ = ["Hub", "AddressLimits", "acquire_hub", "release_hub", "find_hub"]

#: Retry-After (seconds) for an address at its cap of open connections: when a
#: slot frees up cannot be known, so a short, fixed wait.
RETRY_WHEN_FULL = 5


class AddressLimits:
    """What one client address may open: ``max_connections_per_ip`` and the
    ``max_upgrades_per_ip`` token bucket. Entries go when they are back to
    nothing (no open connection, a full bucket), so memory follows the
    addresses that are active, not every address ever seen."""

    __slots__ = ("max_open", "rate", "burst", "open", "buckets")

    def __init__(self, options: WebSocketOptions) -> None:
        self.max_open = options.max_connections_per_ip
        self.rate, self.burst = options.max_upgrades_per_ip or (0.0, 0)
        self.open: dict[Any, int] = {}
        self.buckets: dict[Any, tuple[float, float]] = {}

    @property
    def active(self) -> bool:
        """Whether any per-address limit is set."""
        return self.max_open is not None or self.rate > 0

    def refuse(self, address: Any, now: float) -> tuple[str, int] | None:
        """(reason, Retry-After seconds) when an upgrade from ``address`` must
        be refused now; None lets it through (and spends one token)."""
        if self.max_open is not None and self.open.get(address, 0) >= self.max_open:
            return "too many connections from this address", RETRY_WHEN_FULL
        if self.rate > 0:
            tokens, then = self.buckets.get(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self.buckets[address] = (tokens, now)
                return "too many upgrades from this address", max(1, math.ceil((1.0 - tokens) / self.rate))
            self.buckets[address] = (tokens - 1.0, now)
        return None

    def opened(self, address: Any) -> None:
        """A WebSocket from ``address`` is opening: its upgrade passed ``refuse``
        (counted from then, so upgrades still deciding count too)."""
        self.open[address] = self.open.get(address, 0) + 1

    def closed(self, address: Any) -> None:
        """A connection counted by ``opened`` closed (a WebSocket, or an upgrade
        that was refused after all)."""
        n = self.open.get(address, 0) - 1
        if n > 0:
            self.open[address] = n
        else:
            self.open.pop(address, None)

    def sweep(self, now: float) -> None:
        """Forget the buckets that have refilled."""
        if not self.buckets:
            return
        full = [a for a, (tokens, then) in self.buckets.items()
                if tokens + (now - then) * self.rate >= self.burst]
        for address in full:
            del self.buckets[address]


class Hub:
    """The per-loop runtime shared by every listener serving one app."""

    __slots__ = ("owner", "options", "loop", "rooms", "history", "sockets", "flusher", "counters",
                 "shared", "limits", "listeners", "totals", "upgrades", "requests",
                 "closes", "loop_lag", "__weakref__")

    def __init__(self, owner: Any, options: WebSocketOptions, loop: asyncio.AbstractEventLoop) -> None:
        self.owner = weakref.ref(owner)
        self.options = options
        self.loop = loop
        self.counters = Counters()
        #: Room history (``history_size``), or None.
        self.history = MemoryHistory(options.history_size, options.history_ttl,
                                     options.history_max_bytes, options.history_rooms) \
            if options.history_size else None
        self.rooms = RoomRegistry(options.dumps, history=self.history)
        self.sockets: set[Any] = set()
        self.flusher = SocketFlusher(loop)
        # The same, as every WebSocket reads it at C level.
        self.shared = RuntimeShared(options, counters=self.counters, loop=loop, registry=self.rooms,
                                    flusher=self.flusher, sockets=self.sockets)
        self.limits = AddressLimits(options)
        self.listeners = 0
        # For metrics, counted once per connection or request, never per message:
        # what closed connections carried (in msgs, out msgs, in bytes, out bytes),
        # upgrade answers and HTTP answers by status, closes by code, the last
        # measured event-loop lag in seconds.
        self.totals = [0, 0, 0, 0]
        self.upgrades: dict[int, int] = {}
        self.requests: dict[int, int] = {}
        self.closes: dict[int, int] = {}
        self.loop_lag = 0.0


    @property
    def relay(self) -> Any:
        """The backplane (``fastws.cluster.relay.RedisRelay``), if any: the room
        registry's, held there alone so the two can never disagree."""
        return self.rooms.relay

    @relay.setter
    def relay(self, relay: Any) -> None:
        self.rooms.relay = relay

    def connection_closed(self, ws: Any) -> None:
        """Fold a finished WebSocket's counts into the totals (metrics)."""
        counts = ws.counts()
        totals = self.totals
        for i in range(4):
            totals[i] += counts[i]
        code = ws.close_code if ws.close_code is not None else 1006
        self.closes[code] = self.closes.get(code, 0) + 1

    def traffic(self) -> list[int]:
        """Messages and bytes each way so far, open connections included."""
        out = list(self.totals)
        for ws in self.sockets:
            counts = ws.counts()
            for i in range(4):
                out[i] += counts[i]
        return out

    def __repr__(self) -> str:
        return (f"<Hub {len(self.sockets)} sockets, {len(self.rooms.names())} rooms, "
                f"{self.listeners} listeners>")


# id(owner) -> (weak reference to the owner (an App), {loop: Hub}). Weak on the
# owner: an app that is gone takes its hubs with it. Kept here, not on the app,
# so serving leaves the app as it was. Keyed by id, not a WeakKeyDictionary:
# app.broadcast looks here on every call, and a weak-keyed lookup costs about
# as much as delivering to a small room.
_hubs: dict[int, tuple[weakref.ref, dict[asyncio.AbstractEventLoop, Hub]]] = {}


def _loops_of(owner: Any) -> dict[asyncio.AbstractEventLoop, Hub] | None:
    entry = _hubs.get(id(owner))
    if entry is None or entry[0]() is not owner:
        return None
    return entry[1]


def _forget(key: int, ref: weakref.ref) -> None:
    entry = _hubs.get(key)
    if entry is not None and entry[0] is ref:
        del _hubs[key]


def acquire_hub(owner: Any, options: WebSocketOptions, loop: asyncio.AbstractEventLoop) -> Hub:
    """The hub of ``owner`` on ``loop``, made on first use; each call is one
    more listener, undone by ``release_hub``."""
    by_loop = _loops_of(owner)
    if by_loop is None:
        key = id(owner)
        by_loop = {}
        _hubs[key] = (weakref.ref(owner, lambda ref, key=key: _forget(key, ref)), by_loop)
    hub = by_loop.get(loop)
    if hub is None:
        hub = by_loop[loop] = Hub(owner, options, loop)
    hub.listeners += 1
    return hub


def release_hub(hub: Hub) -> None:
    """One listener of ``hub`` stopped; the last one takes the hub away."""
    hub.listeners -= 1
    if hub.listeners > 0:
        return
    owner = hub.owner()
    by_loop = _loops_of(owner) if owner is not None else None
    if by_loop is not None and by_loop.get(hub.loop) is hub:
        del by_loop[hub.loop]
        if not by_loop:
            del _hubs[id(owner)]


def find_hub(owner: Any) -> Hub | None:
    """The hub serving ``owner`` for the caller: the one on the running loop, or,
    outside any loop, the only one there is. None when the app is not served.

    Raises RuntimeError when the caller's loop does not serve the app but
    another does: the runtime is not thread-safe, so such a call must be
    moved to the serving loop (``loop.call_soon_threadsafe``).
    """
    by_loop = _loops_of(owner)
    if not by_loop:
        return None
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        hub = by_loop.get(running)
        if hub is not None:
            return hub
    elif len(by_loop) == 1:
        return next(iter(by_loop.values()))
    raise RuntimeError("this app is served on another event loop (or several); call it "
                       "from the loop that serves it, e.g. with loop.call_soon_threadsafe")
