"""The listening sockets, owned by fastws, and new connections until they have a
transport.

Why not ``loop.create_server``: under load it starves new users. The libuv that
uvloop bundles accepts one connection each time the listening socket is reported
readable, and a new transport's ``connection_made`` (and the start of its reading)
waits in the loop's ready queue, which runs only after the poll phase; with 1,024
or more busy sockets that phase lasts up to 48 rounds of 1,024 events. So:

- ``Listener`` watches its socket with ``loop.add_reader``, whose callback runs
  inside the poll phase, and accepts every pending connection (at most
  ``MAX_ACCEPTS`` per wake-up, so one process sharing a listening socket with
  others does not take a whole burst).
- ``EarlyTransport`` serves a new plain (TCP or Unix) connection from its raw
  socket, also inside the poll phase: it reads the request as soon as it arrives
  and feeds the connection's ``HttpProtocol``, which answers a WebSocket upgrade
  there and then (every check included: origin, limits, guards; see
  ``HttpProtocol``). Its first write goes straight to the socket; then it hands
  the socket to a real uvloop transport (``connect_accepted_socket``), replays to
  it whatever was asked meanwhile (more writes, write limits, pause, EOF, close),
  and from then on forwards every call to it.
- With a ``Poller`` (``runtime/_owned.pyx``: Linux, unless ``FASTWS_IO=transport``)
  a plain TCP connection is not handed to uvloop at all: the poller serves it for
  its whole life, HTTP and WebSocket, from one epoll set. ``EarlyTransport`` then
  serves only Unix-socket connections.
- TLS connections go to ``connect_accepted_socket`` with the context at once: the
  TLS handshake needs the transport's SSL layer.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import _socket
import ssl as _ssl
from typing import Any, Callable

from fastws.runtime.eager import run_eagerly
from fastws.errors import BindError

__all__ = ["Listener", "EarlyTransport", "bind_sockets", "MAX_ACCEPTS"]

log = logging.getLogger("fastws")

#: Connections accepted per wake-up of a listening socket.
MAX_ACCEPTS = 128
#: What one read of a new connection takes (requests are capped at 24 KiB of head).
READ_SIZE = 65536
#: accept() errors that mean "out of descriptors or memory": stop accepting a moment.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


def bind_sockets(host: str | None, port: int, *, backlog: int, reuse_port: bool = False,
                 uds: str | None = None) -> list[socket.socket]:
    """Listening, non-blocking sockets for ``host:port`` (every address the name
    resolves to) or for the Unix socket path ``uds``. ``BindError`` (an OSError
    naming the address and the cause) when one cannot be had."""
    if uds is not None:
        if os.path.exists(uds) and not os.path.isdir(uds):
            import stat
            if stat.S_ISSOCK(os.stat(uds).st_mode):
                os.unlink(uds)              # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(uds)
            sock.listen(backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _bind_error(exc, uds) from None
        except BaseException:
            sock.close()
            raise
        return [sock]
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise BindError(exc.errno, f"cannot listen on {host}:{port}: the host name does not "
                                   f"resolve ({exc.strerror})") from None
    socks: list[socket.socket] = []
    seen = set()
    try:
        for family, type_, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, type_, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # Each family gets its own socket, as asyncio does.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                where = f"[{address[0]}]:{address[1]}" if family == socket.AF_INET6 else \
                    f"{address[0]}:{address[1]}"
                raise _bind_error(exc, where) from None
            sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


#: What a failed bind means, by errno, in words a user can act on.
_BIND_CAUSES = {
    errno.EADDRINUSE: "the address is already in use (another server, or an earlier run of "
                      "this one, is listening there)",
    errno.EACCES: "permission denied (a port below 1024 needs root or CAP_NET_BIND_SERVICE; "
                  "a Unix socket, a directory you may write to)",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address",
    errno.ENOENT: "its directory does not exist",
}


def _bind_error(exc: OSError, where: str) -> BindError:
    cause = _BIND_CAUSES.get(exc.errno or 0, exc.strerror or str(exc))
    return BindError(exc.errno, f"cannot listen on {where}: {cause}")


class _Accepted(socket.socket):
    """An accepted socket whose ``family`` and ``type`` are plain ints: uvloop
    reads both for each new connection, and socket.socket turns each into an
    enum with a Python call."""

    __slots__ = ()
    family = _socket.socket.family        # type: ignore[assignment]
    type = _socket.socket.type            # type: ignore[assignment]


class Listener:
    """One listening socket: accepts in the poll phase, hands each connection a
    protocol from ``factory`` on an ``EarlyTransport`` (plain) or a TLS transport."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 factory: Callable[[], asyncio.Protocol], ssl: _ssl.SSLContext | None = None,
                 ssl_handshake_timeout: float | None = None,
                 press: Callable[[], None] | None = None, poller: Any = None) -> None:
        self.loop = loop
        self._press = press
        self.sock = sock
        self._factory = factory
        self._ssl = ssl
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        # Plain TCP connections are served by the poller when there is one.
        self._poller = poller if self._tcp and ssl is None else None
        self._kind = (int(sock.family), int(sock.type), sock.proto)
        self._accepting = False
        self._resume: asyncio.TimerHandle | None = None
        self._told_resource_error = False

    def start(self) -> None:
        """Start accepting."""
        if not self._accepting:
            self._accepting = True
            self.loop.add_reader(self.sock.fileno(), self._on_ready)

    def stop(self) -> None:
        """Stop accepting (the socket stays open)."""
        if self._accepting:
            self._accepting = False
            self.loop.remove_reader(self.sock.fileno())
        if self._resume is not None:
            self._resume.cancel()
            self._resume = None

    def close(self) -> None:
        """Stop accepting and close the socket."""
        self.stop()
        self.sock.close()

    def _on_ready(self) -> None:
        family, type_, proto = self._kind
        for _ in range(MAX_ACCEPTS):
            try:
                # socket.accept() less its two enum conversions of the family
                # and type, which cost more than the accept4 call itself.
                fd, _ = self.sock._accept()
                conn = _Accepted(family, type_, proto, fileno=fd)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _RESOURCE_ERRORS:
                    self._back_off(exc)
                    return
                if exc.errno == errno.ECONNABORTED:
                    continue                  # the client gave up while queued
                log.error("accept() on %s failed: %s", self.sock.getsockname(), exc)
                return
            conn.setblocking(False)
            if self._tcp:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            early = None
            if self._poller is not None:
                try:
                    protocol = self._factory()
                except Exception:
                    log.exception("could not start serving a new connection")
                    conn.close()
                    continue
                try:
                    self._poller.adopt(conn, protocol)
                except Exception:
                    # adopt has closed the socket (through the transport, when
                    # it made one: the protocol then hears connection_lost).
                    log.exception("could not start serving a new connection")
                continue
            try:
                if self._ssl is None:
                    early = EarlyTransport(self.loop, conn, self._factory())
                    early.start()
                else:
                    run_eagerly(self.loop, self._open_tls(conn))
                    if self._press is not None:
                        self._press()   # its connection_made waits for the ready queue
            except Exception:
                log.exception("could not start serving a new connection")
                if early is None:
                    conn.close()
                else:
                    # Through the transport, which knows whether the socket is
                    # still ours or already a uvloop transport's, and tells the
                    # protocol (which then releases what it holds) either way.
                    early.abort()

    def _back_off(self, exc: OSError) -> None:
        # Out of descriptors: the pending connections wait in the backlog; try
        # again shortly instead of spinning on a socket that stays readable.
        if not self._told_resource_error:
            self._told_resource_error = True
            log.error("accept() failed: %s; pausing accepts for 100 ms "
                      "(raise the open-files limit, `ulimit -n`)", exc)
        self.stop()
        self._resume = self.loop.call_later(0.1, self._resume_accepting)

    def _resume_accepting(self) -> None:
        self._resume = None
        self.start()

    async def _open_tls(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(
                self._factory, conn, ssl=self._ssl,
                ssl_handshake_timeout=self._ssl_handshake_timeout)
        except (OSError, _ssl.SSLError, asyncio.TimeoutError) as exc:
            log.info("TLS connection failed before it was served: %s", exc)
            conn.close()


class EarlyTransport:
    """A new plain connection's socket, served directly until its first write,
    then handed to a uvloop transport (see the module doc).

    Implements the part of ``asyncio.Transport`` that ``HttpProtocol`` and
    ``WebSocket`` use. After the handover, the protocol's ``connection_made``
    receives the real transport and calls ``adopt`` on this one, which replays
    what was asked meanwhile and makes every later call go to the real one.
    """

    __slots__ = ("_loop", "_sock", "_fd", "_protocol", "_reading", "_want_reading",
                 "_closing", "_buffer", "_handing", "_real", "_limits", "_eof", "_close",
                 "_abort", "_extra", "_paused_protocol")

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket,
                 protocol: asyncio.Protocol) -> None:
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._protocol = protocol
        self._reading = False
        self._want_reading = True
        self._closing = False
        self._buffer: list[bytes] = []
        self._handing = False
        self._real: asyncio.Transport | None = None
        self._limits: tuple[int | None, int | None] | None = None
        self._eof = self._close = self._abort = False
        self._paused_protocol = False
        self._extra: dict[str, Any] = {}

    def start(self) -> None:
        """Give the protocol its transport and read what has arrived (a step of
        its own, so a failure here leaves an object to abort)."""
        self._protocol.connection_made(self)  # type: ignore[arg-type]
        # The request has often arrived already: read it before asking the loop
        # to watch the socket, which costs a poll handle for nothing when it has.
        if self._want_reading and self._read(first=True):
            self._start_reading()

    # ------------------------------------------------------------------ reading

    def _start_reading(self) -> None:
        if not self._reading:
            self._reading = True
            self._loop.add_reader(self._fd, self._read)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def _read(self, first: bool = False) -> bool:
        """Read what has arrived; True if the socket is still to be watched."""
        while self._reading or first:
            first = False
            try:
                data = self._sock.recv(READ_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._lost(exc)
                return False
            if not data:
                self._stop_reading()
                if not self._protocol.eof_received():
                    self.close()
                return False
            self._protocol.data_received(data)
            if len(data) < READ_SIZE:
                break
        return self._want_reading and not (self._handing or self._closing or self._real)

    # ------------------------------------------------------------------ Transport

    def write(self, data: Any) -> None:
        """Send now if the socket takes it all (the first answer, usually a
        101); then hand over, and queue anything more for the real transport."""
        if self._real is not None:
            self._real.write(data)
            return
        if self._closing or not data:
            return
        if not self._buffer and not self._handing:
            try:
                sent = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._lost(exc)
                return
            if sent < len(data):
                self._buffer.append(bytes(memoryview(data)[sent:]))
        else:
            self._buffer.append(bytes(data))
        self._handover()
        # Until the real transport exists, what waits here is flow-controlled
        # like a transport's buffer: past the high-water mark the protocol pauses.
        if not self._paused_protocol and self.get_write_buffer_size() > self._high_water():
            self._paused_protocol = True
            self._protocol.pause_writing()

    def _high_water(self) -> int:
        high = self._limits[0] if self._limits is not None else None
        return 65536 if high is None else high

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()
            return
        if self._closing:
            return
        if self._handing or self._buffer:
            self._close = True          # after what is queued, on the real transport
            return
        self._closing = True
        self._stop_reading()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        if self._real is not None:
            self._real.abort()
            return
        if self._closing and not self._handing:
            return
        if self._handing:
            self._abort = True
            return
        self._closing = True
        self._stop_reading()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, None)

    def write_eof(self) -> None:
        if self._real is not None:
            self._real.write_eof()
        elif self._handing or self._buffer:
            self._eof = True
        else:
            try:
                self._sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        if self._real is not None:
            return self._real.is_closing()
        return self._closing or self._close or self._abort

    def pause_reading(self) -> None:
        if self._real is not None:
            self._real.pause_reading()
            return
        self._want_reading = False
        self._stop_reading()

    def resume_reading(self) -> None:
        if self._real is not None:
            self._real.resume_reading()
            return
        self._want_reading = True
        if not self._handing and not self._closing:
            self._start_reading()

    def is_reading(self) -> bool:
        return self._real.is_reading() if self._real is not None else self._reading

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if self._real is not None:
            self._real.set_write_buffer_limits(high, low)
        else:
            self._limits = (high, low)

    def get_write_buffer_size(self) -> int:
        if self._real is not None:
            return self._real.get_write_buffer_size()
        return sum(len(b) for b in self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        if self._real is not None:
            return self._real.get_write_buffer_limits()
        high, low = self._limits or (None, None)
        return (low or 0, high or 0)

    def set_protocol(self, protocol: Any) -> None:
        if self._real is not None:
            self._real.set_protocol(protocol)
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if self._real is not None:
            return self._real.get_extra_info(name, default)
        if name not in self._extra:
            try:
                if name == "peername":
                    self._extra[name] = self._sock.getpeername()
                elif name == "sockname":
                    self._extra[name] = self._sock.getsockname()
                elif name == "socket":
                    self._extra[name] = self._sock
                else:
                    return default
            except OSError:
                return default
        return self._extra[name]

    # ------------------------------------------------------------------ handover

    def _handover(self) -> None:
        if self._handing or self._closing:
            return
        self._handing = True
        self._stop_reading()
        run_eagerly(self._loop, self._connect())

    async def _connect(self) -> None:
        try:
            # The factory returns whichever protocol is current when the
            # transport is made: the WebSocket, if the 101 went out.
            await self._loop.connect_accepted_socket(lambda: self._protocol, self._sock)
        except (OSError, RuntimeError) as exc:
            log.info("handing a new connection to its transport failed: %s", exc)
            self._handing = False
            self._closing = True
            self._sock.close()
            # Soon, as every other path here tells it: this may still be inside
            # the write that started the handover (the 101 of a switch).
            self._loop.call_soon(self._protocol.connection_lost,
                                 exc if isinstance(exc, OSError) else None)
        except BaseException:
            # Cancelled (a loop shutting down cancels every task) or closed:
            # uvloop then closes the transport it made without ever calling
            # connection_lost (nor connection_made, if that had not run yet),
            # and the protocol would hold a dead transport, or none, and a
            # descriptor number another connection may be given, for good.
            if not self._closing:
                self._closing = True
                self._handing = False
                try:
                    self._protocol.connection_lost(None)
                except Exception:
                    log.exception("connection_lost of an abandoned handover failed")
            raise

    def adopt(self, real: asyncio.Transport) -> None:
        """Called by the protocol's ``connection_made`` with the real transport:
        replay, then forward."""
        self._real = real
        self._handing = False
        if self._limits is not None:
            real.set_write_buffer_limits(*self._limits)
        if self._buffer:
            # write(), not writelines(): asyncio's writelines (3.12, 3.13) never
            # pauses the protocol past the high-water mark, so a protocol paused
            # here would never hear resume_writing from the real transport.
            for chunk in self._buffer:
                real.write(chunk)
            self._buffer = []
        if self._paused_protocol and real.get_write_buffer_size() <= real.get_write_buffer_limits()[1]:
            # The real transport took it under its own mark, so it will never
            # say resume: say it now.
            self._paused_protocol = False
            self._protocol.resume_writing()
        if not self._want_reading:
            real.pause_reading()
        if self._abort:
            real.abort()
        elif self._eof:
            real.write_eof()
            if self._close:
                real.close()
        elif self._close:
            real.close()

    def _lost(self, exc: Exception) -> None:
        self._closing = True
        self._stop_reading()
        self._sock.close()
        self._loop.call_soon(self._protocol.connection_lost, exc)
