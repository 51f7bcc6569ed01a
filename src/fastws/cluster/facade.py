"""``app.cluster`` (``Cluster``): the questions an app asks of its cluster, asked
the same way on one node or many.

With a backplane the answers come from the running hub's relay
(``fastws.cluster.relay``), which asks Redis; without one, from this process's
own room registry. The lost/restored handlers registered here are handed to the
relay when serving starts (``app.cluster_handlers``).
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from fastws.cluster.relay import RedisRelay

__all__ = ["Cluster"]

_EVENTS = ("lost", "restored")


class Cluster:
    """``app.cluster``: answers for the whole cluster with a backplane, for this
    process without one, so the same code runs on one node or many.

    ``room_size``, ``rooms`` and ``nodes`` are coroutines (they may ask Redis;
    BackplaneError while Redis is unreachable); ``joined(room)`` waits until a
    join on this node is live across the cluster. ``on("lost" | "restored", fn)``
    registers a handler (sync or async, no arguments) called when the link to
    Redis is lost and when it is back (with every room resubscribed): the
    moment to tell clients to refetch state.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self.handlers: dict[str, list[Callable[[], Any]]] = {e: [] for e in _EVENTS}
        self._local_id = secrets.token_hex(8)

    def on(self, event: str, handler: Callable[[], Any]) -> Callable[[], Any]:
        """Call ``handler`` on ``event`` ("lost" or "restored"). Returns it."""
        if event not in self.handlers:
            raise ValueError(f"cluster events are {', '.join(_EVENTS)}; got {event!r}")
        self.handlers[event].append(handler)
        return handler

    def _hub(self):
        from fastws.runtime.hub import find_hub
        return find_hub(self._app)

    def _relay(self) -> RedisRelay | None:
        hub = self._hub()
        return None if hub is None else hub.relay

    @property
    def node_id(self) -> str:
        """This node's id (the hub's on the running loop; stable for the process without a backplane)."""
        relay = self._relay()
        return self._local_id if relay is None else relay.node_id

    @property
    def connected(self) -> bool:
        """True when the backplane's link to Redis is up (always True without one)."""
        relay = self._relay()
        return True if relay is None else relay.connected

    async def room_size(self, room: Any) -> int:
        """Members of ``room`` across the cluster (eventually consistent within presence_ttl)."""
        relay = self._relay()
        if relay is None:
            hub = self._hub()
            return 0 if hub is None else hub.rooms.size(room)
        return await relay.room_size(room)

    async def rooms(self) -> list[Any]:
        """Rooms with at least one member anywhere in the cluster."""
        relay = self._relay()
        if relay is None:
            hub = self._hub()
            return [] if hub is None else hub.rooms.names()
        return await relay.rooms()

    async def nodes(self) -> list[str]:
        """Live node ids, this one first."""
        relay = self._relay()
        return [self.node_id] if relay is None else await relay.nodes()

    async def joined(self, room: Any) -> None:
        """Return once a join to ``room`` on this node is live across the
        cluster: this node's subscription is confirmed by Redis. At once
        without a backplane. LookupError if ``room`` has no member here."""
        relay = self._relay()
        if relay is None:
            hub = self._hub()
            if hub is None or not hub.rooms.size(room):
                raise LookupError(f"room {room!r} has no member on this node")
            return
        await relay.joined(room)

    def stats(self) -> dict[str, int]:
        """The backplane's counters (published, received, echoes, dropped_outage,
        dropped_buffer, bad_envelopes, oversized, reconnects, subscriptions;
        each engine adds its own), and, with room history in the broker, its
        counters as ``history_<name>`` (``history_stored``, ``history_failed``;
        on NATS also ``history_renumbered``, ``history_gaps_filled``,
        ``history_gaps_lost``); empty without a backplane."""
        relay = self._relay()
        if relay is None:
            return {}
        out = dict(relay.stats)
        history = getattr(relay, "history", None)
        if history is not None:
            out.update({f"history_{k}": v for k, v in history.stats.items()})
        return out
