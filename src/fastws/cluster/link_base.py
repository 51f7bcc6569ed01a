"""What both broker links share (``BatchedLink``): bytes queued during a loop
iteration and written once at its end, however many commands or publishes
were made, and closing or dropping the connection, which fails whatever
still waits for an answer. ``redis_link.Link`` and ``nats_link.NatsLink``
add their protocol."""

from __future__ import annotations

import asyncio
import ssl
from urllib.parse import SplitResult, urlsplit

__all__ = ["BatchedLink", "client_tls", "split_url"]


def split_url(url: str, schemes: tuple[str, ...], default_port: int) -> tuple[SplitResult, str, int]:
    """(its parts, host, port) of a broker URL whose scheme must be one of
    ``schemes``; ValueError naming what is wrong (never the URL's secret)."""
    parts = urlsplit(url)
    if parts.scheme not in schemes:
        raise ValueError(f"backplane URL must start with "
                         f"{' or '.join(s + '://' for s in schemes)}, got "
                         f"{parts.scheme + '://' if parts.scheme else 'no scheme'}")
    try:
        port = parts.port or default_port
    except ValueError:
        raise ValueError("backplane URL has an invalid port") from None
    return parts, parts.hostname or "127.0.0.1", port


def client_tls(cafile: str | None, verify: bool) -> ssl.SSLContext:
    """A client TLS context trusting ``cafile`` (or the system's CAs), and
    checking the server's certificate unless ``verify`` is False."""
    ctx = ssl.create_default_context(cafile=cafile)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class BatchedLink(asyncio.Protocol):
    """A connection written once per loop iteration (see the module).

    A subclass provides ``_fail(exc)`` (fail what waits for an answer) and
    ``_error(text)`` (its exception type, for a closed link).
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._flush_scheduled = False
        self.closed = False

    def _fail(self, exc: Exception) -> None:
        raise NotImplementedError

    def _error(self, text: str) -> Exception:
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Queue bytes for this iteration's one write."""
        if self.closed:
            return
        self._out.append(data)
        self._out_bytes += len(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def write_parts(self, parts: tuple[bytes, ...], size: int) -> None:
        """Queue already encoded protocol (``size`` bytes in ``parts``): no copy until the write."""
        if self.closed:
            return
        self._out.extend(parts)
        self._out_bytes += size
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    @property
    def buffered(self) -> int:
        """Bytes waiting to go to the broker (ours and the transport's)."""
        n = self._out_bytes
        if self.transport is not None:
            n += self.transport.get_write_buffer_size()
        return n

    def _flush(self) -> None:
        # One write per loop iteration, however many commands were queued.
        self._flush_scheduled = False
        out, self._out = self._out, []
        self._out_bytes = 0
        if out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])

    def close(self) -> None:
        """Close the connection; what waits for an answer fails."""
        if self.transport is not None:
            self.transport.close()
        self._fail(self._error("closed"))
        self.closed = True

    def abort(self) -> None:
        """Drop the connection at once (a link that stopped answering)."""
        if self.transport is not None:
            self.transport.abort()
        self._fail(self._error("dropped"))
        self.closed = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport      # type: ignore[assignment]
        self._loop = asyncio.get_running_loop()
