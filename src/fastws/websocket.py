"""WebSocket: the per-connection object users touch.

The class is compiled (``src/fastws/_websocket.pyx``, over the connection rules of
``_connection.pyx`` and the dispatch of ``_dispatch.pyx``) because every message
passes through it; this module is its public home.

Members: ``send(data)``, ``join(room)``, ``leave(room)``, ``room``, ``rooms``,
``broadcast(room, data)``, ``broadcast_all(room, data)``, ``on(event, handler)``,
``off(event, handler)``, ``close(code=1000, reason="")``, ``ping(payload=b"")``,
``await drain()``, ``ready_state``, ``buffered_amount``, ``skipped``, ``data``
(a dict for per-connection state), ``ctx`` (the upgrade request), ``subprotocol``,
``remote_address``, ``compression`` (the permessage-deflate settings agreed,
or None), ``dropped``, ``close_code``; camelCase aliases ``broadcastAll``,
``readyState``, ``bufferedAmount``.
"""

from fastws._constants import ReadyState
from fastws._payload import encode_message, encode_payload
from fastws._websocket import Flusher, WebSocket

__all__ = ["ReadyState", "WebSocket", "Flusher", "encode_message", "encode_payload"]
