"""Rooms across processes and machines: ``app.use(backplane(url))`` and ``app.cluster``.

One job a module, lowest first: ``redis_link`` (the RESP link on hiredis),
``envelope`` (how a broadcast is framed on a room's channel), ``options``
(``BackplaneOptions``), ``relay`` (``RedisRelay``: channels, presence, probe,
reconnects), ``history`` (room history in Redis streams), ``sharded``
(``ShardedRelay``: rooms spread over several instances, one ``RedisRelay``
each; ``make_relay`` picks the relay a URL asks for), ``redis_cluster``
(``ClusterRelay``: a Redis Cluster, one ``RedisRelay`` per master, sharded
pub/sub), ``nats_link`` and ``nats_relay`` (NATS) and ``facade``
(``Cluster``, which is ``app.cluster``). The plugin
function ``backplane()`` is ``fastws.plugins.cluster``, with the other plugins.

This package keeps the names users were told to import from it
(``fastws.cluster.Cluster``, ``BackplaneOptions``, ``backplane``). ``backplane``
and ``BackplanePlugin`` live in a layer above this package, so they are found
when first asked for (PEP 562), never when this package is imported: importing
``fastws.cluster`` loads nothing of the plugins.
"""

from __future__ import annotations

import importlib
from typing import Any

from fastws.cluster.envelope import ENVELOPE_VERSION, HEADER_SIZE
from fastws.cluster.facade import Cluster
from fastws.cluster.options import BackplaneOptions
from fastws.cluster.relay import RedisRelay
from fastws.cluster.sharded import ShardedRelay, make_relay

_PLUGIN = "fastws.plugins.cluster"       # above this package: read lazily, by name
_FROM_PLUGIN = ("backplane", "BackplanePlugin")

__all__ = ["backplane", "BackplaneOptions", "BackplanePlugin", "Cluster", "RedisRelay",
           "ShardedRelay", "make_relay",
           "ENVELOPE_VERSION", "HEADER_SIZE"]


def __getattr__(name: str) -> Any:
    if name in _FROM_PLUGIN:
        return getattr(importlib.import_module(_PLUGIN), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
