"""The opening handshake of RFC 6455 §4.2: validate the upgrade request and
build the 101 response. Pure functions over parsed request data."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

from fastws.http.heads import check_header, response_head
from fastws.errors import HandshakeError

__all__ = ["HandshakeError", "accept_key", "validate_upgrade", "select_subprotocol", "same_origin",
           "response_101", "is_upgrade_request"]

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _strict_b64decode(text: str) -> bytes:
    # base64.b64decode(validate=True) does the same in three Python calls.
    if _A2B_STRICT:
        return binascii.a2b_base64(text, strict_mode=True)
    return base64.b64decode(text.encode("ascii"), validate=True)


try:
    binascii.a2b_base64(b"", strict_mode=True)
    _A2B_STRICT = True
except TypeError:           # Python 3.10
    _A2B_STRICT = False


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1(key.encode("ascii") + _GUID).digest()
    return base64.b64encode(digest).decode("ascii")


def _tokens(value: str | None) -> tuple[str, ...]:
    """The lower-cased items of a comma-separated header value."""
    if not value:
        return ()
    tokens = _TOKENS.get(value)
    if tokens is None:
        tokens = tuple(t.strip().lower() for t in value.split(",") if t.strip())
        if len(_TOKENS) < 256:      # values repeat from one client to the next
            _TOKENS[value] = tokens
    return tokens


_TOKENS: dict[str, tuple[str, ...]] = {}


def is_upgrade_request(headers) -> bool:
    """Whether the client asked for a WebSocket at all (``Upgrade: websocket``)."""
    return "websocket" in _tokens(headers.get("upgrade"))


def validate_upgrade(method: str, http_version: str, headers) -> str:
    """Check an upgrade request; return the ``Sec-WebSocket-Accept`` value.

    Raises HandshakeError with 400 for a malformed request and 426 (carrying
    ``Sec-WebSocket-Version: 13``) for a version we do not speak.
    """
    if method != "GET":
        raise HandshakeError(400, "WebSocket upgrade requires GET")
    if http_version != "1.1":       # nearly always: skip the parse
        try:
            major, minor = (int(x) for x in http_version.split("."))
        except ValueError:
            raise HandshakeError(400, "bad HTTP version") from None
        if (major, minor) < (1, 1):
            raise HandshakeError(400, "WebSocket upgrade requires HTTP/1.1 or later")
    if not headers.get("host"):
        raise HandshakeError(400, "missing Host header")
    if "websocket" not in _tokens(headers.get("upgrade")):
        raise HandshakeError(400, "missing or bad Upgrade header")
    if "upgrade" not in _tokens(headers.get("connection")):
        raise HandshakeError(400, "Connection header lacks the upgrade token")
    keys = headers.getall("sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError(400, "missing or repeated Sec-WebSocket-Key")
    key = keys[0].strip()
    try:
        raw = _strict_b64decode(key)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise HandshakeError(400, "Sec-WebSocket-Key is not 16 bytes in base64")
    versions = headers.getall("sec-websocket-version")
    if len(versions) != 1 or versions[0].strip() != "13":
        raise HandshakeError(426, "unsupported WebSocket version",
                             [("Sec-WebSocket-Version", "13")])
    return accept_key(key)


def select_subprotocol(offered: str | None, supported: Iterable[str]) -> str | None:
    """The first of our ``supported`` subprotocols the client offered, if any.

    Server preference wins, so a deployment can phase protocols in and out.
    """
    if not offered:
        return None
    client = {t.strip() for t in offered.split(",")}
    for proto in supported:
        if proto in client:
            return proto
    return None


# The handshake's own headers: a middleware's header of the same name is not sent.
_OURS = frozenset({"upgrade", "connection", "sec-websocket-accept", "sec-websocket-protocol",
                   "sec-websocket-extensions", "content-length", "transfer-encoding"})


def response_101(accept: str, subprotocol: str | None = None,
                 extensions: str | None = None,
                 headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> bytes:
    """The ``101 Switching Protocols`` response bytes, with ``headers`` (say, a
    ``Set-Cookie`` a middleware added; a mapping, or (name, value) pairs when a
    name repeats) after the handshake's own.

    Raises ValueError for a header HTTP cannot carry (``check_header``).
    """
    ours = ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}"]
    if subprotocol:
        ours.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extensions:
        ours.append(f"Sec-WebSocket-Extensions: {extensions}")
    pairs = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return response_head(101, _not_ours(pairs), first=ours)


def _not_ours(pairs: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """The app's headers less the handshake's own; each checked first, so a bad
    one is refused whatever its name."""
    for name, value in pairs:
        check_header(name, value)
        if name.lower() not in _OURS:
            yield name, value


_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(origin: str, host: str | None) -> bool:
    """Whether a browser's ``Origin`` names the host (and port) the request was
    sent to (its ``Host`` header): what a page on this site sends. ``null``,
    another host, another port, or anything unreadable is not. A ``Host``
    without a port matches an origin of that host on any port: a proxy may
    pass the host alone (nginx's ``$host``) while the page was on 8443, and a
    browser's cookies are not kept apart by port anyway."""
    if not host:
        return False
    try:
        o = urlsplit(origin.strip())
        h = urlsplit("//" + host.strip())
        o_port, h_port = o.port, h.port
    except ValueError:
        return False
    if o.scheme not in _DEFAULT_PORTS or not o.hostname or not h.hostname:
        return False
    if o.hostname != h.hostname:        # urlsplit lower-cases both
        return False
    if o_port is None:
        o_port = _DEFAULT_PORTS[o.scheme]
    return h_port is None or o_port == h_port
