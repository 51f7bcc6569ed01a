"""Coverage-guided fuzz targets (atheris, libFuzzer) for manual, longer runs.

    python tests/reliability/fuzz_atheris.py frames  -atheris_runs=200000
    python tests/reliability/fuzz_atheris.py upgrade -max_total_time=300 [CORPUS_DIR]
    python tests/reliability/fuzz_atheris.py head    -max_total_time=300

``frames``: the frame parser, with and without permessage-deflate, fed in
chunks the fuzzer chooses. ``upgrade``: a request parsed by httptools as the
server does, then the opening-handshake checks, subprotocol selection and
permessage-deflate negotiation on its headers. ``head``: the server's own HTTP
protocol (``HttpProtocol`` with its httptools parser, routes and responses) fed
request bytes in fuzzer-chosen chunks on a real event loop: nothing may escape
it or reach the loop's exception handler, every answer must be a well-formed
status line, and a head past ``MAX_HEAD_BYTES`` must be refused. Only the Python
code is coverage-instrumented (the compiled parser is exercised, not
instrumented). Anything but the documented protocol errors is a crash: libFuzzer
stops and writes the input to ./crash-*. test_fuzz.py runs each for a bounded
time.
"""

from __future__ import annotations

import asyncio
import re
import sys

import atheris

with atheris.instrument_imports():
    import httptools

    from fastws import create_app, websocket
    from fastws.ws._frame import ERROR, FrameParser, ProtocolError
    from fastws.deflate.permessage import DeflateOptions, Inflater, Negotiated, negotiate
    from fastws.http.context import Headers
    from fastws.http.handshake import HandshakeError, select_subprotocol, validate_upgrade
    from fastws.runtime.hub import acquire_hub
    from fastws.http.protocol import HttpProtocol
    from fastws.http.request import MAX_HEAD_BYTES
    from fastws.serve.server import Server

MAX_MESSAGE = 4096
SUBPROTOCOLS = ("chat", "superchat")


def fuzz_frames(data: bytes) -> None:
    """Feed the stream in fuzzer-chosen chunks; only protocol ERRORs may end it."""
    fdp = atheris.FuzzedDataProvider(data)
    inflater = None
    if fdp.ConsumeBool():
        inflater = Inflater(Negotiated(True, fdp.ConsumeBool(), 15, fdp.ConsumeIntInRange(8, 15)))
    parser = FrameParser(max_message_size=MAX_MESSAGE, inflater=inflater)
    events = []
    while fdp.remaining_bytes():
        events += parser.feed(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 512)))
    for i, (kind, value) in enumerate(events):
        if kind == ERROR:
            if i != len(events) - 1 or not isinstance(value, ProtocolError) \
                    or value.code not in (1002, 1007, 1009):
                raise AssertionError(f"bad ERROR event {value!r} at {i} of {len(events)}")


class _Request:
    """httptools callbacks collecting one request, as the server does."""

    def __init__(self) -> None:
        self.headers = Headers()
        self.url = b""
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.add(name.decode("latin-1"), value.decode("latin-1"))

    def on_message_complete(self) -> None:
        self.complete = True


_LINES = [b"GET /ws HTTP/1.1", b"GET /ws HTTP/1.0", b"POST /ws HTTP/1.1", b"GET * HTTP/1.1"]
_NAMES = [b"Host", b"Upgrade", b"Connection", b"Sec-WebSocket-Key", b"Sec-WebSocket-Version",
          b"Sec-WebSocket-Protocol", b"Sec-WebSocket-Extensions", b"Origin", b"Content-Length",
          b"Transfer-Encoding"]
_GOOD = {b"Host": b"127.0.0.1", b"Upgrade": b"websocket", b"Connection": b"Upgrade",
         b"Sec-WebSocket-Key": b"dGhlIHNhbXBsZSBub25jZQ==", b"Sec-WebSocket-Version": b"13",
         b"Sec-WebSocket-Protocol": b"chat", b"Origin": b"http://x",
         b"Sec-WebSocket-Extensions": b"permessage-deflate; client_max_window_bits",
         b"Content-Length": b"0", b"Transfer-Encoding": b"chunked"}


def _request_bytes(fdp: atheris.FuzzedDataProvider) -> bytes:
    """Mostly a request assembled from known header names with good or fuzzed
    values (so the fuzzer reaches the handshake checks); sometimes raw bytes."""
    if fdp.ConsumeIntInRange(0, 3) == 0:
        return fdp.ConsumeBytes(fdp.remaining_bytes())
    lines = [_LINES[fdp.ConsumeIntInRange(0, len(_LINES) - 1)]]
    for _ in range(fdp.ConsumeIntInRange(0, 12)):
        name = _NAMES[fdp.ConsumeIntInRange(0, len(_NAMES) - 1)]
        value = _GOOD[name] if fdp.ConsumeBool() else fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 60))
        lines.append(name + b": " + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def fuzz_upgrade(data: bytes) -> None:
    """Parse a request and run the handshake decisions on it."""
    request = _Request()
    parser = httptools.HttpRequestParser(request)
    try:
        parser.feed_data(_request_bytes(atheris.FuzzedDataProvider(data)))
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        return                                   # the server answers 400
    if not request.complete:
        return
    headers = request.headers
    try:
        validate_upgrade(parser.get_method().decode("ascii", "replace"),
                         parser.get_http_version(), headers)
    except HandshakeError as err:
        if not 400 <= err.status <= 499:
            raise AssertionError(f"handshake refused with {err.status}") from None
    chosen = select_subprotocol(headers.get("sec-websocket-protocol"), SUBPROTOCOLS)
    if chosen is not None and chosen not in SUBPROTOCOLS:
        raise AssertionError(f"chose a subprotocol we do not speak: {chosen!r}")
    value, negotiated = negotiate(headers.getall("sec-websocket-extensions"), DeflateOptions())
    if value is not None:
        if any(c in value for c in "\r\n\0") or not value.isascii():
            raise AssertionError(f"unsafe extension response {value!r}")
        if negotiated is None:
            raise AssertionError("extension header without parameters")


class _Transport:
    """What HttpProtocol writes, kept; the rest of a transport, inert."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.out += data

    def writelines(self, chunks) -> None:
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        self.closed = True

    abort = close

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 3000)}.get(name, default)


_head_world: dict = {}


def _head_setup() -> dict:
    """One loop, app, server and hub for every input (a head target run)."""
    if not _head_world:
        loop = asyncio.new_event_loop()
        errors: list = []
        loop.set_exception_handler(lambda _loop, context: errors.append(context))
        app = create_app()
        app.use(websocket())

        @app.get("/")
        def index(ctx):
            return ctx.text("ok", headers={"X-Echo": ctx.get_query("h", "-")})

        @app.post("/body")
        async def body(ctx):
            return {"length": len(await ctx.body())}

        server = Server(app, max_request_memory=1 << 20)
        server.hub = acquire_hub(app, server.options, loop)
        _head_world.update(loop=loop, errors=errors, app=app, server=server)
    return _head_world


_STATUS = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] ")


def fuzz_head(data: bytes) -> None:
    """Feed the server's HTTP protocol what a client could send, in chunks."""
    world = _head_setup()
    loop, server = world["loop"], world["server"]
    fdp = atheris.FuzzedDataProvider(data)
    chunks = []
    if fdp.ConsumeIntInRange(0, 7) == 0:
        # A head that never ends: a line grown past the budget.
        start = _request_bytes(fdp).rstrip(b"\r\n") + b"\r\nX-A: "
        chunks = [start] + [b"a" * 4096] * ((MAX_HEAD_BYTES // 4096) + 2)
    else:
        stream = _request_bytes(fdp) + fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 200))
        while stream:
            n = fdp.ConsumeIntInRange(1, 64) if fdp.remaining_bytes() else len(stream)
            chunks.append(stream[:n])
            stream = stream[n:]
    transport = _Transport()

    async def run() -> None:
        proto = HttpProtocol(world["app"], server.hub, server)
        proto.connection_made(transport)
        for chunk in chunks:
            if transport.closed:
                break
            proto.data_received(chunk)
            await asyncio.sleep(0)
        for _ in range(20):
            await asyncio.sleep(0)
        proto.connection_lost(None)
        await asyncio.sleep(0)

    loop.run_until_complete(run())
    if world["errors"]:
        raise AssertionError(f"the loop's exception handler was called: {world['errors']!r}")
    out = bytes(transport.out)
    if out and not _STATUS.match(out):
        raise AssertionError(f"not a status line: {out[:80]!r}")
    if sum(map(len, chunks)) > 2 * MAX_HEAD_BYTES and b"\r\n\r\n" not in b"".join(chunks) \
            and not out.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ", b"HTTP/1.1 414 ")):
        raise AssertionError(f"a head past the budget was not refused: {out[:80]!r}")
    if server.bodies_held:
        raise AssertionError(f"{server.bodies_held} body bytes still counted after the close")


TARGETS = {"frames": fuzz_frames, "upgrade": fuzz_upgrade, "head": fuzz_head}


def main(argv: list[str]) -> None:
    """``fuzz_atheris.py TARGET [libFuzzer options and corpus dirs]``."""
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: {argv[0]} {{{'|'.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[argv[1]]
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
