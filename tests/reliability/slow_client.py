"""A raw WebSocket client that reads slowly: its receive buffer is made tiny
before it connects, so the server's kernel buffer toward it fills after a
few hundred KiB and everything else waits in the server's own buffers."""

from __future__ import annotations

import socket

from ..integration.rawws import RawClient, accept_for, handshake_request, new_key

__all__ = ["SlowClient"]


class SlowClient(RawClient):
    """A RawClient with SO_RCVBUF set to 4 KiB before ``connect``."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        self.sock = sock
        self.buf = bytearray()

    def upgrade(self, path: str) -> None:
        """Complete the opening handshake on ``path``."""
        key = new_key()
        self.send(handshake_request(path, key=key))
        response = self.read_response()
        assert response.status == 101, response
        assert response.header("sec-websocket-accept") == accept_for(key)
