"""Raw-socket helpers for tests that send whole requests and read to the end."""

from __future__ import annotations

import errno
import socket

__all__ = ["send_then_half_close", "read_to_close"]


def send_then_half_close(sock: socket.socket, data: bytes) -> None:
    """Send ``data`` and shut down our sending side. A server that answers
    and closes before it has read everything (413, 400) may reset the
    connection under us: that is not an error, its answer is still readable."""
    try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        pass
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:         # reset before our shutdown
            raise


def read_to_close(sock: socket.socket, stop: bytes | None = None) -> bytes:
    """Everything the server sends until it closes (FIN or reset), or until
    ``stop`` appears. A server that stays silent trips the socket timeout."""
    out = b""
    while stop is None or stop not in out:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    return out
