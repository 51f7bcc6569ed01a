"""``backplane(url)``: the plugin that puts an app's rooms on a backplane (Redis or NATS).

The settings are ``fastws.cluster.options.BackplaneOptions``; serving reads them
from ``app.backplane`` and connects the relay (``fastws.cluster.relay``).
"""

from __future__ import annotations

import os
from typing import Any

from fastws.cluster.options import BackplaneOptions
from fastws.cluster.redis_link import hiredis

__all__ = ["backplane", "BackplanePlugin"]


class BackplanePlugin:
    """Installs the backplane on an app (see ``backplane()``)."""

    def __init__(self, options: BackplaneOptions) -> None:
        self.options = options

    def install(self, app: Any) -> None:
        """Give the app its backplane options: serving connects to Redis."""
        app.backplane = self.options


def backplane(url: str | list[str] | None = None, **options: Any) -> BackplanePlugin:
    """The backplane plugin: ``app.use(backplane("redis://host:6379/0"))``.

    ``url`` defaults to the environment variable ``FASTWS_BACKPLANE``; several
    Redis URLs (a list, or comma-separated) shard the rooms over those
    instances; ``nats://host:4222`` puts the rooms on NATS. Options as in
    ``BackplaneOptions``.
    """
    if hiredis is None:
        raise ImportError("the backplane needs hiredis (a dependency of fastws): pip install hiredis")
    url = url or os.environ.get("FASTWS_BACKPLANE")
    if isinstance(url, (list, tuple)):
        url = ",".join(url)
    if not url:
        raise ValueError("backplane() needs a Redis or NATS URL (or FASTWS_BACKPLANE in the environment)")
    known = set(BackplaneOptions.__dataclass_fields__) - {"url"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"backplane() got unknown option(s) {', '.join(unknown)}; "
                        f"known options: {', '.join(sorted(known))}")
    return BackplanePlugin(BackplaneOptions(url, **options))
