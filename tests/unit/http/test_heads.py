"""Response heads (``fastws.http.heads``) and ``Response.encode``, which writes
its head through them: one status line table, one header check."""

from __future__ import annotations

import pytest

from fastws.http.context import Response
from fastws.http.heads import check_header, decode_pairs, response_head, status_line


def test_status_lines_have_the_registered_phrase_or_none():
    assert status_line(200) == "HTTP/1.1 200 OK"
    assert status_line(426) == "HTTP/1.1 426 Upgrade Required"
    # RFC 9112 §4: the reason may be empty, the space before it may not go.
    assert status_line(299) == "HTTP/1.1 299 "


def test_a_head_is_status_first_then_headers_then_ours_then_a_blank_line():
    head = response_head(201, [("X-A", "1"), ("X-B", "2")], ["Content-Length: 0"],
                         first=["Upgrade: websocket"])
    assert head == (b"HTTP/1.1 201 Created\r\nUpgrade: websocket\r\nX-A: 1\r\nX-B: 2\r\n"
                    b"Content-Length: 0\r\n\r\n")


@pytest.mark.parametrize("name, value", [
    ("X-A", "a\r\nX-Injected: 1"), ("X-A", "a\nb"), ("X-A", "a\x00"), ("X A", "v"),
    ("", "v"), ("X-A", "\u0100"), (3, "v"), ("X-A", 3), (None, "v"), ("X-A", b"v"),
])
def test_what_http_cannot_carry_is_a_value_error(name, value):
    with pytest.raises(ValueError):
        check_header(name, value)
    with pytest.raises(ValueError):
        response_head(200, [(name, value)])


@pytest.mark.parametrize("keep_alive", [True, False])
@pytest.mark.parametrize("headers", [{3: "v"}, {None: "v"}, {"Connection": 3}, {"X-A": None}])
def test_a_response_with_a_header_that_is_not_text_is_a_value_error(headers, keep_alive):
    # Without keep-alive, Response folds "close" into a Connection header: that
    # must not trip over a name or value of another type before the check does
    # (the HTTP layer answers a ValueError with a 500; anything else, with nothing).
    with pytest.raises(ValueError):
        Response(b"x", 200, headers).encode(keep_alive)


def test_close_is_folded_into_the_handlers_connection_header():
    data = Response(b"hi", 200, {"Connection": "upgrade"}).encode(keep_alive=False)
    assert data == (b"HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\nContent-Length: 2\r\n\r\nhi")
    data = Response(b"hi", 204).encode(keep_alive=False)
    assert data == b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n"
    data = Response(b"hi", 200).encode(keep_alive=True, head=True)
    assert data == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"


def test_byte_headers_become_latin_1_text_and_back():
    pairs = list(decode_pairs([(b"x-name", b"Zo\xeb"), (bytearray(b"a"), b"b")]))
    assert pairs == [("x-name", "Zoë"), ("a", "b")]
    assert response_head(200, pairs) == b"HTTP/1.1 200 OK\r\nx-name: Zo\xeb\r\na: b\r\n\r\n"
