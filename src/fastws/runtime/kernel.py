"""What a socket's kernel send queue still holds: Linux's SIOCOUTQ.

Bytes written to a socket leave the process long before the peer's application
reads them; the kernel holds those not sent yet, or not acknowledged. Two
places ask: the WebSocket adapter, while a ping waits for its answer (what the
client has not read yet cannot be what it is slow to answer), and the HTTP
protocol, for a response a client reads slowly. Neither asks per message, so a
Python call is cheap enough.
"""

from __future__ import annotations

from typing import Callable

__all__ = ["kernel_unsent"]


def _kernel_outq() -> Callable[[int], int] | None:
    """A function giving the bytes a socket's kernel send queue still holds
    (Linux's SIOCOUTQ: not sent, or not acknowledged), or None where there
    is none. None of those bytes has reached the peer's application yet."""
    try:
        import fcntl
        import termios
        request = termios.TIOCOUTQ
    except (ImportError, AttributeError):
        return None
    import array

    def outq(fd: int) -> int:
        buf = array.array("i", [0])
        fcntl.ioctl(fd, request, buf, True)
        return buf[0]
    return outq


#: Bytes the kernel's send queue of a socket (by descriptor) still holds, not
#: sent or not acknowledged by the peer; None where the system has no such
#: query. Raises OSError for a descriptor that is no socket.
kernel_unsent = _kernel_outq()
