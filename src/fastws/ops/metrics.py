"""Prometheus metrics: what ``app.use(metrics())`` (``fastws.plugins.prometheus``) serves.

Nothing here runs per message. The hot path bumps plain C counters (per
connection and per hub, see ``ws/_connection.pyx`` and ``runtime/_rooms.pyx``) and
once-per-connection totals on the hub; a ``prometheus_client`` collector reads
them when scraped. No per-room or per-user labels.

With ``--workers N`` every worker writes its figures to a file in the
directory the supervisor names (``FASTWS_METRICS_DIR``) each second and at each
scrape; the worker that answers a scrape returns every worker's series, with a
``worker`` label (a worker's series vanish when it exits; Prometheus sees
its counters reset, as for any restart).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from typing import Any, Iterable

__all__ = ["Collector", "snapshot", "render", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (name, help, kind): kind "counter" (a _total is added) or "gauge"
_SERIES = [
    ("connections", "Open WebSocket connections.", "gauge"),
    ("messages_received", "WebSocket messages received from clients.", "counter"),
    ("messages_sent", "WebSocket data messages queued to clients.", "counter"),
    ("received_bytes", "Bytes received on WebSocket connections (frames included).", "counter"),
    ("sent_bytes", "Bytes queued to WebSocket connections (frames included).", "counter"),
    ("broadcasts", "Broadcasts published (each counted once).", "counter"),
    ("deliveries", "Broadcast frames queued to members on this node.", "counter"),
    ("backpressure_skips", "Sends and broadcasts skipped over max_backpressure.", "counter"),
    ("slow_consumers", "Members given up on by flow control.", "counter"),
    ("rate_limit_drops", "Client messages dropped by the rate limit.", "counter"),
    ("event_loop_lag_seconds", "How late the last timer sweep ran.", "gauge"),
    ("backplane_connected", "1 while the Redis backplane link is up (absent without one).", "gauge"),
    ("backplane_published", "Broadcasts published to other nodes.", "counter"),
    ("backplane_received", "Broadcasts received from other nodes.", "counter"),
    ("backplane_dropped", "Cross-node publishes dropped (Redis down or too far behind).", "counter"),
]
_LABELLED = [
    ("upgrades", "Upgrade requests answered, by HTTP status (101: accepted).", "status"),
    ("http_requests", "HTTP requests answered, by status (health probes included).", "status"),
    ("closes", "WebSocket connections closed, by close code.", "code"),
]


def snapshot(hub: Any) -> dict[str, Any]:
    """Every figure of one hub, as plain numbers (what a worker writes to its file)."""
    c = hub.counters
    rooms = hub.rooms
    rx_msgs, tx_msgs, rx_bytes, tx_bytes = hub.traffic()
    out: dict[str, Any] = {
        "connections": len(hub.sockets), "messages_received": rx_msgs, "messages_sent": tx_msgs,
        "received_bytes": rx_bytes, "sent_bytes": tx_bytes, "broadcasts": rooms.broadcasts,
        "deliveries": rooms.deliveries, "backpressure_skips": c.skipped,
        "slow_consumers": c.slow_consumers, "rate_limit_drops": c.dropped,
        "event_loop_lag_seconds": hub.loop_lag,
        "upgrades": dict(hub.upgrades), "http_requests": dict(hub.requests),
        "closes": dict(hub.closes),
    }
    relay = hub.relay
    if relay is not None:
        st = relay.stats
        out.update(backplane_connected=1 if relay.connected else 0,
                   backplane_published=st["published"], backplane_received=st["received"],
                   backplane_dropped=st["dropped_outage"] + st["dropped_buffer"])
    return out


def render(snapshots: Iterable[tuple[str | None, dict[str, Any]]]) -> bytes:
    """The text exposition format for (worker label or None, snapshot) pairs."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.exposition import generate_latest
    from prometheus_client.registry import CollectorRegistry

    snaps = list(snapshots)

    class _Once:
        def collect(self):
            worker_label = [] if all(w is None for w, _ in snaps) else ["worker"]
            for name, text, kind in _SERIES:
                fam_cls = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
                fam = fam_cls(f"fastws_{name}", text, labels=worker_label)
                seen = False
                for worker, snap in snaps:
                    if name in snap:
                        fam.add_metric([worker] if worker_label else [], snap[name])
                        seen = True
                if seen:
                    yield fam
            for name, text, label in _LABELLED:
                fam = CounterMetricFamily(f"fastws_{name}", text, labels=worker_label + [label])
                for worker, snap in snaps:
                    for value, count in sorted(snap.get(name, {}).items(), key=lambda kv: int(kv[0])):
                        fam.add_metric(([worker] if worker_label else []) + [str(value)], count)
                yield fam

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Once())
    return generate_latest(registry)


class Collector:
    """Reads this process's hub for ``app`` (and, under workers, the others' files)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.dir = os.environ.get("FASTWS_METRICS_DIR")
        self.worker = os.environ.get("FASTWS_WORKER_ID")
        self._task: asyncio.Task | None = None

    def _hub(self):
        from fastws.runtime.hub import find_hub
        return find_hub(self.app)

    def _own(self) -> dict[str, Any]:
        hub = self._hub()
        return snapshot(hub) if hub is not None else {}

    def write(self) -> None:
        """Write this worker's figures where the others can read them."""
        if not self.dir or self.worker is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".w")
        with os.fdopen(fd, "w") as f:
            json.dump({"worker": self.worker, "pid": os.getpid(), "figures": self._own()}, f)
        os.replace(tmp, os.path.join(self.dir, f"{os.getpid()}.json"))

    def start(self) -> None:
        """Under workers: write every second, so a scrape on another worker sees us."""
        if self.dir and self.worker is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._every_second())

    async def _every_second(self) -> None:
        while True:
            try:
                self.write()
            except OSError:
                pass
            await asyncio.sleep(1.0)

    def exposition(self) -> bytes:
        """The answer to a scrape."""
        if not self.dir or self.worker is None:
            return render([(None, self._own())])
        self.write()
        snaps = []
        for name in sorted(os.listdir(self.dir)):
            if not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.dir, name)) as f:
                    data = json.load(f)
                os.kill(int(data["pid"]), 0)        # a worker that is gone has no series
            except (OSError, ValueError, KeyError):
                continue
            snaps.append((str(data["worker"]), data["figures"]))
        return render(snaps)
