"""Room history in memory (``fastws.runtime.history.MemoryHistory``) with an
injected clock: positions, the three bounds, reads, which rooms keep history."""

from __future__ import annotations

import sys

import pytest

from fastws.runtime.history import ENTRY_OVERHEAD, ROOM_OVERHEAD, HistoryMessage, MemoryHistory

TEXT, BINARY = 1, 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def store(size=100, ttl=300.0, max_bytes=1 << 30, rooms=None):
    clock = Clock()
    return MemoryHistory(size, ttl, max_bytes, rooms, clock=clock), clock


def offsets(messages):
    return [m.offset for m in messages]


def test_each_room_numbers_its_messages_from_1_under_an_epoch_of_its_own():
    h, _ = store()
    a = [h.append("a", TEXT, f"a{i}") for i in range(3)]
    b = h.append("b", TEXT, "b0")
    assert [off for _, off in a] == [1, 2, 3] and b[1] == 1
    assert len({epoch for epoch, _ in a}) == 1
    assert a[0][0] != b[0] and a[0][0] and isinstance(a[0][0], str)
    assert h.position("a") == (a[0][0], 3) and h.position("nobody") is None


def test_a_new_store_is_a_new_epoch():
    # A restarted process: the same room's offsets start again, so they must not
    # be read as the old ones.
    first, _ = store()
    second, _ = store()
    assert first.append("a", TEXT, "x")[0] != second.append("a", TEXT, "x")[0]


def test_reads_keep_the_type_and_order():
    h, _ = store()
    h.append("a", TEXT, "héllo")
    h.append("a", BINARY, b"\x00\xff")
    h.append("a", BINARY, bytearray(b"ba"))
    got = h.read("a")
    assert [m.data for m in got] == ["héllo", b"\x00\xff", b"ba"]
    assert all(isinstance(m, HistoryMessage) and m.room == "a" for m in got)


def test_read_the_last_n_or_after_an_offset():
    h, _ = store()
    for i in range(10):
        h.append("a", TEXT, str(i))
    assert offsets(h.read("a", limit=3)) == [8, 9, 10]
    assert offsets(h.read("a", since=4, limit=3)) == [5, 6, 7]
    assert offsets(h.read("a", since=10)) == []
    assert offsets(h.read("a", since=99)) == []
    assert offsets(h.read("a", since=0)) == list(range(1, 11))
    assert h.read("a", limit=0) == [] and h.read("nobody") == []


def test_a_room_keeps_its_last_history_size_messages():
    h, _ = store(size=3)
    for i in range(5):
        h.append("a", TEXT, str(i))
    assert offsets(h.read("a")) == [3, 4, 5]
    # What is gone stays gone: after offset 1, only what is kept is read.
    assert offsets(h.read("a", since=1)) == [3, 4, 5]
    assert h.stats["evicted_size"] == 2


def test_messages_expire_after_history_ttl_and_an_empty_room_gets_a_new_epoch():
    h, clock = store(ttl=10.0)
    epoch, _ = h.append("a", TEXT, "old")
    clock.now += 6
    h.append("a", TEXT, "newer")
    clock.now += 5                      # "old" is 11 s old, "newer" 5 s
    assert [m.data for m in h.read("a")] == ["newer"]
    assert h.stats["evicted_ttl"] == 1
    clock.now += 10
    h.sweep()
    assert h.position("a") is None and h.stats["rooms_dropped"] == 1
    again = h.append("a", TEXT, "again")
    assert again[0] != epoch and again[1] == 1


def test_history_max_bytes_evicts_the_processes_oldest_messages_first():
    payload = b"x" * 200
    cost = sys.getsizeof(payload) + ENTRY_OVERHEAD
    h, clock = store(max_bytes=5 * cost + 2 * ROOM_OVERHEAD)
    for i in range(3):
        h.append("a", BINARY, payload)
        clock.now += 1
        h.append("b", BINARY, payload)
        clock.now += 1
    # Six stored, five fit: the oldest of all (a's first) went.
    assert offsets(h.read("a")) == [2, 3] and offsets(h.read("b")) == [1, 2, 3]
    assert h.nbytes == 5 * cost + 2 * ROOM_OVERHEAD and h.stats["evicted_bytes"] == 1
    h.append("b", BINARY, payload)     # now the oldest of all is b's first
    assert offsets(h.read("a")) == [2, 3] and offsets(h.read("b")) == [2, 3, 4]


def test_eviction_skips_messages_a_room_already_dropped():
    payload = b"y" * 100
    cost = sys.getsizeof(payload) + ENTRY_OVERHEAD
    h, clock = store(size=2, max_bytes=3 * cost + 2 * ROOM_OVERHEAD)
    for _ in range(4):
        h.append("hot", BINARY, payload)     # keeps 2; two places in the queue are empty
        clock.now += 1
    h.append("cold", BINARY, payload)
    h.append("cold", BINARY, payload)        # 4 kept > 3: the oldest kept is hot's 3rd
    assert offsets(h.read("hot")) == [4] and offsets(h.read("cold")) == [1, 2]
    assert h.nbytes == 3 * cost + 2 * ROOM_OVERHEAD


def test_the_count_follows_what_is_kept_through_every_bound():
    h, clock = store(size=50, ttl=30.0, max_bytes=64 * 1024)
    for i in range(5000):
        text = i % 2
        h.append(f"r{i % 37}", TEXT if text else BINARY, "m" * (i % 300) if text else b"b" * (i % 300))
        clock.now += 0.01
        if i % 700 == 0:
            clock.now += 40         # now and then everything expires
            h.sweep()
    held = {r: h.read(f"r{r}", limit=1000) for r in range(37)}
    live = [r for r in held if held[r]]         # a record counts while it holds a message
    kept = sum(sys.getsizeof(m.data) + ENTRY_OVERHEAD for r in live for m in held[r])
    assert h.nbytes == kept + len(live) * ROOM_OVERHEAD <= 64 * 1024
    # The queue of places is compacted: it never holds many more places than messages.
    assert len(h._order) <= 2 * sum(len(h.read(f"r{r}", limit=1000)) for r in live) + 1024


def test_a_room_emptied_to_stay_within_memory_is_forgotten_and_starts_a_new_epoch():
    payload = b"z" * 100
    cost = sys.getsizeof(payload) + ENTRY_OVERHEAD
    h, clock = store(max_bytes=2 * cost + 2 * ROOM_OVERHEAD)
    old = h.append("quiet", BINARY, payload)
    clock.now += 1
    h.append("busy", BINARY, payload)
    h.append("busy", BINARY, payload)           # over: quiet's only message goes, and quiet
    assert h.position("quiet") is None and h.stats["rooms_dropped"] == 1
    again = h.append("quiet", BINARY, payload)
    assert again[0] != old[0] and again[1] == 1


def test_sweep_drops_what_expired_and_the_rooms_left_empty():
    h, clock = store(ttl=10.0)
    for i in range(5):
        h.append(f"old{i}", TEXT, "m")
    clock.now += 5
    h.append("young", TEXT, "m")
    clock.now += 6                                # the old rooms' messages are 11 s old
    h.sweep()
    assert [r for r in ("old0", "old4", "young") if h.position(r)] == ["young"]
    assert h.stats["evicted_ttl"] == 5 and h.stats["rooms_dropped"] == 5
    assert h.nbytes == sys.getsizeof("m") + ENTRY_OVERHEAD + ROOM_OVERHEAD


def test_a_selector_that_raises_means_no_history_for_that_room(caplog):
    def pick(room):
        raise KeyError(room)
    h, _ = store(rooms=pick)
    assert h.append("r", TEXT, "m") is None and h.read("r") == []
    assert "history_rooms raised" in caplog.text


def test_text_a_serializer_returned_as_bytes_reads_back_as_text():
    h, _ = store()
    h.append("r", TEXT, b'{"a":1}')              # orjson.dumps returns bytes
    assert h.read("r")[0].data == '{"a":1}'


@pytest.mark.parametrize("rooms, kept, not_kept", [
    ("chat:*", ["chat:1", "chat:lobby"], ["ticker", "chat", b"chat:1"]),
    (["chat:*", "dm:??"], ["chat:x", "dm:ab"], ["dm:abc", "ticker"]),
    (lambda room: str(room).startswith("keep"), ["keep-me"], ["drop-me"]),
    (None, ["anything", b"bytes too", 3], []),
])
def test_history_rooms_chooses_the_rooms(rooms, kept, not_kept):
    h, _ = store(rooms=rooms)
    for room in kept:
        assert h.append(room, TEXT, "m") is not None and h.keeps(room)
    for room in not_kept:
        assert h.append(room, TEXT, "m") is None and h.read(room) == []


def test_a_selector_function_is_asked_once_per_room():
    asked = []
    h, _ = store(rooms=lambda room: asked.append(room) or room == "yes")
    for _ in range(3):
        h.append("yes", TEXT, "m")
        h.append("no", TEXT, "m")
    assert asked == ["yes", "no"]


def test_a_room_whose_position_a_member_learnt_stays_recoverable_for_the_ttl():
    # Told (E, 1) at t=299 while message 1 (t=0) still lives: away for two
    # seconds, the member must still find epoch E, not a new one.
    h, clock = store(ttl=300.0)
    clock.now = 0.0
    epoch, _ = h.append("a", TEXT, "m1")
    clock.now = 299.0
    assert h.touch("a") == (epoch, 1)
    clock.now = 301.0
    h.sweep()
    assert h.check("a", epoch, 1) is None and h.position("a") == (epoch, 1)
    clock.now = 600.0
    h.sweep()
    assert h.position("a") is None          # forgotten a TTL after it was last told


def test_records_of_quiet_rooms_never_push_messages_out():
    # A thousand rooms joined and never published to hold records with no
    # message; they are not counted, so they can never make the memory bound
    # evict every message (they go a TTL after they were joined).
    h, _ = store(max_bytes=50_000)
    for i in range(1000):
        h.touch(f"quiet{i}")
    assert h.nbytes == 0
    epoch, _ = h.append("chat", TEXT, "kept")
    assert h.read("chat") == [HistoryMessage("chat", epoch, 1, "kept")]
    assert h.stats["evicted_bytes"] == 0
