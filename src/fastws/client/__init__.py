"""The Python client of fastws's ``fastws.v1`` protocol (docs/protocol.md), on
the ``websockets`` client library (``pip install 'fastws[client]'``): it
reconnects by itself and recovers the room messages it missed. See
``fastws.client.session`` and docs/guides/recovery.md."""

from fastws.client.session import (RECONNECT_CODES, Client, Message, NotConnectedError,
                                   connect)

__all__ = ["Client", "Message", "NotConnectedError", "connect", "RECONNECT_CODES"]
