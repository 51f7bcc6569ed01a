"""permessage-deflate (RFC 7692): negotiation, bounded inflate, encode-once deflate.

Sans-I/O over the stdlib ``zlib``: header strings and payload bytes in, header
strings and payload bytes out. The connection decides when a message is
compressed (RSV1 on its first frame) and feeds this module the payloads.

* ``negotiate(header_values, options)`` reads the client's
  ``Sec-WebSocket-Extensions`` offers and returns the response header value and
  the agreed ``Negotiated`` parameters, or ``(None, None)`` to go uncompressed.
* ``Inflater`` decompresses one connection's incoming messages with a hard
  bound on the output, checked while inflating, never after.
* ``Deflater`` compresses one connection's outgoing messages. Without server
  context takeover (the default) it keeps no state: every connection whose
  ``Negotiated.key`` is equal shares one compressor, so a broadcast is
  compressed once and the same bytes go to each of them.

The defaults (``DeflateOptions``) choose a server that compresses a broadcast
once for all its members and keeps no zlib state per idle connection: no
context takeover either way, full windows (without takeover they cost no
memory), zlib's level and memory level, and messages under 128 bytes sent
uncompressed. docs/guides/compression.md has the measurements behind each.

Close codes: a message that inflates past ``max_output`` raises
``MessageTooBig`` (1009, as for an uncompressed message over the limit).
Compressed data zlib cannot decode raises ``InflateError`` with 1007: like
invalid UTF-8 in a text message, the payload is inconsistent with the
encoding the frame declared (RSV1), which is what 1007 means in RFC 6455
§7.4.1; Node's ``ws`` closes with 1007 for the same reason.
"""

from __future__ import annotations

import threading
import zlib
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from fastws._constants import CloseCode
from fastws.options import DeflateOptions
from fastws.errors import CompressionError, InflateError, MessageTooBig

__all__ = [
    "CompressionError", "InflateError", "MessageTooBig", "DeflateOptions", "DeflateKey",
    "Negotiated", "negotiate", "Inflater", "Deflater", "SharedDeflater", "shared_deflater",
]

#: The empty stored block a sync flush ends with: senders strip it, receivers
#: append it back (RFC 7692 §7.2.1, §7.2.2).
_TAIL = b"\x00\x00\xff\xff"
#: A complete compressed empty message: the §7.2.1 procedure applied to no
#: data leaves one byte, the header bits of an empty stored block that the
#: receiver's appended tail completes.
_EMPTY = b"\x00"
_EXTENSION = "permessage-deflate"
_BITS = {str(n): n for n in range(8, 16)}


class DeflateKey(NamedTuple):
    """What fixes the bytes a stateless compressor produces for a payload."""

    window_bits: int
    level: int
    mem_level: int


@dataclass(frozen=True)
class Negotiated:
    """The parameters agreed with one client.

    ``server_max_window_bits`` and ``client_max_window_bits`` are the windows
    in force (15 when the response left them out).
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int
    client_max_window_bits: int
    level: int = 6
    mem_level: int = 8
    compress_min_size: int = 128

    @property
    def key(self) -> DeflateKey | None:
        """Connections with equal keys can be sent the same compressed frame.

        None with server context takeover: each such connection's frames
        depend on what it was sent before, so they are never shared.
        """
        if not self.server_no_context_takeover:
            return None
        return DeflateKey(_deflate_bits(self.server_max_window_bits), self.level, self.mem_level)


def _deflate_bits(bits: int) -> int:
    # zlib refuses a raw 8-bit deflate window; 9 never reaches past 250 bytes.
    return 9 if bits == 8 else bits


# ---------------------------------------------------------------------------
# Sec-WebSocket-Extensions parsing (RFC 6455 §9.1, RFC 7230 lists)

_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789"
                    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

_Param = tuple[str, "str | None"]
_Offer = tuple[str, list[_Param]]


class _Malformed(Exception):
    pass


class _Scanner:
    """Reads one header value; raises _Malformed at the first syntax error."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ows(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t":
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHARS:
            self.pos += 1
        if self.pos == start:
            raise _Malformed
        return self.text[start:self.pos]

    def quoted(self) -> str:
        self.pos += 1  # the opening quote
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == '"':
                return "".join(out)
            if ch == "\\":
                if self.pos >= len(self.text):
                    break
                ch = self.text[self.pos]
                self.pos += 1
            out.append(ch)
        raise _Malformed

    def skip_element(self) -> None:
        """Move past the rest of a bad list element: to the next comma that
        is not inside a quoted string."""
        in_quotes = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if in_quotes:
                if ch == "\\":
                    self.pos += 1
                elif ch == '"':
                    in_quotes = False
            elif ch == '"':
                in_quotes = True
            elif ch == ",":
                self.pos -= 1
                return

    def extension(self) -> _Offer:
        name = self.token()
        params: list[_Param] = []
        while True:
            self.skip_ows()
            if self.peek() != ";":
                return name, params
            self.pos += 1
            self.skip_ows()
            pname = self.token()
            self.skip_ows()
            value: str | None = None
            if self.peek() == "=":
                self.pos += 1
                self.skip_ows()
                if self.peek() == '"':
                    # RFC 6455 §9.1: the unescaped value must still be a token.
                    value = self.quoted()
                    if not value or not all(c in _TCHARS for c in value):
                        raise _Malformed
                else:
                    value = self.token()
            params.append((pname, value))


def _offers(value: str) -> list[_Offer | None]:
    """The extension offers in one header value, in order; None stands for an
    element that is not well formed. Empty list elements are skipped."""
    scan = _Scanner(value)
    out: list[_Offer | None] = []
    while scan.pos < len(scan.text):
        scan.skip_ows()
        if scan.peek() in (",", ""):
            scan.pos += 1
            continue
        try:
            offer = scan.extension()
            scan.skip_ows()
            if scan.peek() not in (",", ""):
                raise _Malformed
        except _Malformed:
            scan.skip_element()
            offer = None
        out.append(offer)
        scan.pos += 1  # the comma (or past the end)
    return out


def _accept(params: list[_Param], options: DeflateOptions) -> tuple[str, Negotiated] | None:
    """Our response to one permessage-deflate offer, or None to decline it
    (RFC 7692 §5 and §7: unknown or repeated parameters, bad values)."""
    seen: set[str] = set()
    server_nct = client_nct = False
    server_bits: int | None = None
    client_bits: int | None = None
    client_bits_offered = False
    for raw_name, value in params:
        name = raw_name.lower()
        if name in seen:
            return None
        seen.add(name)
        if name == "server_no_context_takeover" or name == "client_no_context_takeover":
            if value is not None:
                return None
            if name == "server_no_context_takeover":
                server_nct = True
            else:
                client_nct = True
        elif name == "server_max_window_bits":
            server_bits = _BITS.get(value) if value is not None else None
            if server_bits is None:
                return None
        elif name == "client_max_window_bits":
            client_bits_offered = True
            if value is not None:
                client_bits = _BITS.get(value)
                if client_bits is None:
                    return None
        else:
            return None

    # §7.1.1.1: we may add server_no_context_takeover; we must keep it if asked.
    server_nct = server_nct or options.server_no_context_takeover
    # §7.1.1.2: we may add client_no_context_takeover, and echo the client's hint.
    client_nct = client_nct or options.client_no_context_takeover
    # §7.1.2.1: answer an offered limit with it or less; we may limit ourselves.
    if server_bits is None:
        server_bits = options.server_max_window_bits
        send_server_bits = server_bits < 15
    else:
        server_bits = min(server_bits, options.server_max_window_bits)
        send_server_bits = True
    # §7.1.2.2: only a client that offered client_max_window_bits may be told
    # a limit; the others may use the full window.
    send_client_bits = False
    if client_bits_offered:
        client_bits = min(client_bits or 15, options.client_max_window_bits)
        send_client_bits = client_bits < 15
    else:
        client_bits = 15

    parts = [_EXTENSION]
    if server_nct:
        parts.append("server_no_context_takeover")
    if client_nct:
        parts.append("client_no_context_takeover")
    if send_server_bits:
        parts.append(f"server_max_window_bits={server_bits}")
    if send_client_bits:
        parts.append(f"client_max_window_bits={client_bits}")
    agreed = Negotiated(server_nct, client_nct, server_bits, client_bits,
                        options.level, options.mem_level, options.compress_min_size)
    return "; ".join(parts), agreed


def negotiate(header_values: Iterable[str], options: DeflateOptions) -> tuple[str | None, Negotiated | None]:
    """Answer a client's ``Sec-WebSocket-Extensions`` header(s).

    ``header_values`` holds every such header line of the request, in order.
    The first permessage-deflate offer we can accept wins: returns the value
    of the response's ``Sec-WebSocket-Extensions`` header and the agreed
    parameters. Returns ``(None, None)`` when compression is disabled or no
    offer is acceptable; malformed offers are declined, not failed, so the
    connection proceeds uncompressed. Extension and parameter names are
    matched case-insensitively.
    """
    if not options.enabled:
        return None, None
    for value in header_values:
        for offer in _offers(value):
            if offer is None or offer[0].lower() != _EXTENSION:
                continue
            accepted = _accept(offer[1], options)
            if accepted is not None:
                return accepted
    return None, None


# ---------------------------------------------------------------------------
# Inflate


class Inflater:
    """Decompresses one connection's compressed messages (RFC 7692 §7.2.2).

    For each message whose first frame has RSV1 set: ``feed`` every
    fragment's payload, then ``finish``; or ``decompress`` a single-frame
    message in one call. ``max_output`` bounds the message's decompressed
    size, counted over all of its fragments (None: no bound); zlib is asked
    for at most one byte more than the room left, so a bomb stops after
    ``max_output + 1`` bytes of output whatever its ratio.

    With client context takeover the zlib stream lives as long as the
    connection; without it the stream is created for each message and freed
    after it, so an idle connection holds no inflate memory. After an error
    the inflater is spent: the connection is to be closed with its code.
    """

    __slots__ = ("_bits", "_reset", "_zobj", "_size", "_fed")

    def __init__(self, negotiated: Negotiated) -> None:
        self._bits = negotiated.client_max_window_bits
        self._reset = negotiated.client_no_context_takeover
        self._zobj = None
        self._size = 0
        self._fed = False

    @property
    def size(self) -> int:
        """Decompressed bytes of the current message so far."""
        return self._size

    def feed(self, data: bytes, max_output: int | None) -> bytes:
        """Decompress one fragment of the current message."""
        if not data:
            return b""
        self._fed = True
        return self._inflate(data, max_output)

    def finish(self, max_output: int | None) -> bytes:
        """End the current message: inflate the stripped tail, return what it
        released, and free the stream without context takeover."""
        # A message with no compressed bytes at all is empty; the tail alone
        # would leave the stream inside a stored block.
        out = self._inflate(_TAIL, max_output) if self._fed else b""
        self._end()
        return out

    def decompress(self, payload: bytes, max_output: int | None) -> bytes:
        """A whole single-frame message: ``feed`` plus ``finish`` in one pass."""
        out = self._inflate(payload + _TAIL, max_output) if payload else b""
        self._end()
        return out

    def _end(self) -> None:
        self._size = 0
        self._fed = False
        if self._reset:
            self._zobj = None

    def _inflate(self, data: bytes, max_output: int | None) -> bytes:
        zobj = self._zobj
        if zobj is None:
            zobj = self._zobj = zlib.decompressobj(wbits=-self._bits)
        chunks = []
        try:
            while True:
                if max_output is None:
                    out = zobj.decompress(data)
                else:
                    # One byte past the room left tells "exactly full" from "over".
                    out = zobj.decompress(data, max_output - self._size + 1)
                self._size += len(out)
                if max_output is not None and (self._size > max_output or zobj.unconsumed_tail):
                    raise MessageTooBig(f"message inflates past {max_output} bytes")
                chunks.append(out)
                if not zobj.eof:
                    break
                # The sender ended its DEFLATE stream (a block with BFINAL set,
                # RFC 7692 §7.2.3.4); whatever follows starts a new one, which
                # cannot refer to the ended stream's data.
                data = zobj.unused_data
                zobj = self._zobj = zlib.decompressobj(wbits=-self._bits)
                if not data:
                    break
        except zlib.error as exc:
            raise InflateError(f"invalid compressed data: {exc}"[:120]) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# ---------------------------------------------------------------------------
# Deflate


class SharedDeflater:
    """A stateless-per-message compressor that any number of connections with
    the same ``DeflateKey`` share.

    One zlib stream is reused; a full flush after each message clears its
    match history, so no message refers to an earlier one and each decodes
    with a fresh inflater, as server_no_context_takeover promises. Reusing the
    stream avoids setting up ~256 KiB of zlib state per message.
    """

    __slots__ = ("key", "_zobj", "_lock")

    def __init__(self, key: DeflateKey) -> None:
        self.key = key
        self._zobj = zlib.compressobj(key.level, zlib.DEFLATED, -key.window_bits, key.mem_level)
        # compress and flush are two calls; threads must not interleave them.
        self._lock = threading.Lock()

    def compress(self, payload: bytes) -> bytes:
        """The compressed payload of one message (without the 4-byte tail)."""
        if not payload:
            return _EMPTY
        with self._lock:
            zobj = self._zobj
            data = zobj.compress(payload) + zobj.flush(zlib.Z_FULL_FLUSH)
        return data[:-4]


_shared: dict[DeflateKey, SharedDeflater] = {}
_shared_lock = threading.Lock()


def shared_deflater(key: DeflateKey) -> SharedDeflater:
    """The process-wide compressor for ``key`` (one per distinct key; at most
    a handful exist, one per window size clients asked for)."""
    deflater = _shared.get(key)
    if deflater is None:
        with _shared_lock:
            deflater = _shared.get(key)
            if deflater is None:
                deflater = _shared[key] = SharedDeflater(key)
    return deflater


class Deflater:
    """Compresses one connection's outgoing messages (RFC 7692 §7.2.1).

    Without server context takeover it holds no zlib state and uses the
    shared compressor of its key. With it, the connection owns a zlib stream
    whose window carries over from message to message.
    """

    __slots__ = ("_negotiated", "_shared", "_zobj")

    def __init__(self, negotiated: Negotiated) -> None:
        self._negotiated = negotiated
        key = negotiated.key
        self._shared = shared_deflater(key) if key is not None else None
        self._zobj = None

    def compress(self, payload: bytes) -> bytes:
        """The compressed payload of one whole message (send with RSV1 set)."""
        if self._shared is not None:
            return self._shared.compress(payload)
        if not payload:
            return _EMPTY
        zobj = self._zobj
        if zobj is None:
            n = self._negotiated
            zobj = self._zobj = zlib.compressobj(n.level, zlib.DEFLATED,
                                                 -_deflate_bits(n.server_max_window_bits),
                                                 n.mem_level)
        return (zobj.compress(payload) + zobj.flush(zlib.Z_SYNC_FLUSH))[:-4]

    def encode(self, payload: bytes) -> tuple[bytes, bool]:
        """What to send for a message and whether to set RSV1.

        Messages under ``compress_min_size`` go as they are; the others are
        compressed, even the rare one that does not shrink (deflate's stored
        blocks cost it a few bytes), so the rule is one a client can predict.
        Without context takeover the result depends only on the key, the
        threshold and the payload: for a broadcast, compute it once and send
        it to every connection with that key.
        """
        if len(payload) < self._negotiated.compress_min_size:
            return payload, False
        return self.compress(payload), True
