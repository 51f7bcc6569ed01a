"""The ASGI framing (``fastws.asgi.mount``): what a mounted app's messages
become on the wire, read byte for byte from a real server over loopback.

HTTP: the status line, Content-Length for a body sent whole, chunked for a
stream, the app's Content-Length kept, its Transfer-Encoding dropped, no body
for HEAD and 204, and each message out of order refused with a clear error
(the app's ``send`` raises it; the client gets a 500 while nothing was out).
WebSocket: the scope, the connect/receive/disconnect messages, the denial
response (``websocket.http.response``) with our framing, and messages out of
order refused. One server serves the whole module; each path of the app is
one behaviour. ``tests/integration/test_asgi.py`` runs FastAPI and Starlette
through the same code.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from websockets.exceptions import InvalidStatus

from fastws import create_app, websocket
from fastws.asgi.mount import raw_headers

from tests.conftest import Running, serving
from tests.integration.clients import closed_with, raw_connection, recv, wait_for, ws_connect
from tests.integration.rawws import handshake_request, new_key

PREFIX = "/asgi"

#: What the app's ``send`` raised, by path (written on the server's loop
#: before the app re-raises, so before the client can read the answer).
errors: dict[str, str] = {}


def start(status: int = 200, headers: list[tuple[bytes, bytes]] | None = None) -> dict:
    return {"type": "http.response.start", "status": status, "headers": headers or []}


def body(data: bytes = b"", more: bool = False) -> dict:
    return {"type": "http.response.body", "body": data, "more_body": more}


#: path -> the messages the app sends, in order.
HTTP = {
    "/whole": [start(200, [(b"content-type", b"text/plain"), (b"x-a", b"1")]), body(b"hello")],
    "/stream": [start(), body(b"ab", True), body(b"", True), body(b"cde", True), body()],
    "/stream-with-length": [start(200, [(b"content-length", b"5")]),
                            body(b"ab", True), body(b"cde")],
    "/their-framing": [start(200, [(b"transfer-encoding", b"gzip")]), body(b"plain")],
    "/no-content": [start(204, [(b"x-a", b"1")]), body()],
    "/teapot": [start(418), body(b"short and stout")],
    "/unregistered": [start(599), body(b"?")],
    "/close": [start(200, [(b"connection", b"close")]), body(b"bye")],
    # Out of order, or not ASGI: send() raises, the client gets a 500.
    "/body-first": [body(b"x")],
    "/start-twice": [start(), start()],
    "/unknown": [{"type": "http.response.trailers", "headers": []}],
    "/websocket-message": [{"type": "websocket.accept"}],
    "/too-long": [start(200, [(b"content-length", b"3")]), body(b"abcd")],
    "/too-short": [start(200, [(b"content-length", b"10")]), body(b"abc")],
    "/injected": [start(200, [(b"x-a", b"1\r\nx-injected: yes")]), body(b"x")],
    "/nothing": [],
    "/no-body": [start()],
    # The response is out before the mistake: the error still reaches the app.
    "/after-complete": [start(), body(b"done"), body(b"more")],
}


async def asgi_app(scope, receive, send):
    if scope["type"] == "lifespan":
        raise RuntimeError("no lifespan")             # treated as unsupported
    path = scope["path"][len(PREFIX):]
    if scope["type"] == "http":
        if path.startswith("/scope"):
            await send(start(200, [(b"content-type", b"application/json")]))
            await send(body(json.dumps(jsonable(scope)).encode()))
            return
        for message in HTTP[path]:
            try:
                await send(message)
            except Exception as exc:
                errors[path] = f"{type(exc).__name__}: {exc}"
                raise
        return
    await WEBSOCKET[path](scope, receive, send)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


async def ws_echo(scope, receive, send):
    assert await receive() == {"type": "websocket.connect"}
    await send({"type": "websocket.accept", "subprotocol": "v2",
                "headers": [(b"x-session", b"abc")]})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            errors["/ws-echo"] = f"disconnect {message['code']} {message['reason']}"
            return
        if message.get("text") == "scope":
            await send({"type": "websocket.send", "text": json.dumps(jsonable(scope))})
        elif message.get("text") is not None:
            await send({"type": "websocket.send", "text": "text:" + message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": b"bytes:" + message["bytes"]})


async def ws_deny(scope, receive, send):
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"www-authenticate", b"Bearer"), (b"set-cookie", b"a=1"),
                            (b"set-cookie", b"b=2"), (b"content-length", b"999"),
                            (b"transfer-encoding", b"chunked"), (b"connection", b"keep-alive")]})
    await send({"type": "websocket.http.response.body", "body": b"who ", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"are you?"})


async def ws_deny_injected(scope, receive, send):
    await receive()
    await send({"type": "websocket.http.response.start", "status": 401,
                "headers": [(b"www-authenticate", b"Bearer\r\nx-injected: yes")]})
    await send({"type": "websocket.http.response.body", "body": b"no"})


async def ws_close_first(scope, receive, send):
    await receive()
    await send({"type": "websocket.close", "code": 1000})


async def ws_return_first(scope, receive, send):
    await receive()


def recording(path: str, messages: list[dict]):
    async def app(scope, receive, send):
        await receive()
        for message in messages:
            try:
                await send(message)
            except Exception as exc:
                errors[path] = f"{type(exc).__name__}: {exc}"
                raise
    return app


WEBSOCKET = {
    "/ws-echo": ws_echo,
    "/ws-deny": ws_deny,
    "/ws-deny-injected": ws_deny_injected,
    "/ws-close-first": ws_close_first,
    "/ws-return-first": ws_return_first,
    "/ws-send-first": recording("/ws-send-first", [{"type": "websocket.send", "text": "x"}]),
    "/ws-http-after-accept": recording("/ws-http-after-accept", [
        {"type": "websocket.accept"}, {"type": "http.response.start", "status": 200}]),
    "/ws-bytes-subprotocol": recording("/ws-bytes-subprotocol", [
        {"type": "websocket.accept", "subprotocol": b"v2"}]),
}


@pytest.fixture(scope="module")
def srv() -> Iterator[Running]:
    app = create_app()
    app.use(websocket(ping_interval=None))
    app.mount(PREFIX, asgi_app)
    with serving(app) as running:
        yield running


# ---------------------------------------------------------------- helpers


def exchange(port: int, data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """Send ``data`` and read until the server closes: the status line, the
    header pairs as sent (names as written) and every byte after the head."""
    with raw_connection(port) as sock:
        sock.sendall(data)
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, sep, rest = raw.partition(b"\r\n\r\n")
    assert sep, raw
    status, *lines = head.decode("latin-1").split("\r\n")
    pairs = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
    assert all(len(p) == 2 for p in pairs), lines
    return status, pairs, rest


def http(port: int, path: str, method: str = "GET", version: str = "1.1") -> tuple[str, list, bytes]:
    return exchange(port, f"{method} {PREFIX}{path} HTTP/{version}\r\nHost: t\r\n"
                          f"Connection: close\r\n\r\n".encode())


def named(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in pairs if k.lower() == name]


# ---------------------------------------------------------------- HTTP responses


def test_a_body_sent_whole_gets_a_content_length(srv):
    status, pairs, rest = http(srv.port, "/whole")
    assert status == "HTTP/1.1 200 OK"
    assert named(pairs, "content-length") == ["5"] and not named(pairs, "transfer-encoding")
    assert named(pairs, "content-type") == ["text/plain"] and named(pairs, "x-a") == ["1"]
    assert named(pairs, "connection") == ["close"]
    assert rest == b"hello"


def test_a_streamed_body_is_chunked_and_empty_parts_write_no_chunk(srv):
    status, pairs, rest = http(srv.port, "/stream")
    assert status == "HTTP/1.1 200 OK"
    assert named(pairs, "transfer-encoding") == ["chunked"] and not named(pairs, "content-length")
    # An empty chunk would end the body: the empty part in between writes none.
    assert rest == b"2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"


def test_a_stream_with_the_app_s_content_length_is_not_chunked(srv):
    _, pairs, rest = http(srv.port, "/stream-with-length")
    assert named(pairs, "content-length") == ["5"] and not named(pairs, "transfer-encoding")
    assert rest == b"abcde"


def test_http_1_0_gets_a_stream_unframed_and_the_connection_closes(srv):
    status, pairs, rest = http(srv.port, "/stream", version="1.0")
    assert status.split()[1] == "200"
    assert not named(pairs, "transfer-encoding") and not named(pairs, "content-length")
    assert rest == b"abcde"


def test_the_app_s_transfer_encoding_is_replaced_by_our_chunked_framing(srv):
    _, pairs, rest = http(srv.port, "/their-framing")
    assert named(pairs, "transfer-encoding") == ["chunked"]        # not "gzip"
    assert not named(pairs, "content-length")
    assert rest == b"5\r\nplain\r\n0\r\n\r\n"


@pytest.mark.parametrize("path, length", [("/whole", "5"), ("/stream-with-length", "5")])
def test_head_gets_the_headers_and_no_body(srv, path, length):
    _, pairs, rest = http(srv.port, path, method="HEAD")
    assert named(pairs, "content-length") == [length]
    assert rest == b""


def test_head_of_a_stream_writes_no_chunks(srv):
    _, pairs, rest = http(srv.port, "/stream", method="HEAD")
    assert not named(pairs, "transfer-encoding")
    assert rest == b""


def test_204_has_no_body_and_no_content_length(srv):
    status, pairs, rest = http(srv.port, "/no-content")
    assert status == "HTTP/1.1 204 No Content"
    assert not named(pairs, "content-length") and not named(pairs, "transfer-encoding")
    assert named(pairs, "x-a") == ["1"] and rest == b""


@pytest.mark.parametrize("path, line", [("/teapot", "HTTP/1.1 418 I'm a Teapot"),
                                        ("/unregistered", "HTTP/1.1 599 ")])
def test_the_status_line_has_the_registered_phrase_or_none(srv, path, line):
    status, _, _ = http(srv.port, path)
    assert status == line


def test_an_app_saying_connection_close_gets_the_connection_closed(srv):
    # Keep-alive asked for; the app's close wins.
    status, pairs, rest = exchange(srv.port, f"GET {PREFIX}/close HTTP/1.1\r\nHost: t\r\n\r\n"
                                             f"GET {PREFIX}/whole HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    assert status == "HTTP/1.1 200 OK" and "close" in ",".join(named(pairs, "connection"))
    assert rest == b"bye"          # the second request was not answered


def test_keep_alive_serves_the_next_request_on_the_same_connection(srv):
    with raw_connection(srv.port) as sock:
        sock.sendall(f"GET {PREFIX}/whole HTTP/1.1\r\nHost: t\r\n\r\n"
                     f"GET {PREFIX}/stream HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    first, sep, rest = raw.partition(b"\r\n\r\n")
    assert b"connection: close" not in first.lower()
    assert rest.startswith(b"hello" + b"HTTP/1.1 200 OK\r\n")
    assert rest.endswith(b"\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n")


# ---------------------------------------------------------------- what the app gets wrong


@pytest.mark.parametrize("path, error", [
    ("/body-first", "RuntimeError: http.response.body before http.response.start"),
    ("/start-twice", "RuntimeError: http.response.start sent twice"),
    ("/unknown", "RuntimeError: unexpected ASGI message 'http.response.trailers' for an HTTP request"),
    ("/websocket-message", "RuntimeError: unexpected ASGI message 'websocket.accept' for an HTTP request"),
    ("/too-long", "RuntimeError: response body longer than its Content-Length (3)"),
    ("/too-short", "RuntimeError: response body shorter than its Content-Length (10)"),
])
def test_a_message_out_of_order_is_refused_and_the_client_gets_a_500(srv, path, error):
    errors.pop(path, None)
    status, pairs, rest = http(srv.port, path)
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert rest == b"Internal Server Error"
    assert errors[path] == error


def test_a_header_with_a_line_break_is_refused_not_written(srv):
    errors.pop("/injected", None)
    status, pairs, rest = http(srv.port, "/injected")
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert not named(pairs, "x-injected") and not named(pairs, "x-a")
    assert errors["/injected"].startswith("ValueError: ")


@pytest.mark.parametrize("path", ["/nothing", "/no-body"])
def test_an_app_that_returns_without_a_whole_response_gets_a_500_for_it(srv, path):
    status, _, rest = http(srv.port, path)
    assert status == "HTTP/1.1 500 Internal Server Error" and rest == b"Internal Server Error"


def test_a_body_after_the_complete_response_is_refused_and_the_response_stands(srv):
    errors.pop("/after-complete", None)
    status, pairs, rest = http(srv.port, "/after-complete")
    assert status == "HTTP/1.1 200 OK" and rest == b"done"
    assert errors["/after-complete"] == \
        "RuntimeError: http.response.body after the response was complete"


# ---------------------------------------------------------------- scopes


def test_raw_headers_lower_cases_names_and_keeps_values_order_and_repeats():
    raw = [(b"Host", b"Example.COM"), (b"X-Forwarded-For", b"a"), (b"x-forwarded-for", b"B"),
           (b"Cookie", b"K=V")]
    assert raw_headers(raw) == [(b"host", b"Example.COM"), (b"x-forwarded-for", b"a"),
                                (b"x-forwarded-for", b"B"), (b"cookie", b"K=V")]
    assert raw_headers([]) == []


def test_the_http_scope(srv):
    with raw_connection(srv.port) as sock:
        sock.sendall(f"POST {PREFIX}/scope/a%20b?x=1&y=%20 HTTP/1.1\r\nHost: t\r\n"
                     f"X-Custom: Some Value\r\nx-custom: again\r\nContent-Length: 0\r\n"
                     f"Connection: close\r\n\r\n".encode())
        client = sock.getsockname()
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    scope = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1" and scope["scheme"] == "http"
    assert scope["method"] == "POST"
    assert scope["path"] == f"{PREFIX}/scope/a b"
    assert scope["raw_path"] == f"{PREFIX}/scope/a%20b"
    assert scope["root_path"] == PREFIX
    assert scope["query_string"] == "x=1&y=%20"
    assert scope["headers"] == [["host", "t"], ["x-custom", "Some Value"], ["x-custom", "again"],
                                ["content-length", "0"], ["connection", "close"]]
    assert scope["client"] == list(client)
    assert scope["server"] == ["127.0.0.1", srv.port]
    assert scope["state"] == {}


# ---------------------------------------------------------------- WebSocket


def test_the_websocket_scope_and_messages_both_ways(srv):
    errors.pop("/ws-echo", None)
    url = srv.url(f"{PREFIX}/ws-echo?room=1")
    with ws_connect(url, subprotocols=["v1", "v2"]) as ws:
        assert ws.subprotocol == "v2"
        assert ws.response.headers["x-session"] == "abc"
        ws.send("hi")
        assert recv(ws) == "text:hi"
        ws.send(b"\x00\xff")
        assert recv(ws) == b"bytes:\x00\xff"
        ws.send("scope")
        scope = json.loads(recv(ws))
        ws.close(4001, "leaving")
    assert scope["type"] == "websocket" and scope["scheme"] == "ws"
    assert scope["path"] == f"{PREFIX}/ws-echo" and scope["root_path"] == PREFIX
    assert scope["query_string"] == "room=1"
    assert "websocket.http.response" in scope["extensions"]
    assert ["sec-websocket-protocol", "v1, v2"] in scope["headers"]
    assert wait_for(lambda: errors.get("/ws-echo"), what="the disconnect") == \
        "disconnect 4001 leaving"


def test_a_denial_response_is_framed_by_us_and_closes_the_connection(srv):
    status, pairs, rest = exchange(srv.port, handshake_request(f"{PREFIX}/ws-deny", key=new_key()))
    assert status == "HTTP/1.1 401 Unauthorized"
    assert named(pairs, "www-authenticate") == ["Bearer"]
    assert named(pairs, "set-cookie") == ["a=1", "b=2"]
    assert named(pairs, "content-length") == ["12"]
    assert named(pairs, "connection") == ["close"]
    assert not named(pairs, "transfer-encoding")
    assert rest == b"who are you?"


def test_a_denial_with_a_line_break_in_a_header_is_a_500(srv):
    status, pairs, rest = exchange(srv.port, handshake_request(f"{PREFIX}/ws-deny-injected",
                                                               key=new_key()))
    assert status == "HTTP/1.1 500 Internal Server Error"
    assert not named(pairs, "x-injected") and not named(pairs, "www-authenticate")


@pytest.mark.parametrize("path", ["/ws-close-first", "/ws-return-first"])
def test_closing_or_returning_before_accepting_is_a_403(srv, path):
    with pytest.raises(InvalidStatus) as info:
        ws_connect(srv.url(PREFIX + path))
    assert info.value.response.status_code == 403


def test_a_send_before_accepting_is_refused_and_the_client_gets_a_500(srv):
    errors.pop("/ws-send-first", None)
    with pytest.raises(InvalidStatus) as info:
        ws_connect(srv.url(PREFIX + "/ws-send-first"))
    assert info.value.response.status_code == 500
    assert errors["/ws-send-first"] == \
        "RuntimeError: unexpected ASGI message 'websocket.send' before websocket.accept"


def test_an_accept_whose_subprotocol_is_not_a_str_is_refused_and_the_client_gets_a_500(srv):
    # ASGI's subprotocol is a str; bytes once left the client with no answer at all.
    errors.pop("/ws-bytes-subprotocol", None)
    with pytest.raises(InvalidStatus) as info:
        ws_connect(srv.url(PREFIX + "/ws-bytes-subprotocol"), subprotocols=["v2"])
    assert info.value.response.status_code == 500
    assert errors["/ws-bytes-subprotocol"] == \
        "TypeError: websocket.accept: subprotocol must be a str or None, got b'v2'"


def test_an_http_message_after_accepting_is_refused_and_the_socket_closes_1011(srv):
    errors.pop("/ws-http-after-accept", None)
    with ws_connect(srv.url(PREFIX + "/ws-http-after-accept")) as ws:
        assert closed_with(ws) == (1011, "internal error")
    assert errors["/ws-http-after-accept"] == \
        "RuntimeError: unexpected ASGI message 'http.response.start' after websocket.accept"
