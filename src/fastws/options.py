"""Options and their defaults: ``WebSocketOptions`` (what ``websocket(...)`` takes)
and ``DeflateOptions`` (its ``compression``).

A leaf module: every layer reads its settings from here and it imports nothing
of fastws but the JSON defaults (``_json``), so there is one place where each
default is written down. Options are
validated when they are made, with an error that names the option and what it
accepts, so a typo fails at start-up, not under load.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from fastws._json import dumps as _fast_dumps, loads as _fast_loads

__all__ = ["WebSocketOptions", "DeflateOptions", "default_dumps", "default_loads", "DEFAULT_BACKLOG"]

#: Connections the kernel may queue before fastws accepts them (as uvicorn's):
#: the default of app.run, app.serve, Server.start and --backlog.
DEFAULT_BACKLOG = 2048




def default_dumps(obj: Any) -> str:
    """Compact JSON text, non-ASCII kept as is: what the default serializer
    sends, as a ``str``. (``websocket()``'s default ``dumps`` is the same
    JSON as UTF-8 bytes where orjson makes it, saving the encode; see
    ``fastws._json``.)"""
    out = _fast_dumps(obj)
    return out.decode("utf-8") if type(out) is bytes else out


#: The default parser of JSON events: orjson where it gives the json module's
#: value, else the json module (``fastws._json``).
default_loads: Callable[[Any], Any] = _fast_loads


@dataclass(frozen=True)
class WebSocketOptions:
    """Settings of the WebSocket plugin, with their defaults.

    max_message_size: largest message accepted, summed over its fragments, in
        bytes (default 1 MiB); larger closes the connection with 1009. None: no limit.

    max_backpressure: bytes that may wait in one socket's send buffer (default
        1 MiB). Over it, ``backpressure`` decides: "close" (default) closes the
        socket with 1008 "slow consumer"; "skip" drops the broadcast or send for
        that socket (``send`` returns False) and counts it in ``ws.skipped``.
        The ``drain`` event fires when the buffer falls back under the limit.

    slow_consumer_timeout / min_drain_rate: flow control. A member whose
        buffer passes its high-water mark (half of max_backpressure) because
        of another client's broadcasts or sends pauses that client (it is not
        read) until the member has written everything out; a room thus runs at
        the pace of its slowest reader. A member that drains slower than
        min_drain_rate bytes per second (default 16 KiB/s) over
        slow_consumer_timeout seconds (default 5) is dropped from the wait and
        handled by ``backpressure``, so one dead or trickling socket stalls
        the others for at most that long.

    ping_interval: seconds of silence from a client after which the server
        pings it (default 20). None turns the heartbeat off.

    idle_timeout: seconds a pinged client has to show it is alive, by sending
        anything (its pong, or any frame) or by reading what we send, before
        it is dropped with close code 1011 "keepalive timeout" (default 20).
        A client that flow control keeps us from reading is never dropped for
        the silence that causes.

    close_timeout: seconds the client has to answer our close frame (default 10);
        also how long a connection we are closing may go on sending before we cut it.

    discard_budget: bytes a client may still send after we decided to close
        (a close frame for bad input, or an HTTP error before its body was read),
        which fastws reads and throws away so that the client receives our answer
        instead of a TCP reset (default None: 16 MiB or 16 x max_message_size,
        whichever is larger). Past it, or past close_timeout, the connection is
        cut anyway and the log says so.

    handshake_timeout: seconds a connection may take to send a complete
        request, or stay idle between HTTP requests, before it is closed
        (with "408 Request Timeout" if it was mid-request) (default 10).
        A client that reads none of a response for this long is dropped
        too; one that reads slowly but steadily is not.

    rate_limit: None (default) or (messages per second, burst): a token
        bucket per connection over data messages. ``rate_limit_policy``
        decides what happens past it: "close" (default) closes with 1008
        "rate limit exceeded"; "drop" discards the message before any
        handler sees it and counts it in ``ws.dropped``.

    max_connections: open WebSockets allowed at once; further upgrade requests
        get HTTP 503 (default None: no limit).

    max_connections_per_ip: open WebSockets allowed from one client address;
        further upgrades from it get HTTP 429 with Retry-After (default None:
        no limit; behind a proxy every client has the proxy's address unless
        proxy headers are trusted).

    max_upgrades_per_ip: None (default) or (upgrades per second, burst): a
        token bucket per client address over upgrade attempts; past it, HTTP
        429 with Retry-After saying when the next one is allowed.

    max_room_name: longest room name (str or bytes) ``join`` accepts (default
        256); room names often come from clients.

    max_rooms_per_socket: rooms one socket may be in at once (default 64).
        ``join`` past either limit raises ``RoomLimitError``; raised by an event
        handler (a client asking), it fires ``error`` and closes with 1008.

    drain_window: seconds over which a shutdown spreads the closes of its
        WebSockets (1001 going away, or 1012 for a restart), so that clients do
        not all reconnect in the same instant (default 1.0; 0 closes them all
        at once). The shutdown timeout counts from its start.

    allowed_origins: which browser pages may open a socket. Default None: an
        upgrade whose Origin header names another host than the request's Host
        header (or ``null``) gets HTTP 403, so a page elsewhere cannot open a
        socket with the user's cookies (cross-site WebSocket hijacking);
        requests without Origin (not from a browser) are accepted. A list of
        origins (``["https://chat.example"]``): only those, and requests without
        Origin are refused too. ``"*"``: any origin, no check.

    subprotocols: subprotocols we speak, in order of preference (default none).

    compression: permessage-deflate (RFC 7692). Off by default (None/False):
        inflating a client's messages costs more CPU than fastws's whole
        per-message path, so it is worth it only where bandwidth is dear.
        True turns it on with ``fastws.deflate.permessage.DeflateOptions()`` defaults
        (no context takeover either way, so idle connections hold no zlib
        memory and a broadcast is compressed once; messages under 128 bytes
        go uncompressed); pass a DeflateOptions to tune it.

    json_events: route JSON text messages with a "type" to handlers of that
        name (default True).

    history_size: messages each room keeps (default 0: no history). With it,
        every message published to a room that keeps history (``ws.broadcast``,
        ``ws.broadcast_all``, ``app.broadcast``; not ``ws.send``) is stored
        with its position, an epoch and an offset, whether or not the room has
        members here, and ``await app.history(room)`` reads it. History lives
        in this process's memory (``fastws.runtime.history``), or, with a
        backplane, in Redis Streams on the backplane's Redis
        (``fastws.cluster.history``), where every node sees the same offsets.

    history_ttl: seconds a stored message is kept (default 300); a room whose
        messages have all expired is forgotten, and its next message starts a
        new epoch.

    history_max_bytes: memory for all rooms' history in this process (per
        event loop serving the app; default 256 MiB), counted as payloads, what
        holding each costs and each room's record; past it the oldest messages
        go first, and a room left with none is forgotten (a new epoch).

    history_rooms: which rooms keep history: None (default, every room), a
        glob pattern or a list of them (``"chat:*"``: a chat room keeps history,
        a ticker's room does not; patterns match str names), or a plain
        function of the room name returning a bool (asked once per room; the
        answer is remembered).

    dumps / loads: serializer for non-str, non-bytes ``send`` data and parser for
        JSON events (default: orjson, compact, where it gives what the json module
        gives, and the json module for the values where it would not; the json
        module alone where orjson is not installed). dumps may return str or
        UTF-8 bytes.
    """

    max_message_size: int | None = 1 << 20
    max_backpressure: int = 1 << 20
    backpressure: str = "close"
    slow_consumer_timeout: float = 5.0
    min_drain_rate: int = 16 * 1024
    ping_interval: float | None = 20.0
    idle_timeout: float = 20.0
    close_timeout: float = 10.0
    discard_budget: int | None = None
    handshake_timeout: float = 10.0
    rate_limit: tuple[float, int] | None = None
    rate_limit_policy: str = "close"
    max_connections: int | None = None
    max_connections_per_ip: int | None = None
    max_upgrades_per_ip: tuple[float, int] | None = None
    max_room_name: int = 256
    max_rooms_per_socket: int = 64
    drain_window: float = 1.0
    allowed_origins: Sequence[str] | str | None = None
    subprotocols: Sequence[str] = field(default_factory=tuple)
    compression: Any = None
    json_events: bool = True
    history_size: int = 0
    history_ttl: float = 300.0
    history_max_bytes: int = 256 << 20
    history_rooms: Any = None
    dumps: Callable[[Any], Any] = _fast_dumps
    loads: Callable[[Any], Any] = default_loads

    def __post_init__(self) -> None:
        def positive_int(name: str, value: Any, allow_none: bool) -> None:
            if value is None and allow_none:
                return
            if type(value) is not int or value <= 0:
                extra = " or None" if allow_none else ""
                raise ValueError(f"websocket({name}=...) must be a positive int{extra}, got {value!r}")

        positive_int("max_message_size", self.max_message_size, True)
        positive_int("max_backpressure", self.max_backpressure, False)
        positive_int("max_connections", self.max_connections, True)
        positive_int("discard_budget", self.discard_budget, True)
        positive_int("max_connections_per_ip", self.max_connections_per_ip, True)
        positive_int("max_room_name", self.max_room_name, False)
        positive_int("max_rooms_per_socket", self.max_rooms_per_socket, False)
        if isinstance(self.drain_window, bool) or not isinstance(self.drain_window, (int, float)) \
                or not 0 <= self.drain_window <= 3600:
            raise ValueError(f"websocket(drain_window=...) must be seconds in [0, 3600], "
                             f"got {self.drain_window!r}")
        if self.discard_budget is None:
            object.__setattr__(self, "discard_budget",
                               max(16 << 20, 16 * (self.max_message_size or 1 << 20)))
        if self.backpressure not in ("close", "skip"):
            raise ValueError(f"websocket(backpressure=...) must be 'close' or 'skip', got {self.backpressure!r}")
        def seconds(name: str, value: Any, allow_none: bool = False) -> None:
            if value is None and allow_none:
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 86400:
                extra = " or None" if allow_none else ""
                raise ValueError(f"websocket({name}=...) must be seconds in (0, 86400]{extra}, got {value!r}")

        seconds("ping_interval", self.ping_interval, allow_none=True)
        seconds("idle_timeout", self.idle_timeout)
        seconds("close_timeout", self.close_timeout)
        seconds("handshake_timeout", self.handshake_timeout)
        seconds("slow_consumer_timeout", self.slow_consumer_timeout)
        positive_int("min_drain_rate", self.min_drain_rate, False)
        def rate_pair(name: str, what: str) -> None:
            value = getattr(self, name)
            if value is None:
                return
            try:
                rate, burst = value
            except (TypeError, ValueError):
                rate = burst = None
            if (isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0
                    or type(burst) is not int or burst < 1):
                raise ValueError(f"websocket({name}=...) must be None or ({what} per second > 0, "
                                 f"burst >= 1 as an int), got {value!r}")
            object.__setattr__(self, name, (float(rate), burst))

        rate_pair("rate_limit", "messages")
        rate_pair("max_upgrades_per_ip", "upgrades")
        if self.rate_limit_policy not in ("close", "drop"):
            raise ValueError(f"websocket(rate_limit_policy=...) must be 'close' or 'drop', "
                             f"got {self.rate_limit_policy!r}")
        if self.allowed_origins is not None:
            origins = self.allowed_origins
            if origins == "*" or (not isinstance(origins, str) and list(origins) == ["*"]):
                object.__setattr__(self, "allowed_origins", "*")
            elif isinstance(origins, str) or not all(isinstance(o, str) for o in origins):
                raise ValueError("websocket(allowed_origins=...) must be a list of origin strings "
                                 "such as ['https://example.com'], or '*' for any origin")
            else:
                object.__setattr__(self, "allowed_origins", frozenset(origins))
        if isinstance(self.subprotocols, str) or not all(isinstance(p, str) and p for p in self.subprotocols):
            raise ValueError("websocket(subprotocols=...) must be a list of non-empty strings")
        if any(p.startswith("fastws.") for p in self.subprotocols):
            raise ValueError("websocket(subprotocols=...): names starting with 'fastws.' are "
                             "fastws's own (docs/protocol.md); a fastws.v1 client offers "
                             "'fastws.v1+NAME' to speak NAME too")
        object.__setattr__(self, "subprotocols", tuple(self.subprotocols))
        if self.compression is None or self.compression is False:
            object.__setattr__(self, "compression", None)
        elif self.compression is True:
            object.__setattr__(self, "compression", DeflateOptions())
        elif not isinstance(self.compression, DeflateOptions):
            raise ValueError("websocket(compression=...) must be None, False, True or a "
                             f"fastws.deflate.permessage.DeflateOptions, got {self.compression!r}")
        elif not self.compression.enabled:
            object.__setattr__(self, "compression", None)
        if type(self.history_size) is not int or self.history_size < 0:
            raise ValueError(f"websocket(history_size=...) must be an int >= 0 (0: no history), "
                             f"got {self.history_size!r}")
        seconds("history_ttl", self.history_ttl)
        positive_int("history_max_bytes", self.history_max_bytes, False)
        rooms = self.history_rooms
        if callable(rooms) and (inspect.iscoroutinefunction(rooms)
                                or inspect.iscoroutinefunction(getattr(rooms, "__call__", None))):
            raise ValueError("websocket(history_rooms=...) must be a plain function of the room "
                             "name returning a bool, not a coroutine function: it is asked as "
                             "the room's first message is stored")
        if not (rooms is None or isinstance(rooms, str) or callable(rooms)):
            try:
                rooms = tuple(rooms)
            except TypeError:
                rooms = None
            if rooms is None or not all(isinstance(p, str) for p in rooms):
                raise ValueError("websocket(history_rooms=...) takes None (every room), a glob "
                                 "pattern such as 'chat:*', a list of them, or a function of the "
                                 f"room name; got {self.history_rooms!r}")
            object.__setattr__(self, "history_rooms", rooms)
        if not callable(self.dumps) or not callable(self.loads):
            raise ValueError("websocket(dumps=..., loads=...) must be callables")


def _check_bits(name: str, value: object) -> None:
    if type(value) is not int or not 8 <= value <= 15:
        raise ValueError(f"compression {name} must be an int from 8 to 15, got {value!r}")


def _check_bool(name: str, value: object) -> None:
    if type(value) is not bool:
        raise ValueError(f"compression {name} must be True or False, got {value!r}")


@dataclass(frozen=True)
class DeflateOptions:
    """The server's permessage-deflate settings (see the module doc for why).

    enabled: accept permessage-deflate offers at all (default True).

    server_no_context_takeover: compress each message on its own (default
        True); required for one compressed frame to serve many connections.

    client_no_context_takeover: ask clients to compress each message on its
        own, so the inflater is freed between messages (default True).

    server_max_window_bits: log2 of our LZ77 window, 8-15 (default 15); a
        client may ask for less. zlib cannot deflate with a raw 8-bit window,
        so 8 is announced and deflated with 9: zlib's deflate never reaches
        back farther than 2^bits - 262 bytes, 250 for 9, which an 8-bit
        window covers (Node's zlib binding maps a raw 8 to 9 the same way).

    client_max_window_bits: largest window we let a client use, 8-15 (default
        15). It binds only clients that offer the parameter; the others may use
        15 and are accepted anyway.

    mem_level: zlib memLevel of our compressor, 1-9 (default 8).

    level: zlib compression level, 0-9 (default 6).

    compress_min_size: messages shorter than this many bytes are sent
        uncompressed (default 128).
    """

    enabled: bool = True
    server_no_context_takeover: bool = True
    client_no_context_takeover: bool = True
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15
    mem_level: int = 8
    level: int = 6
    compress_min_size: int = 128

    def __post_init__(self) -> None:
        for name in ("enabled", "server_no_context_takeover", "client_no_context_takeover"):
            _check_bool(name, getattr(self, name))
        _check_bits("server_max_window_bits", self.server_max_window_bits)
        _check_bits("client_max_window_bits", self.client_max_window_bits)
        if type(self.mem_level) is not int or not 1 <= self.mem_level <= 9:
            raise ValueError(f"compression mem_level must be an int from 1 to 9, got {self.mem_level!r}")
        if type(self.level) is not int or not 0 <= self.level <= 9:
            raise ValueError(f"compression level must be an int from 0 to 9, got {self.level!r}")
        if type(self.compress_min_size) is not int or self.compress_min_size < 0:
            raise ValueError("compression compress_min_size must be an int >= 0, "
                             f"got {self.compress_min_size!r}")
