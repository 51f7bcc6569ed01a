"""A TCP proxy for fault injection between a client and a server: it forwards
both ways until told to cut the link, by a reset (both sockets closed with
SO_LINGER 0: each side gets RST) or by a silent stall (nothing forwarded
either way, nothing closed: both sides hold a socket that hears nothing).
While blocked, new connections are reset at once; ``restore`` lets them
through again. The target port can change (a server restarted elsewhere)."""

from __future__ import annotations

import socket
import struct
import threading

_LINGER_ZERO = struct.pack("ii", 1, 0)


def _reset(sock: socket.socket) -> None:
    """Close with RST at once. A proxy thread may be blocked reading the
    socket: on Linux a close does not wake that read, and the socket (and its
    RST) would wait for the next bytes; shutting it for reading first wakes the
    reader (nothing goes on the wire), so the close is the last reference."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    except OSError:
        pass
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class FaultProxy:
    """Listens on 127.0.0.1:``port`` and forwards to 127.0.0.1:``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.refused = 0
        self._blocked = False
        self._lock = threading.Lock()
        self._links: list[tuple[socket.socket, socket.socket, threading.Event]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="fault-proxy").start()

    def url(self, path: str) -> str:
        """A ws:// URL through the proxy."""
        return f"ws://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                if self._blocked:
                    self.refused += 1
                    _reset(client)
                    continue
                try:
                    upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
                    upstream.settimeout(None)
                except OSError:
                    self.refused += 1
                    _reset(client)
                    continue
                self.accepted += 1
                flowing = threading.Event()
                flowing.set()
                self._links.append((client, upstream, flowing))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b, flowing), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, flowing: threading.Event) -> None:
        while True:
            # A stalled link is not read at all: what the sender writes waits
            # in the kernel's buffers, as behind a dead NAT.
            flowing.wait()
            try:
                data = src.recv(65536)
            except OSError:
                return
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if not flowing.is_set():
                return          # stalled while this read was under way: dropped, as in a cut
            try:
                dst.sendall(data)
            except OSError:
                return

    def reset(self) -> None:
        """Cut every link with RST both ways; refuse new ones until ``restore``."""
        with self._lock:
            self._blocked = True
            links, self._links = self._links, []
        for client, upstream, _ in links:
            _reset(client)
            _reset(upstream)

    def stall(self) -> None:
        """Stop forwarding on every link, closing nothing; refuse new ones
        until ``restore``."""
        with self._lock:
            self._blocked = True
            links, self._links = self._links, []
        for _, _, flowing in links:
            flowing.clear()
        self._stalled = links       # held open for good: the server keeps its socket

    def restore(self, target: int | None = None) -> None:
        """Let new connections through again (to ``target``, if given)."""
        with self._lock:
            if target is not None:
                self.target = target
            self._blocked = False

    def close(self) -> None:
        """Stop listening and reset every link."""
        self._closed = True
        self.sock.close()
        self.reset()
        for client, upstream, flowing in getattr(self, "_stalled", []):
            flowing.set()
            _reset(client)
            _reset(upstream)
