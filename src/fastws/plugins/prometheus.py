"""``metrics(path)``: the plugin that serves Prometheus metrics at ``path``
(the collector is ``fastws.ops.metrics``)."""

from __future__ import annotations

from typing import Any

from fastws.ops.metrics import CONTENT_TYPE, Collector

__all__ = ["MetricsPlugin", "metrics"]


class MetricsPlugin:
    """Installs the metrics route (see ``metrics()``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def install(self, app: Any) -> None:
        """Route GET ``path`` to the exposition; start the worker file writer."""
        collector = Collector(app)
        app.metrics_collector = collector

        def scrape(ctx):
            from fastws.http.context import Response
            return Response(collector.exposition(), status=200,
                            headers={"Content-Type": CONTENT_TYPE})

        app.get(self.path, scrape)
        app.on_startup(collector.start)


def metrics(path: str = "/metrics") -> MetricsPlugin:
    """Prometheus metrics at ``path``: ``app.use(metrics())``. Needs
    ``prometheus_client`` (``pip install 'fastws[metrics]'``)."""
    # Only whether it is installed: prometheus_client itself is imported at the
    # first scrape, so a server that is never scraped carries none of it.
    import importlib.util
    if importlib.util.find_spec("prometheus_client") is None:
        raise ImportError("metrics() needs prometheus_client: pip install 'fastws[metrics]'")
    if not path.startswith("/"):
        raise ValueError(f"metrics path must start with '/', got {path!r}")
    return MetricsPlugin(path)
