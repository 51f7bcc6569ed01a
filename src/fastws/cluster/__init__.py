"""Rooms across processes and machines: ``app.use(backplane(url))`` and ``app.cluster``.

The relay that carries a room's broadcasts over Redis pub/sub, its presence and
reconnects, and the ``Cluster`` facade are in ``fastws.cluster.relay``; the RESP
link under it is ``fastws.cluster.redis_link``. This package's names are the
ones users import (``fastws.cluster.Cluster``, ``BackplaneOptions``, ``backplane``).
"""

from fastws.cluster.relay import *  # noqa: F401,F403
from fastws.cluster.relay import __all__  # noqa: F401
