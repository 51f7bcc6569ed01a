"""The default dumps and loads (``fastws._json``) against the json module.

Whatever orjson would do differently goes through the json module, so for every
value the stdlib serializes, ours gives the same JSON (the same value when read
back: a float may be spelled ``1e-7`` instead of ``1e-07``), for every value it
refuses ours refuses too (two documented exceptions), and for every text ours
parses to what the stdlib parses, or refuses what it refuses.
"""

from __future__ import annotations

import enum
import json
import math
import uuid
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from fastws import _json
from fastws.options import WebSocketOptions

STD_DUMPS = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class Str(str):
    pass


class Int(int):
    pass


class Float(float):
    pass


class Level(enum.IntEnum):
    LOW = 1


class Name(str, enum.Enum):
    ALICE = "alice"


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, NaN equal to NaN, int and float told apart.
    Iterative: texts nested thousands deep parse on 3.13, and a recursive
    comparison would hit the interpreter's limit first."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            continue
        if type(x) is not type(y):
            return False
        if isinstance(x, dict):
            if x.keys() != y.keys():
                return False
            pending.extend((x[k], y[k]) for k in x)
        elif isinstance(x, list):
            if len(x) != len(y):
                return False
            pending.extend(zip(x, y))
        elif x != y:
            return False
    return True


def outcome(fn: Any, *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except (TypeError, ValueError, RecursionError) as exc:
        return "error", type(exc)


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(),                                   # past 64 bits too
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),                                     # NaN and the infinities too
    st.text(), st.text(alphabet=st.characters(blacklist_categories=())),   # surrogates
    st.builds(Str, st.text()), st.builds(Int, st.integers()), st.builds(Float, st.floats()),
    st.sampled_from([Level.LOW, Name.ALICE]),
)
keys = st.one_of(st.text(), st.integers(), st.floats(), st.booleans(), st.none())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.tuples(inner, inner),
                            st.dictionaries(keys, inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=500, deadline=None)
@given(values)
def test_dumps_gives_the_stdlib_json_or_its_error(value):
    ours, theirs = outcome(_json.dumps, value), outcome(STD_DUMPS, value)
    assert ours[0] == theirs[0], (value, ours, theirs)
    if ours[0] == "ok":
        text = ours[1].decode() if isinstance(ours[1], bytes) else ours[1]
        assert same(json.loads(text), json.loads(theirs[1])), (value, text, theirs[1])


def test_nan_and_the_infinities_are_written_as_the_stdlib_writes_them():
    assert _json.dumps({"a": float("nan"), "b": [float("inf"), -float("inf")]}) == \
        '{"a":NaN,"b":[Infinity,-Infinity]}'


def test_what_orjson_would_refuse_gets_the_stdlib_answer():
    assert _json.dumps({1: 2, None: 3}) == '{"1":2,"null":3}'
    assert _json.dumps(2**70) == str(2**70)
    assert json.loads(_json.dumps(Level.LOW)) == 1 and json.loads(_json.dumps(Name.ALICE)) == "alice"
    assert _json.dumps("\ud800") == '"\ud800"'
    with pytest.raises(TypeError):
        _json.dumps({1, 2})


def test_the_two_documented_differences():
    """A plain Enum member and a UUID, which the json module refuses."""
    class Color(enum.Enum):
        RED = "red"
    u = uuid.UUID(int=7)
    if _json.FAST == "orjson":
        assert _json.dumps(Color.RED) == b'"red"'
        assert _json.dumps(u) == f'"{u}"'.encode()
    else:
        with pytest.raises(TypeError):
            _json.dumps(Color.RED)


json_texts = st.one_of(
    values.map(lambda v: outcome(STD_DUMPS, v)[1]).filter(lambda t: isinstance(t, str)),
    st.text(),
    st.sampled_from(["NaN", "-Infinity", "1e400", "-1e400", '"\\ud800"', '"\\udc00x"',
                     "18446744073709551616", "-9223372036854775809", "123456789012345678901",
                     "[" * 2000 + "]" * 2000, '{"a":1,"a":2}', " [1] ", "[1,]", "01", "-0",
                     "1.0e+2", '{"type":"message","content":"hi"}', "\ufeff[]", "",
                     '"\\u0000"', "[1] x", "1" * 30, "0." + "1" * 30]),
)


@settings(max_examples=500, deadline=None)
@given(json_texts)
def test_loads_gives_the_stdlib_value_or_its_error(text):
    ours, theirs = outcome(_json.loads, text), outcome(json.loads, text)
    assert ours[0] == theirs[0], (text[:80], ours, theirs)
    if ours[0] == "ok":
        assert same(ours[1], theirs[1]), (text[:80], ours, theirs)


@pytest.mark.parametrize("text", ["123456789012345678901234567890",
                                  '{"n":[1,18446744073709551616]}', '{"x":"12345678901234567890"}'])
def test_long_integers_are_read_as_ints(text):
    assert same(_json.loads(text), json.loads(text))


def test_bytes_in_are_read_by_the_stdlib_rules():
    assert _json.loads(b'{"a":1}') == {"a": 1}
    assert _json.loads(bytearray(b"[1]")) == [1]


def test_they_are_the_websocket_defaults():
    options = WebSocketOptions()
    assert options.dumps is _json.dumps and options.loads is _json.loads


def test_the_public_default_dumps_gives_text():
    from fastws.options import default_dumps
    assert default_dumps({"a": [1, "é"]}) == '{"a":[1,"é"]}'
    assert default_dumps({"a": None}) == '{"a":null}'
