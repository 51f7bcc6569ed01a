"""Request context for HTTP routes and WebSocket upgrades, and HTTP responses."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import parse_qsl

from fastws.errors import HTTPError
from fastws.http.heads import response_head
from fastws.http.routing import Params

__all__ = ["Headers", "Context", "Response", "HTTPError", "plain_response"]


# Headers whose values repeat from one connection to the next (browsers send
# the same User-Agent, Accept-Language, Origin... on every socket): their
# values are interned, so thousands of upgraded connections share one copy.
# Keys, cookies and authorization stay per-connection.
_SHARED_VALUES = frozenset({
    "host", "origin", "user-agent", "upgrade", "connection", "accept", "accept-encoding",
    "accept-language", "cache-control", "pragma", "sec-websocket-version",
    "sec-websocket-extensions", "sec-websocket-protocol", "sec-fetch-dest", "sec-fetch-mode",
    "sec-fetch-site", "sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform",
})


# bytes -> interned str, for header names and shared values; bounded, so
# clients sending made-up names cannot grow them past a few hundred entries.
_NAMES: dict[bytes, str] = {}
_VALUES: dict[bytes, str] = {}
_CACHE_MAX = 512


class Headers(Mapping[str, str]):
    """Case-insensitive request headers; repeated headers keep every value.

    ``headers["x"]`` and ``get`` join repeated values with ", " (RFC 9110 list
    semantics); ``getall`` returns them one by one. Names are kept lower-case
    and interned: a server holding thousands of upgraded connections keeps
    each one's request headers, so they are stored once, compactly.
    """

    __slots__ = ("_index",)

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._index: dict[str, str | list[str]] = {}
        for name, value in items or ():
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        """Append one header."""
        key = sys.intern(name.lower())
        if key in _SHARED_VALUES and len(value) <= 512:
            value = sys.intern(value)
        self._put(key, value)

    def add_raw(self, name: bytes, value: bytes) -> None:
        """Append one header as the parser hands it over (bytes, any case)."""
        # Names (and the values that repeat between connections) come from
        # small caches: every upgrade sends the same dozen names, and
        # decoding, lower-casing and interning each costs more than a lookup.
        key = _NAMES.get(name)
        if key is None:
            key = sys.intern(name.decode("latin-1").lower())
            if len(_NAMES) < _CACHE_MAX:
                _NAMES[name] = key
        if key in _SHARED_VALUES and len(value) <= 512:
            text = _VALUES.get(value)
            if text is None:
                text = sys.intern(value.decode("latin-1"))
                if len(_VALUES) < _CACHE_MAX:
                    _VALUES[value] = text
        else:
            text = value.decode("latin-1")
        self._put(key, text)

    def _put(self, key: str, value: str) -> None:
        old = self._index.get(key)
        if old is None:
            self._index[key] = value
        elif type(old) is list:
            old.append(value)
        else:
            self._index[key] = [old, value]

    def __getitem__(self, name: str) -> str:
        value = self._index[name.lower()]
        return value if type(value) is str else ", ".join(value)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of ``name`` (repeats joined with ", "), or ``default``."""
        value = self._index.get(name.lower())
        if value is None:
            return default
        return value if type(value) is str else ", ".join(value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def getall(self, name: str) -> list[str]:
        """Every value sent for ``name``, in order (empty list if none)."""
        value = self._index.get(name.lower())
        if value is None:
            return []
        return [value] if type(value) is str else list(value)

    def raw(self) -> list[tuple[str, str]]:
        """Every (lower-case name, value) pair, repeats included."""
        return [(k, v) for k in self._index for v in self.getall(k)]

    def __repr__(self) -> str:
        return f"Headers({self.raw()!r})"


class Response:
    """An HTTP response: status, headers and a body of bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, body: bytes | str = b"", status: int = 200,
                 headers: Mapping[str, str] | None = None,
                 content_type: str | None = None) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.status = status
        self.body = body
        self.headers: dict[str, str] = dict(headers or {})
        if content_type and "content-type" not in {k.lower() for k in self.headers}:
            self.headers["Content-Type"] = content_type

    def encode(self, keep_alive: bool, head: bool = False) -> bytes:
        """The response bytes for HTTP/1.1 (body left out for HEAD). ValueError
        for a header HTTP cannot carry (``check_header``)."""
        headers: Any = self.headers.items()
        ours = []
        if self.status >= 200 and self.status not in (204, 304):
            ours.append(f"Content-Length: {len(self.body)}")
        if not keep_alive:
            # One Connection header: fold "close" into one a handler set.
            if any(type(k) is str and k.lower() == "connection" for k in self.headers):
                headers = _fold_close(headers)
            else:
                ours.append("Connection: close")
        head_bytes = response_head(self.status, headers, ours)
        return head_bytes if head or self.status in (204, 304) else head_bytes + self.body

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


def _fold_close(headers: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    # Names are checked by response_head, after this: one that is not a str
    # must reach that check (a ValueError, answered 500), not fail here.
    folded = False
    for name, value in headers:
        if not folded and type(name) is str and name.lower() == "connection":
            folded = True
            if type(value) is str:
                value = f"{value}, close"
        yield name, value


def plain_response(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    """A plain-text (UTF-8) response: what ``ctx.text`` returns, and how the
    server answers requests it refuses."""
    return Response(text, status, headers, "text/plain; charset=utf-8")


class Context:
    """What a handler knows of the request: method, path, params, query, headers
    and body; and the helpers that build responses.

    For a WebSocket route the context describes the upgrade request
    (``is_websocket`` is True) and is passed to the route handler with the
    socket.
    """

    __slots__ = ("app", "method", "path", "raw_query", "params", "headers",
                 "http_version", "remote", "_state", "_body", "_query", "is_websocket",
                 "scheme", "__weakref__")

    def __init__(self, app: Any, method: str, path: str, raw_query: str, headers: Headers,
                 http_version: str = "1.1", body: bytes = b"", remote: Any = None,
                 is_websocket: bool = False) -> None:
        self.app = app
        self.method = method
        self.path = path
        self.raw_query = raw_query
        self.params: Params = Params()
        self.headers = headers
        self.http_version = http_version
        self.remote = remote
        self._state: dict[str, Any] | None = None
        self.is_websocket = is_websocket
        self._body = body
        self._query: dict[str, str] | None = None
        #: "http" or "https" (as a trusted proxy said, with proxy headers on)
        self.scheme = "http"

    @property
    def state(self) -> dict[str, Any]:
        """A dict for middleware and handlers to pass values along."""
        if self._state is None:
            self._state = {}
        return self._state

    @property
    def query(self) -> dict[str, str]:
        """Query parameters (the first value of each name)."""
        if self._query is None:
            q: dict[str, str] = {}
            for k, v in parse_qsl(self.raw_query, keep_blank_values=True):
                q.setdefault(k, v)
            self._query = q
        return self._query

    def get_query(self, name: str, default: str | None = None) -> str | None:
        """One query parameter, or ``default`` when absent."""
        return self.query.get(name, default)

    getQuery = get_query

    async def body(self) -> bytes:
        """The request body (already read and bounded by the server)."""
        return self._body

    async def json_body(self) -> Any:
        """The request body parsed as JSON; a 400 HTTPError if it is not JSON."""
        try:
            return json.loads(self._body)
        except ValueError:
            raise HTTPError(400, "request body is not valid JSON") from None

    jsonBody = json_body

    def json(self, obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """A JSON response."""
        body = json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=str)
        return Response(body, status, headers, "application/json")

    def text(self, s: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """A plain-text response (UTF-8)."""
        return plain_response(status, s, headers)

    def html(self, s: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        """An HTML response (UTF-8)."""
        return Response(s, status, headers, "text/html; charset=utf-8")

    def __repr__(self) -> str:
        return f"<Context {self.method} {self.path}>"
