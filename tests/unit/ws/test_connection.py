"""The connection rules, sans-I/O: bytes and calls in, events and bytes out.

No socket, no event loop: each test feeds ``Connection.receive_data`` the bytes a
client would send, reads what the rules answer with ``data_to_send()``, what
they reported with ``events_received()`` and what the transport must do with
``transport_action``, and moves time with an injected clock and ``tick(now)``.
"""

from __future__ import annotations

import pytest

from fastws.ws._connection import Connection
from fastws._constants import CloseCode, ReadyState
from fastws.ws._frame import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, ProtocolError, encode_close, encode_frame
from fastws.options import WebSocketOptions

KEY = b"\x01\x02\x03\x04"


def client_frame(opcode: int, payload: bytes | str = b"", fin: bool = True) -> bytes:
    """A frame as a client sends it: masked."""
    return encode_frame(opcode, payload, fin=fin, mask_key=KEY)


def client_close(code: int, reason: str = "") -> bytes:
    payload = code.to_bytes(2, "big") + reason.encode()
    return client_frame(OP_CLOSE, payload)


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(clock: Clock | None = None, **options) -> Connection:
    options.setdefault("ping_interval", None)
    return Connection(WebSocketOptions(**options), clock=clock or Clock())


# ---------------------------------------------------------------- messages and pongs

def test_messages_are_events():
    conn = make()
    conn.receive_data(client_frame(OP_TEXT, "hello") + client_frame(OP_BINARY, b"\x00\xff"))
    assert conn.events_received() == [("message", "hello"), ("message", b"\x00\xff")]
    assert conn.data_to_send() == b""
    assert conn.transport_action is None


def test_ping_is_answered_with_a_pong_of_the_same_payload():
    conn = make()
    conn.receive_data(client_frame(OP_PING, b"are you there"))
    assert conn.data_to_send() == encode_frame(OP_PONG, b"are you there")
    assert conn.events_received() == [("ping", b"are you there")]


def test_pong_is_reported_and_not_answered():
    conn = make()
    conn.receive_data(client_frame(OP_PONG, b"x"))
    assert conn.events_received() == [("pong", b"x")]
    assert conn.data_to_send() == b""


def test_split_input_gives_the_same_events():
    whole = client_frame(OP_TEXT, "split me") + client_frame(OP_PING, b"p")
    conn = make()
    for i in range(len(whole)):
        conn.receive_data(whole[i:i + 1])
    assert conn.events_received() == [("message", "split me"), ("ping", b"p")]


# ---------------------------------------------------------------- close handshake

def test_close_started_by_the_client_is_echoed_then_tcp_closes():
    conn = make()
    conn.receive_data(client_close(1000, "bye"))
    assert conn.data_to_send() == encode_close(1000)
    assert conn.transport_action == "close"
    assert conn.events_received() == [("close", 1000, "bye")]
    assert conn.state == ReadyState.CLOSED
    assert (conn.close_code, conn.close_reason) == (1000, "bye")


def test_empty_close_gets_an_empty_close_and_1005():
    conn = make()
    conn.receive_data(client_frame(OP_CLOSE, b""))
    assert conn.data_to_send() == encode_frame(OP_CLOSE, b"")
    assert conn.events_received() == [("close", CloseCode.CLOSE_NO_STATUS, "")]


def test_input_after_the_close_frame_is_not_acted_on():
    conn = make()
    conn.receive_data(client_close(1000) + client_frame(OP_TEXT, "late") + client_frame(OP_PING))
    conn.receive_data(client_frame(OP_TEXT, "later"))
    assert conn.events_received() == [("close", 1000, "")]
    assert conn.data_to_send() == encode_close(1000)        # no pong after it


def test_close_started_by_the_server_waits_for_the_answer():
    clock = Clock()
    conn = make(clock, close_timeout=5)
    conn.close(1001, "going away")
    assert conn.state == ReadyState.CLOSING
    assert conn.data_to_send() == encode_close(1001, "going away")
    assert conn.transport_action is None            # the client answers first
    # Messages in flight before the client saw our close are still delivered.
    conn.receive_data(client_frame(OP_TEXT, "in flight"))
    conn.receive_data(client_close(1001))
    assert conn.transport_action == "close"
    assert conn.events_received() == [("message", "in flight"), ("close", 1001, "going away")]
    assert conn.data_to_send() == b""               # nothing echoed: it answered ours


def test_no_pong_while_closing():
    conn = make()
    conn.close()
    conn.data_to_send()
    conn.receive_data(client_frame(OP_PING, b"p"))
    assert conn.data_to_send() == b""
    assert conn.events_received() == [("ping", b"p")]


def test_close_unanswered_is_cut_after_close_timeout():
    clock = Clock()
    conn = make(clock, close_timeout=5)
    conn.close(1000)
    conn.tick(clock.now + 4.99)
    assert conn.transport_action is None
    conn.tick(clock.now + 5)
    assert conn.transport_action == "abort"
    conn.transport_lost()
    assert conn.events_received() == [("close", 1000, "")]


def test_close_twice_sends_one_close_frame():
    conn = make()
    conn.close(1000)
    conn.close(4000, "again")
    assert conn.data_to_send() == encode_close(1000)


def test_close_validates_code_and_reason():
    conn = make()
    with pytest.raises(ValueError):
        conn.close(1005)
    with pytest.raises(ValueError):
        conn.close(1000, "x" * 124)
    assert conn.state == ReadyState.OPEN


# ---------------------------------------------------------------- failures

@pytest.mark.parametrize("data, code", [
    (encode_frame(OP_TEXT, "unmasked"), 1002),
    (client_frame(OP_TEXT, b"\xff\xfe"), 1007),
    (b"\x83\x80" + KEY, 1002),              # reserved opcode 3
])
def test_failure_sends_its_close_code_then_lingers(data, code):
    conn = make()
    conn.receive_data(data)
    events = conn.events_received()
    assert [e[0] for e in events] == ["error", "close"]
    assert isinstance(events[0][1], ProtocolError) and events[0][1].code == code
    assert events[1][1] == code
    assert conn.data_to_send()[:4] == encode_close(code, events[0][1].reason)[:4]
    # Half-close and read on: closing now would reset a client still sending.
    assert conn.transport_action == "linger"
    conn.receive_data(client_frame(OP_TEXT, "after"))
    assert conn.events_received() == []


def test_message_over_the_limit_is_1009_before_its_payload():
    conn = make(max_message_size=10)
    header_only = client_frame(OP_BINARY, b"x" * 11)[:6]
    conn.receive_data(header_only)
    events = conn.events_received()
    assert events[-1] == ("close", 1009, "message over 10 bytes")


def test_fail_by_the_application():
    conn = make()
    conn.fail(1011, "internal error")
    assert conn.data_to_send() == encode_close(1011, "internal error")
    assert conn.transport_action == "linger"


def test_lost_tcp_reports_1006_once():
    conn = make()
    conn.transport_lost()
    conn.transport_lost()
    assert conn.events_received() == [("close", 1006, "")]
    assert conn.state == ReadyState.CLOSED
    assert conn.send_frame(encode_frame(OP_TEXT, "x")) is False


# ---------------------------------------------------------------- heartbeat

def test_quiet_client_is_pinged_then_dropped_with_1011():
    clock = Clock()
    start = clock.now
    conn = make(clock, ping_interval=5, idle_timeout=3)
    conn.tick(start + 4.9)
    assert conn.data_to_send() == b""
    conn.tick(start + 5)
    assert conn.data_to_send() == encode_frame(OP_PING, b"")
    conn.tick(start + 7.9)
    assert conn.transport_action is None
    conn.tick(start + 8)
    assert conn.data_to_send() == encode_close(1011, "keepalive timeout")
    assert conn.transport_action == "abort"
    conn.transport_lost()
    assert conn.events_received() == [("close", 1011, "keepalive timeout")]


def test_answered_ping_keeps_the_connection():
    clock = Clock()
    start = clock.now
    conn = make(clock, ping_interval=5, idle_timeout=3)
    conn.tick(start + 5)
    conn.data_to_send()
    clock.now = start + 6
    conn.receive_data(client_frame(OP_PONG))
    conn.tick(start + 9)
    assert conn.transport_action is None
    assert conn.data_to_send() == b""
    conn.tick(start + 11)                        # 5 s after the pong: the next ping
    assert conn.data_to_send() == encode_frame(OP_PING, b"")


def test_any_frame_counts_as_alive():
    clock = Clock()
    start = clock.now
    conn = make(clock, ping_interval=5, idle_timeout=3)
    clock.now = start + 4
    conn.receive_data(client_frame(OP_TEXT, "still here"))
    conn.tick(start + 8)
    assert conn.data_to_send() == b""


# ---------------------------------------------------------------- backpressure and rate limit

def frame_of(n: int) -> bytes:
    return encode_frame(OP_BINARY, b"x" * (n - 2))


def test_skip_policy_refuses_and_counts_past_the_limit():
    conn = make(max_backpressure=100, backpressure="skip")
    assert conn.send_frame(frame_of(60)) is True
    assert conn.send_frame(frame_of(60)) is True       # 60 queued: still under
    assert conn.send_frame(frame_of(60)) is False      # 120 queued: over
    assert len(conn.data_to_send()) == 120
    assert conn.send_frame(frame_of(60)) is True       # written out: room again
    assert conn.transport_action is None


def test_close_policy_fails_with_1008_past_the_limit():
    conn = make(max_backpressure=100, backpressure="close")
    conn.send_frame(frame_of(60))
    conn.send_frame(frame_of(60))
    assert conn.send_frame(frame_of(60)) is False
    assert conn.data_to_send().endswith(encode_close(1008, "slow consumer"))
    assert conn.transport_action == "linger"


def test_rate_limit_drop_policy():
    clock = Clock()
    conn = make(clock, rate_limit=(1, 2), rate_limit_policy="drop")
    conn.receive_data(client_frame(OP_TEXT, "a") * 3)
    assert conn.events_received() == [("message", "a"), ("message", "a")]
    clock.now += 1.0
    conn.receive_data(client_frame(OP_TEXT, "b"))
    assert conn.events_received() == [("message", "b")]
    assert conn.transport_action is None


def test_rate_limit_close_policy():
    conn = make(Clock(), rate_limit=(1, 1))
    conn.receive_data(client_frame(OP_TEXT, "a") * 3)
    assert conn.events_received() == [("message", "a")]
    assert conn.data_to_send() == encode_close(1008, "rate limit exceeded")
    assert conn.transport_action == "linger"
    # The close event comes when TCP is gone, with the code we sent.
    conn.transport_lost()
    assert conn.events_received() == [("close", 1008, "rate limit exceeded")]


# ---------------------------------------------------------------- lingering close

def test_the_rest_of_a_message_too_big_is_read_and_discarded():
    clock = Clock()
    conn = make(clock, max_message_size=1000, close_timeout=5)
    big = client_frame(OP_BINARY, b"x" * 5000)
    conn.receive_data(big[:100])                # the header alone decides: 1009
    assert conn.data_to_send() == encode_close(1009, "message over 1000 bytes")
    assert conn.transport_action == "linger"
    conn.receive_data(big[100:])                # still arriving: read, thrown away
    conn.receive_data(client_close(1009))
    assert conn.transport_action == "linger"    # until the client closes its side
    events = conn.events_received()
    assert [e[0] for e in events] == ["error", "close"]


def test_lingering_past_the_discard_budget_closes():
    conn = make(max_message_size=1000, discard_budget=10_000)
    conn.receive_data(client_frame(OP_BINARY, b"x" * 5000)[:10])
    conn.receive_data(b"y" * 9_000)
    assert conn.transport_action == "linger"
    conn.receive_data(b"y" * 1_001)
    assert conn.transport_action == "close"


def test_a_client_still_sending_at_close_timeout_is_cut():
    clock = Clock()
    start = clock.now
    conn = make(clock, close_timeout=5)
    conn.fail(1008, "policy")
    for step in range(1, 10):                   # a message every half second
        clock.now = start + step * 0.5
        conn.receive_data(client_frame(OP_TEXT, "x"))
        conn.tick(clock.now)
    assert conn.transport_action == "linger"
    conn.tick(start + 5)
    assert conn.transport_action == "abort"


def test_a_quiet_client_is_closed_a_second_after_the_close_frame():
    clock = Clock()
    start = clock.now
    conn = make(clock, close_timeout=5)
    conn.fail(1008, "policy")
    conn.tick(start + 0.9)
    assert conn.transport_action == "linger"
    conn.tick(start + 1.0)
    assert conn.transport_action == "close"


def test_the_clients_close_frame_ends_the_linger_at_once():
    conn = make()
    conn.fail(1008, "policy")
    conn.receive_data(client_frame(OP_TEXT, "still talking"))
    assert conn.transport_action == "linger"
    conn.receive_data(client_close(1008))
    assert conn.transport_action == "close"
    assert conn.events_received() == []         # nothing acted on


def test_discard_budget_default_is_16_mib_or_16_messages():
    assert WebSocketOptions().discard_budget == 16 << 20
    assert WebSocketOptions(max_message_size=4 << 20).discard_budget == 64 << 20
    assert WebSocketOptions(discard_budget=1234).discard_budget == 1234
    with pytest.raises(ValueError, match="discard_budget"):
        WebSocketOptions(discard_budget=0)


# ---------------------------------------------------------------- flow control

def shared_pair(clock: Clock, **options):
    """A publisher and a member sharing one runtime (as a hub's connections do)."""
    from fastws.ws._connection import Shared
    options.setdefault("ping_interval", None)
    shared = Shared(WebSocketOptions(**options), clock=clock)
    return shared, Connection(shared), Connection(shared)


def test_a_member_past_its_high_water_mark_makes_the_publisher_wait():
    clock = Clock()
    shared, publisher, member = shared_pair(clock, max_backpressure=1000)
    shared.publisher = publisher              # as while the publisher's callback runs
    assert member.send_frame(frame_of(400)) is True
    assert not publisher.waiting              # under the mark (500)
    assert member.send_frame(frame_of(400)) is True
    assert publisher.waiting                  # 800 queued: wait for the member
    shared.publisher = None
    member.data_to_send()                     # written out
    assert not publisher.waiting


def test_server_code_broadcasts_make_nobody_wait():
    clock = Clock()
    shared, publisher, member = shared_pair(clock, max_backpressure=1000)
    member.send_frame(frame_of(900))
    assert not publisher.waiting


def test_a_member_draining_too_slowly_is_dropped_from_the_wait():
    clock = Clock()
    start = clock.now
    shared, publisher, member = shared_pair(clock, max_backpressure=1000, backpressure="skip",
                                            slow_consumer_timeout=3, min_drain_rate=100)
    shared.publisher = publisher
    member.send_frame(frame_of(900))
    assert publisher.waiting
    member.tick(start + 2.9)
    assert publisher.waiting                  # inside the window
    member.tick(start + 3)                    # nothing written for 3 s: slow
    assert not publisher.waiting and member.slow
    assert member.transport_action is None    # skip: kept, just not waited for
    assert member.send_frame(frame_of(200)) is True      # 900 <= 1000: still taken
    assert member.send_frame(frame_of(200)) is False     # 1100: over the limit, skipped
    assert not publisher.waiting


def test_a_slow_consumer_under_the_close_policy_gets_1008():
    clock = Clock()
    start = clock.now
    shared, publisher, member = shared_pair(clock, max_backpressure=1000,
                                            slow_consumer_timeout=3, min_drain_rate=100)
    shared.publisher = publisher
    member.send_frame(frame_of(900))
    member.tick(start + 3)
    assert not publisher.waiting
    assert member.data_to_send().endswith(encode_close(1008, "slow consumer"))
    assert member.transport_action == "linger"


def test_a_publisher_held_by_flow_control_is_not_pinged_to_death():
    clock = Clock()
    start = clock.now
    shared, publisher, member = shared_pair(clock, max_backpressure=1000, ping_interval=1,
                                            idle_timeout=1, slow_consumer_timeout=60)
    shared.publisher = publisher
    member.send_frame(frame_of(900))
    shared.publisher = None
    for t in range(1, 10):                    # nine silent seconds, not read by us
        publisher.tick(start + t)
    assert publisher.transport_action is None
    assert publisher.data_to_send() == b""    # not even pinged


def test_send_frame_refuses_none():
    # The frame's size and bytes are read from the object in C.
    conn = make()
    with pytest.raises(TypeError):
        conn.send_frame(None)
    assert conn.data_to_send() == b""
