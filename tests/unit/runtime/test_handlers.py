"""Handler tables and the JSON event rule, with values alone."""

from __future__ import annotations

import json

import pytest

from fastws.runtime._dispatch import json_event
from fastws.runtime.handlers import RESERVED_EVENTS, add_handler, arity, remove_handler

HANDLERS = {"join-room": [], "message": [], "move": [], "ping-me": [], "close": []}


@pytest.mark.parametrize("text, expected", [
    ('{"type": "join-room", "room": "general"}', ("join-room", "general")),
    ('{"type": "message", "content": "Hello!"}', ("message", "Hello!")),
    ('{"type": "ping-me"}', ("ping-me", None)),
    ('{"type": "move", "x": 1, "y": 2}', ("move", {"x": 1, "y": 2})),
])
def test_payload_is_one_value_none_or_the_rest(text, expected):
    assert json_event(text, HANDLERS, json.loads) == expected


@pytest.mark.parametrize("text", [
    '{"type": "nobody-listens", "x": 1}',       # no handler for that type
    '{"type": "close", "code": 1000}',          # reserved: clients cannot raise it
    '{"type": 5}',                              # type is not a string
    '{"kind": "message"}',                      # no type at all
    '["type", "message"]',                      # not an object
    '{"type": "message", ',                     # not JSON
    'plain text with "type" in it',
    '',
])
def test_anything_else_is_a_plain_message(text):
    assert json_event(text, HANDLERS, json.loads) is None


def test_reserved_names_are_the_servers_own():
    assert RESERVED_EVENTS == {"open", "close", "error", "ping", "pong", "drain", "recovered"}
    for name in RESERVED_EVENTS:
        assert json_event(json.dumps({"type": name}), {name: []}, json.loads) is None


def test_without_custom_events_only_message_texts_are_parsed():
    def loads(text):
        seen.append(text)
        return json.loads(text)

    seen: list[str] = []
    assert json_event('{"type": "join-room", "room": "x"}', HANDLERS, loads, False) is None
    assert seen == []                            # not even parsed
    assert json_event('{"type": "message", "content": "hi"}', HANDLERS, loads, False) == ("message", "hi")


def test_the_parser_is_the_one_given():
    assert json_event('{"type": "move", "x": 1}', HANDLERS, lambda t: {"type": "move", "x": 2}) == ("move", 2)


def test_arity_counts_positional_parameters():
    assert arity(lambda: None) == 0
    assert arity(lambda a, b=1: None) == 2
    assert arity(lambda a, *, k: None) == 1
    assert arity(lambda *args: None) > 100
    assert arity(print) > 100                    # no signature: pass everything


def test_handlers_keep_registration_order_and_remove_one_at_a_time():
    table: dict = {}

    def one(x):
        pass

    def two():
        pass

    add_handler(table, "message", one)
    add_handler(table, "message", two)
    add_handler(table, "message", one)
    assert table["message"] == [(one, 1), (two, 0), (one, 1)]
    assert remove_handler(table, "message", one) is True
    assert table["message"] == [(two, 0), (one, 1)]
    assert remove_handler(table, "message", two) and remove_handler(table, "message", one)
    assert "message" not in table
    assert remove_handler(table, "message", one) is False


def test_bad_registrations_are_refused():
    with pytest.raises(TypeError, match="non-empty str"):
        add_handler({}, "", print)
    with pytest.raises(TypeError, match="must be callable"):
        add_handler({}, "message", "not callable")


def test_json_event_refuses_none():
    with pytest.raises(TypeError):
        json_event(None, HANDLERS, json.loads)


def test_json_nested_too_deep_for_the_decoder_is_no_event():
    deep = '{"type": "join-room", "room": ' + "[" * 200_000 + "]" * 200_000 + "}"
    assert json_event(deep, HANDLERS, json.loads) is None
