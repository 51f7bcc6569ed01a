"""The opening handshake as values (``fastws.http.handshake``, RFC 6455 §4.2):
which requests are refused with which status, the accept value, the
subprotocol choice, the same-origin rule and the bytes of the 101.

Requests are ``fastws.Headers``, as the HTTP layer hands them over; the
expected accept values come from the RFC's own example and from a SHA-1 taken
here, not from the module. Over a socket the same refusals are checked in
``tests/integration/test_malformed.py``.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from fastws import Headers
from fastws.errors import HandshakeError
from fastws.http import handshake
from fastws.http.handshake import (
    accept_key,
    is_upgrade_request,
    response_101,
    same_origin,
    select_subprotocol,
    validate_upgrade,
)

#: RFC 6455 §1.3: the sample key and the accept value the RFC gives for it.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def request(**overrides: str | list[str] | None) -> Headers:
    """A good upgrade request's headers; ``name=None`` leaves one out, a list
    repeats it (underscores in names become dashes)."""
    fields: dict[str, str | list[str] | None] = {
        "Host": "example.com", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY, "Sec-WebSocket-Version": "13",
    }
    for name, value in overrides.items():
        fields[name.replace("_", "-")] = value
    headers = Headers()
    for name, value in fields.items():
        for v in [] if value is None else [value] if isinstance(value, str) else value:
            headers.add(name, v)
    return headers


def refusal(method: str = "GET", version: str = "1.1", **overrides) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        validate_upgrade(method, version, request(**overrides))
    return info.value


def key_of(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def expected_accept(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + GUID).digest()).decode("ascii")


# ---------------------------------------------------------------- accepted requests


def test_the_rfc_example_key_gets_the_rfc_accept_value():
    assert accept_key(RFC_KEY) == RFC_ACCEPT
    assert validate_upgrade("GET", "1.1", request()) == RFC_ACCEPT


def test_any_16_byte_key_gets_its_sha1_accept_value():
    key = key_of(bytes(range(100, 116)))
    assert validate_upgrade("GET", "1.1", request(Sec_WebSocket_Key=key)) == expected_accept(key)


@pytest.mark.parametrize("upgrade", ["websocket", "WebSocket", "WEBSOCKET", "h2c, websocket",
                                     " websocket ", "websocket, h2c"])
def test_the_upgrade_token_is_case_insensitive_and_may_be_one_of_several(upgrade):
    assert validate_upgrade("GET", "1.1", request(Upgrade=upgrade)) == RFC_ACCEPT


@pytest.mark.parametrize("connection", ["Upgrade", "upgrade", "UPGRADE", "keep-alive, Upgrade",
                                        "Upgrade, keep-alive", "keep-alive,upgrade",
                                        ["keep-alive", "Upgrade"]])
def test_the_connection_upgrade_token_is_found_among_others(connection):
    # Firefox sends "keep-alive, Upgrade"; a proxy may split it over two lines.
    assert validate_upgrade("GET", "1.1", request(Connection=connection)) == RFC_ACCEPT


def test_a_later_http_version_is_accepted():
    assert validate_upgrade("GET", "1.2", request()) == RFC_ACCEPT


def test_spaces_around_the_key_and_the_version_are_not_part_of_them():
    headers = request(Sec_WebSocket_Key=f"  {RFC_KEY} ", Sec_WebSocket_Version=" 13 ")
    assert validate_upgrade("GET", "1.1", headers) == RFC_ACCEPT


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "get"])
def test_only_get_is_upgraded(method):
    err = refusal(method=method)
    assert (err.status, err.reason) == (400, "WebSocket upgrade requires GET")
    assert err.headers == []


@pytest.mark.parametrize("version", ["1.0", "0.9"])
def test_http_before_1_1_is_refused(version):
    err = refusal(version=version)
    assert (err.status, err.reason) == (400, "WebSocket upgrade requires HTTP/1.1 or later")


@pytest.mark.parametrize("version", ["", "1", "one.one", "1.1.1"])
def test_an_unreadable_http_version_is_refused(version):
    err = refusal(version=version)
    assert (err.status, err.reason) == (400, "bad HTTP version")


@pytest.mark.parametrize("host", [None, ""])
def test_a_request_without_host_is_refused(host):
    err = refusal(Host=host)
    assert (err.status, err.reason) == (400, "missing Host header")


@pytest.mark.parametrize("upgrade", [None, "", "h2c", "websockets", "web socket", "websocket2"])
def test_an_upgrade_to_anything_but_websocket_is_refused(upgrade):
    err = refusal(Upgrade=upgrade)
    assert (err.status, err.reason) == (400, "missing or bad Upgrade header")


@pytest.mark.parametrize("connection", [None, "", "keep-alive", "close", "upgrades", "Upgrade-Insecure"])
def test_a_connection_header_without_the_upgrade_token_is_refused(connection):
    err = refusal(Connection=connection)
    assert (err.status, err.reason) == (400, "Connection header lacks the upgrade token")


@pytest.mark.parametrize("keys", [None, [RFC_KEY, RFC_KEY], [RFC_KEY, key_of(b"x" * 16)]])
def test_the_key_must_be_sent_exactly_once(keys):
    err = refusal(Sec_WebSocket_Key=keys)
    assert (err.status, err.reason) == (400, "missing or repeated Sec-WebSocket-Key")


@pytest.mark.parametrize("key", [
    "",                                   # nothing
    key_of(b"x" * 15),                    # 15 bytes
    key_of(b"x" * 17),                    # 17 bytes
    key_of(b"x" * 32),                    # 32 bytes
    "dGhlIHNhbXBsZSBub25jZQ",             # the RFC key without its padding
    "dGhlIHNhbXBs ZSBub25jZQ==",          # a space inside
    "dGhlIHNhbXBsZSBub25jZQ==AAAA",       # data after the padding
    "dGhlIHNhbXBsZSBub25jZQ!=",           # not base64
    "0123456789abcdef",                   # 16 characters are not 16 bytes
    "dGhlIHNhbXBsZSBub25jZé==",           # not ASCII
])
def test_the_key_must_be_16_bytes_in_strict_base64(key):
    err = refusal(Sec_WebSocket_Key=key)
    assert (err.status, err.reason) == (400, "Sec-WebSocket-Key is not 16 bytes in base64")


@pytest.mark.parametrize("versions", [None, "8", "12", "14", "13, 8", "", ["13", "13"], ["8", "13"]])
def test_a_version_other_than_13_gets_426_naming_13(versions):
    # RFC 6455 §4.2.2: the server answers with the version(s) it speaks.
    err = refusal(Sec_WebSocket_Version=versions)
    assert (err.status, err.reason) == (426, "unsupported WebSocket version")
    assert err.headers == [("Sec-WebSocket-Version", "13")]


def test_a_bad_method_is_told_before_anything_else_about_the_request():
    err = refusal(method="POST", version="1.0", Host=None, Sec_WebSocket_Version="8")
    assert err.status == 400 and "GET" in err.reason


# ---------------------------------------------------------------- is_upgrade_request


@pytest.mark.parametrize("upgrade, asked", [
    ("websocket", True), ("WebSocket", True), ("h2c, websocket", True),
    (None, False), ("", False), ("h2c", False), ("websocketx", False),
])
def test_is_upgrade_request_reads_the_upgrade_tokens(upgrade, asked):
    assert is_upgrade_request(request(Upgrade=upgrade)) is asked


def test_is_upgrade_request_looks_at_nothing_else():
    # A request that asks for a WebSocket but would be refused still asks for one.
    assert is_upgrade_request(request(Connection=None, Sec_WebSocket_Key=None)) is True


# ---------------------------------------------------------------- subprotocols


@pytest.mark.parametrize("offered, supported, chosen", [
    ("chat, superchat", ["superchat", "chat"], "superchat"),     # the server's preference wins
    ("superchat,chat", ["chat", "superchat"], "chat"),
    ("  chat  ,  v2 ", ["v2"], "v2"),
    ("chat", ["v2", "v3"], None),
    (None, ["chat"], None),
    ("", ["chat"], None),
    ("chat", [], None),
    ("chat.v2", ["chat"], None),                                  # whole tokens only
])
def test_select_subprotocol(offered, supported, chosen):
    assert select_subprotocol(offered, supported) == chosen


# ---------------------------------------------------------------- same origin


@pytest.mark.parametrize("origin, host, same", [
    ("http://example.com", "example.com", True),
    ("https://example.com", "example.com", True),
    ("http://example.com", "example.com:80", True),             # the default port written out
    ("https://example.com", "example.com:443", True),
    ("http://example.com:8080", "example.com:8080", True),
    ("https://example.com:8443", "example.com", True),          # a Host without a port: any port
    ("http://EXAMPLE.com", "example.COM", True),                 # host names are case-insensitive
    ("http://[::1]:8000", "[::1]:8000", True),
    ("  http://example.com ", "example.com", True),
    ("http://example.com", "example.com:8080", False),           # another port
    ("https://example.com", "example.com:80", False),
    ("http://example.com:8080", "example.com:8081", False),
    ("http://evil.example", "example.com", False),               # another host
    ("http://example.com.evil.example", "example.com", False),
    ("http://sub.example.com", "example.com", False),
    ("http://example.com", "sub.example.com", False),
    ("null", "example.com", False),                              # a sandboxed or file page
    ("ftp://example.com", "example.com", False),                 # not a web origin
    ("file:///etc/passwd", "example.com", False),
    ("http://", "example.com", False),
    ("http://example.com:99999", "example.com", False),          # an unreadable port
    ("http://example.com", "example.com:port", False),
    ("http://example.com", None, False),                         # no Host to compare with
    ("http://example.com", "", False),
])
def test_same_origin(origin, host, same):
    assert same_origin(origin, host) is same


# ---------------------------------------------------------------- the 101


def parse_head(data: bytes) -> tuple[str, list[tuple[str, str]]]:
    """The status line and header pairs of a response head, checking that it
    is one: CRLF line ends, a blank line at the end and nothing after it."""
    assert data.endswith(b"\r\n\r\n"), data
    text = data[:-4].decode("latin-1")
    assert "\n" not in text.replace("\r\n", "") and "\r" not in text.replace("\r\n", ""), text
    status, *lines = text.split("\r\n")
    pairs = []
    for line in lines:
        name, sep, value = line.partition(": ")
        assert sep and name and ":" not in name, line
        pairs.append((name, value))
    return status, pairs


def values(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in pairs if k.lower() == name.lower()]


def test_the_101_carries_the_handshake_headers():
    status, pairs = parse_head(response_101(RFC_ACCEPT))
    assert status == "HTTP/1.1 101 Switching Protocols"
    assert {k.lower(): v for k, v in pairs} == {
        "upgrade": "websocket", "connection": "Upgrade", "sec-websocket-accept": RFC_ACCEPT}
    assert len(pairs) == 3


def test_the_101_names_the_subprotocol_and_extensions_when_there_are_some():
    _, pairs = parse_head(response_101(RFC_ACCEPT, "chat", "permessage-deflate; server_no_context_takeover"))
    assert values(pairs, "Sec-WebSocket-Protocol") == ["chat"]
    assert values(pairs, "Sec-WebSocket-Extensions") == ["permessage-deflate; server_no_context_takeover"]
    _, pairs = parse_head(response_101(RFC_ACCEPT, None, ""))
    assert not values(pairs, "Sec-WebSocket-Protocol")
    assert not values(pairs, "Sec-WebSocket-Extensions")


def test_the_101_carries_added_headers_after_its_own_repeats_kept():
    head = response_101(RFC_ACCEPT, headers=[("Set-Cookie", "a=1"), ("X-Trace", "t1"),
                                             ("Set-Cookie", "b=2")])
    _, pairs = parse_head(head)
    assert values(pairs, "Set-Cookie") == ["a=1", "b=2"]
    assert values(pairs, "X-Trace") == ["t1"]
    names = [k.lower() for k, _ in pairs]
    assert names.index("sec-websocket-accept") < names.index("set-cookie")
    _, pairs = parse_head(response_101(RFC_ACCEPT, headers={"X-Trace": "t2"}))
    assert values(pairs, "X-Trace") == ["t2"]


@pytest.mark.parametrize("name", ["Upgrade", "connection", "Sec-WebSocket-Accept",
                                  "SEC-WEBSOCKET-PROTOCOL", "Sec-WebSocket-Extensions",
                                  "Content-Length", "Transfer-Encoding"])
def test_an_added_header_cannot_replace_or_double_the_handshake_s_own(name):
    head = response_101(RFC_ACCEPT, "chat", "permessage-deflate", headers=[(name, "forged")])
    _, pairs = parse_head(head)
    assert "forged" not in [v for _, v in pairs]
    assert len(values(pairs, name)) <= 1


@pytest.mark.parametrize("name, value", [
    ("Set-Cookie", "a=1\r\nX-Injected: yes"),
    ("Set-Cookie", "a=1\nX-Injected: yes"),
    ("Set-Cookie", "a=1\rX-Injected: yes"),
    ("Set-Cookie", "a=1\r\n\r\nHTTP/1.1 200 OK"),
    ("Set-Cookie", "a\x00b"),
    ("X-Price", "5 €"),                                   # not Latin-1: cannot be written
    ("X-Injected: yes\r\nSet-Cookie", "a=1"),
    ("Bad Name", "v"),
    ("Bad:Name", "v"),
    ("", "v"),
    ("Upgrade", "websocket\r\nX-Injected: yes"),          # one of ours: refused all the same
])
def test_a_header_http_cannot_carry_is_refused_not_written(name, value):
    with pytest.raises(ValueError):
        response_101(RFC_ACCEPT, headers=[("X-Fine", "ok"), (name, value)])
    with pytest.raises(ValueError):
        response_101(RFC_ACCEPT, headers={name: value})


# Compiled by Cython, a function annotated ``value: str`` would refuse any other
# type with a TypeError before its body runs, which the HTTP layer (catching
# ValueError) would not answer: check_header takes ``object``.
@pytest.mark.parametrize("value", [3, b"v", None])
def test_a_header_value_that_is_not_a_str_is_refused_with_value_error(value):
    with pytest.raises(ValueError):
        response_101(RFC_ACCEPT, headers=[("X-Value", value)])


def test_latin_1_values_are_written_as_latin_1():
    _, pairs = parse_head(response_101(RFC_ACCEPT, headers=[("X-Name", "Zoë")]))
    assert values(pairs, "X-Name") == ["Zoë"]
