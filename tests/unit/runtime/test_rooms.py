"""The room registry, with sans-I/O connections as members: membership,
encode-once delivery, sender exclusion, and the relay's hooks."""

from __future__ import annotations

import json

import pytest

from fastws.runtime._rooms import RoomRegistry
from fastws.runtime._wire import KIND_JSON
from fastws.ws._connection import Connection
from fastws.ws._frame import OP_BINARY, OP_TEXT, encode_frame
from fastws.options import WebSocketOptions, default_dumps


def member(**options) -> Connection:
    options.setdefault("ping_interval", None)
    return Connection(WebSocketOptions(**options))


class Relay:
    """Records what the registry tells it."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def publish(self, room, opcode, payload):
        self.calls.append(("publish", room, opcode, payload))

    def room_opened(self, room):
        self.calls.append(("opened", room))

    def room_closed(self, room):
        self.calls.append(("closed", room))

    def room_sized(self, room, n):
        self.calls.append(("sized", room, n))


def test_join_and_leave_are_idempotent_and_empty_rooms_go():
    rooms = RoomRegistry()
    a, b = member(), member()
    assert rooms.join("r", a) is True
    assert rooms.join("r", a) is False
    assert rooms.join("r", b) is True
    assert rooms.size("r") == 2 and rooms.names() == ["r"]
    assert rooms.members("r") == [a, b]
    assert rooms.leave("r", a) is True
    assert rooms.leave("r", a) is False
    assert rooms.leave("r", b) is True
    assert rooms.size("r") == 0 and rooms.names() == []
    assert rooms.leave("nowhere", a) is False


def test_broadcast_serializes_once_and_reaches_all_but_the_sender():
    calls = []

    def dumps(obj):
        calls.append(obj)
        return default_dumps(obj)

    rooms = RoomRegistry(dumps)
    sender, *others = [member() for _ in range(50)]
    for m in (sender, *others):
        rooms.join("lobby", m)
    assert rooms.broadcast("lobby", {"n": 1}, sender) == 49
    assert calls == [{"n": 1}]
    expected = encode_frame(OP_TEXT, json.dumps({"n": 1}, separators=(",", ":")))
    assert all(m.data_to_send() == expected for m in others)
    assert sender.data_to_send() == b""


def test_broadcast_to_an_empty_room_does_not_serialize():
    rooms = RoomRegistry(lambda obj: pytest.fail("serialized for nobody"))
    assert rooms.broadcast("empty", {"x": 1}) == 0


def test_deliver_counts_only_members_that_accept():
    rooms = RoomRegistry()
    ok, full = member(), member(max_backpressure=10, backpressure="skip")
    rooms.join("r", ok)
    rooms.join("r", full)
    full.send_frame(encode_frame(OP_BINARY, b"x" * 20))       # now over its limit
    assert rooms.deliver("r", OP_BINARY, b"payload") == 1
    assert ok.data_to_send() == encode_frame(OP_BINARY, b"payload")


def test_send_rule_str_bytes_and_other():
    rooms = RoomRegistry()
    m = member()
    rooms.join("r", m)
    rooms.broadcast("r", "text")
    rooms.broadcast("r", b"\x00")
    rooms.broadcast("r", bytearray(b"\x01"))
    rooms.broadcast("r", [1, 2])
    assert m.data_to_send() == (encode_frame(OP_TEXT, "text") + encode_frame(OP_BINARY, b"\x00")
                                + encode_frame(OP_BINARY, b"\x01") + encode_frame(OP_TEXT, "[1,2]"))


def test_relay_hears_rooms_open_and_close_at_first_join_and_last_leave():
    relay = Relay()
    rooms = RoomRegistry(relay=relay)
    a, b = member(), member()
    rooms.join("r", a)
    rooms.join("r", b)
    rooms.leave("r", a)
    rooms.leave("r", b)
    rooms.join("r", a)
    assert relay.calls == [("opened", "r"), ("sized", "r", 1), ("sized", "r", 2), ("sized", "r", 1),
                           ("sized", "r", 0), ("closed", "r"), ("opened", "r"), ("sized", "r", 1)]


def test_with_a_relay_room_names_are_str():
    rooms = RoomRegistry(relay=Relay())
    with pytest.raises(TypeError, match="must be str"):
        rooms.join(b"r", member())
    assert rooms.names() == []


def test_with_a_relay_a_broadcast_to_a_room_that_is_not_str_is_refused_before_the_relay():
    # The registry holds the rule (str names with a relay) for publishes too:
    # the relay is never asked to publish to such a room.
    relay = Relay()
    rooms = RoomRegistry(relay=relay)
    with pytest.raises(TypeError, match="must be str"):
        rooms.broadcast(b"r", "x")
    with pytest.raises(TypeError, match="must be str"):
        rooms.publish(1, OP_TEXT, "x")
    assert relay.calls == []


def test_a_message_the_relay_refuses_reaches_nobody_here_either():
    class Refusing(Relay):
        def publish(self, room, opcode, payload):
            raise ValueError("too large to cross")

    rooms = RoomRegistry(relay=Refusing())
    a = member()
    rooms.join("r", a)
    with pytest.raises(ValueError, match="too large"):
        rooms.broadcast("r", "x")
    assert a.data_to_send() == b""


def test_publish_is_deliver_plus_the_relay_and_deliver_is_local():
    relay = Relay()
    rooms = RoomRegistry(relay=relay)
    a = member()
    rooms.join("r", a)
    relay.calls.clear()
    assert rooms.deliver("r", OP_TEXT, "local only") == 1
    assert relay.calls == []
    assert rooms.publish("r", OP_TEXT, "everywhere", a) == 0          # a is the sender
    assert relay.calls == [("publish", "r", OP_TEXT, "everywhere")]
    # With a relay, a room with no member here is still published (others may have
    # members), as JSON text (KIND_JSON: fastws.v1 members elsewhere get the type back).
    assert rooms.broadcast("elsewhere", {"k": "v"}) == 0
    # (UTF-8 bytes from the default dumps where orjson serves it, else a str.)
    *call, text = relay.calls[-1]
    assert call == ["publish", "elsewhere", KIND_JSON]
    assert (text.decode() if isinstance(text, bytes) else text) == '{"k":"v"}'


def test_a_member_leaving_during_delivery_is_harmless():
    rooms = RoomRegistry()
    members = [member(max_backpressure=1, backpressure="close") for _ in range(3)]
    for m in members:
        rooms.join("r", m)
        m.send_frame(encode_frame(OP_BINARY, b"xx"))          # each over its limit next time
    # Each member fails as a slow consumer while the loop runs over the room.
    assert rooms.deliver("r", OP_BINARY, b"more") == 0
    assert all(m.transport_action == "linger" for m in members)


def test_only_connections_can_be_members():
    # deliver reads each member's fields in C: anything else is refused at join.
    rooms = RoomRegistry()
    with pytest.raises(TypeError):
        rooms.join("r", object())
    assert rooms.names() == []


def test_a_relay_that_fails_on_a_hook_leaves_the_membership_consistent(caplog):
    class Failing(Relay):
        def room_opened(self, room):
            raise ConnectionError("broker gone")

    rooms = RoomRegistry(relay=Failing())
    a = member()
    assert rooms.join("r", a) is True
    assert rooms.size("r") == 1 and rooms.deliver("r", OP_TEXT, "here") == 1
    assert "room_opened('r') failed" in caplog.text
    assert rooms.leave("r", a) is True and rooms.names() == []
