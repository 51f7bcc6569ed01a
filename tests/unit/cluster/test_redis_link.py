"""The RESP link (``fastws.cluster.redis_link``) against a real Redis: replies of
every kind, pipelining, pub/sub, a server that goes away or answers nonsense.

Plain commands and pub/sub use the shared Redis on 127.0.0.1:6379 (keys of the
test's own); a test that kills its server starts its own ``redis-server``.
Without Redis these skip, except under CI=true, where they fail. Every wait is
bounded (``bounded``), so a link that hangs fails the test instead of the run;
nothing asserts on elapsed time.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from typing import Any

import pytest

from fastws.cluster.redis_link import Link, Pending, RedisError, RedisURL, parse_url

from ...cluster.conftest import OwnRedis, free_port, need_redis, own_redis, redis_ping  # noqa: F401

pytestmark = pytest.mark.timeout(60)

SHARED = "redis://127.0.0.1:6379/0"
BOUND = 10.0          # seconds any one wait may take before the test fails


def bounded(aw: Any) -> Any:
    return asyncio.wait_for(aw, BOUND)


def run(coro: Any) -> Any:
    return asyncio.run(bounded(coro))


@pytest.fixture
def shared() -> RedisURL:
    need_redis(redis_ping(6379), "the Redis server on 127.0.0.1:6379")
    return parse_url(SHARED)


@pytest.fixture
def key() -> str:
    return "fastws-test:" + uuid.uuid4().hex


class Pushes:
    """An ``on_push`` that keeps what it is given and can be waited on."""

    def __init__(self) -> None:
        self.items: list = []
        self._changed = asyncio.Event()

    def __call__(self, reply: list) -> None:
        self.items.append(reply)
        self._changed.set()

    def messages(self) -> list[bytes]:
        return [p[2] for p in self.items if p[0] == b"message"]

    async def until(self, done: Any) -> None:
        while not done(self):
            self._changed.clear()
            await bounded(self._changed.wait())


# ---------------------------------------------------------------- URLs

@pytest.mark.parametrize("url, where", [
    ("redis://", ("127.0.0.1", 6379, 0, None, None, False)),
    ("redis://example.com:6380/3", ("example.com", 6380, 3, None, None, False)),
    ("redis://:pw@h/1", ("h", 6379, 1, None, "pw", False)),
    ("redis://secret@h", ("h", 6379, 0, None, "secret", False)),        # as redis-cli -u reads it
    ("redis://user:p%40ss@h", ("h", 6379, 0, "user", "p@ss", False)),
    ("rediss://h:7000", ("h", 7000, 0, None, None, True)),
    ("redis://[::1]:6390/2", ("::1", 6390, 2, None, None, False)),
])
def test_urls_are_read_as_redis_cli_reads_them(url, where):
    u = parse_url(url)
    assert (u.host, u.port, u.db, u.username, u.password, u.tls) == where


def test_the_safe_url_never_shows_the_password():
    u = parse_url("redis://user:hunter2@h:6380/4")
    assert u.safe == "redis://user:***@h:6380/4" and "hunter2" not in repr(u.safe)
    assert parse_url("redis://hunter2@h").safe == "redis://:***@h:6379/0"
    assert parse_url("redis://[::1]/0").safe == "redis://[::1]:6379/0"


def test_tls_options_come_from_the_query():
    assert parse_url("redis://h").ssl_context() is None
    strict = parse_url("rediss://h")
    assert strict.tls_verify and strict.ssl_context().check_hostname
    lax = parse_url("rediss://h?ssl_cert_reqs=none")
    assert not lax.tls_verify and not lax.ssl_context().check_hostname


@pytest.mark.parametrize("url, says", [
    ("http://h", "must start with redis:// or rediss://, got http://"),
    ("h:6379", "must start with redis://"),
    ("redis://h:notaport", "invalid port"),
    ("redis://h/zero", "the path must be a database number, got 'zero'"),
])
def test_bad_urls_say_what_is_wrong(url, says):
    with pytest.raises(ValueError, match="backplane URL") as info:
        parse_url(url)
    assert says in str(info.value)


# ---------------------------------------------------------------- commands and replies

def test_every_kind_of_reply(shared, key):
    async def main():
        link = await Link.open(shared, BOUND)
        try:
            c = link.command
            assert await c("PING") == b"PONG"                         # simple string
            assert await c("SET", key, "v\r\n\x00\xff") == b"OK"
            assert await c("GET", key) == "v\r\n\x00\xff".encode()    # bulk, binary-safe
            assert await c("GET", key + ":none") is None               # nil
            assert await c("INCR", key + ":n") == 1                    # integer
            assert await c("RPUSH", key + ":l", "a", "b", 3) == 3
            assert await c("LRANGE", key + ":l", 0, -1) == [b"a", b"b", b"3"]   # array
            assert await c("LRANGE", key + ":none", 0, -1) == []        # empty array
            assert await c("HGETALL", key + ":none") == []
            with pytest.raises(RedisError, match="WRONGTYPE"):          # error reply
                await c("GET", key + ":l")
            with pytest.raises(RedisError, match="(?i)unknown command"):
                await c("NO-SUCH-COMMAND")
            assert await c("ECHO", "still in step") == b"still in step"
        finally:
            await c("DEL", key, key + ":n", key + ":l")
            link.close()
    run(main())


def test_pipelined_commands_get_their_own_replies_in_order(shared, key):
    async def main():
        link = await Link.open(shared, BOUND)
        try:
            futs = [link.command("ECHO", str(i)) for i in range(500)]
            futs.insert(250, link.command("LPOP", key + ":none-list", "x"))   # an error between
            link.send("INCR", key)                  # reply read and dropped
            link.send("GET", key + ":missing-or-error", "extra-arg")   # error, dropped too
            last = link.command("GET", key)
            results = await asyncio.gather(*futs, return_exceptions=True)
            assert isinstance(results.pop(250), RedisError)
            assert results == [str(i).encode() for i in range(500)]
            assert await last == b"1"
        finally:
            await link.command("DEL", key)
            link.close()
    run(main())


def test_commands_queued_in_one_iteration_go_out_in_one_write(shared):
    async def main():
        link = await Link.open(shared, BOUND)
        writes = []
        real = link.transport.write
        link.transport.write = lambda data: (writes.append(data), real(data))[1]
        try:
            futs = [link.command("ECHO", "x" * 10) for _ in range(20)]
            assert link.buffered > 20 * 10          # queued, not written yet
            assert writes == []
            await asyncio.gather(*futs)
            assert len(writes) == 1
        finally:
            link.transport.write = real
            link.close()
    run(main())


class Kept(Pending):
    __slots__ = ("got",)

    def __init__(self, got: list[Any]) -> None:
        self.got = got

    def on_reply(self, reply: Any) -> None:
        self.got.append(reply)


def test_a_pending_call_gets_its_reply_in_order_with_futures_and_errors(shared, key):
    """``Link.call`` hands each reply to its Pending in the order sent, among
    commands with futures; an error reply and a closed link are RedisErrors."""
    async def main():
        link = await Link.open(shared, BOUND)
        got: list[Any] = []
        try:
            link.call(Kept(got), "SET", key, "1")
            fut = link.command("GET", key)
            link.call(Kept(got), "INCRBY", key, "x")     # not an integer: an error reply
            link.call(Kept(got), "GET", key)
            assert await fut == b"1"
            await link.command("PING")
            assert got[0] == b"OK" and got[2] == b"1"
            assert isinstance(got[1], RedisError) and "not an integer" in str(got[1])
            late: list[Any] = []
            link.call(Kept(late), "GET", key)
            link.close()
            assert len(late) == 1 and isinstance(late[0], RedisError)
            link.call(Kept(late), "GET", key)
            assert len(late) == 2 and isinstance(late[1], RedisError)
        finally:
            link.close()
    run(main())


@pytest.mark.parametrize("size", [64 * 1024 + 3, 3 * 1024 * 1024 + 1])
def test_a_big_bulk_string_split_across_reads_arrives_whole(shared, key, size):
    value = bytes(range(256)) * (size // 256) + b"\r\n$1\r\n"[: size % 256]
    value = value[:size]

    async def main():
        link = await Link.open(shared, BOUND)
        reads = []
        real = link.data_received
        link.data_received = lambda data: (reads.append(len(data)), real(data))[1]
        try:
            await link.command("SET", key, value)
            reads.clear()
            got, after = await asyncio.gather(link.command("GET", key), link.command("PING"))
            assert got == value and after == b"PONG"
            return len(reads)
        finally:
            link.data_received = real
            await link.command("DEL", key)
            link.close()
    reads = run(main())
    if size > 1024 * 1024:
        assert reads > 1, "the reply came in one read: the split was not exercised"


def test_a_reply_fed_one_byte_at_a_time():
    # The same through the protocol alone: hiredis keeps a partial reply until
    # it is whole, whatever the cut.
    async def main():
        link = Link()
        link.connection_made(FakeTransport())
        futs = [link.command("GET", "k"), link.command("LRANGE", "l", 0, -1),
                link.command("GET", "n"), link.command("X")]
        wire = b"$12\r\nhello\r\nworld\r\n*2\r\n$1\r\na\r\n:7\r\n$-1\r\n-ERR nope\r\n"
        for i in range(len(wire)):
            link.data_received(wire[i:i + 1])
        assert [f.result() for f in futs[:3]] == [b"hello\r\nworld", [b"a", 7], None]
        with pytest.raises(RedisError, match="ERR nope"):
            futs[3].result()
        link.close()
    run(main())


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted


# ---------------------------------------------------------------- pub/sub

@contextlib.asynccontextmanager
async def subscribed(url: RedisURL, channel: bytes):
    """(pushes, subscriber link, another link), once Redis confirmed the subscription."""
    pushes = Pushes()
    sub = await Link.open(url, BOUND, on_push=pushes)
    pub = await Link.open(url, BOUND)
    try:
        sub.push_only("SUBSCRIBE", channel)
        await pushes.until(lambda p: p.items)
        yield pushes, sub, pub
    finally:
        sub.close()
        pub.close()


def test_pubsub_delivers_messages_to_on_push_in_order(shared, key):
    channel = key.encode()

    async def main():
        async with subscribed(shared, channel) as (pushes, sub, pub):
            assert pushes.items == [[b"subscribe", channel, 1]]
            assert await pub.command("PUBLISH", channel, "one") == 1    # one receiver
            await pub.command("PUBLISH", channel, b"\x00two\xff")
            pub.send("PUBLISH", channel, "three")
            await pushes.until(lambda p: len(p.messages()) == 3)
            assert pushes.messages() == [b"one", b"\x00two\xff", b"three"]
            assert all(p[:2] == [b"message", channel] for p in pushes.items[1:])
            sub.push_only("UNSUBSCRIBE", channel)
            await pushes.until(lambda p: p.items[-1][0] == b"unsubscribe")
            assert pushes.items[-1] == [b"unsubscribe", channel, 0]
            assert await pub.command("PUBLISH", channel, "nobody") == 0
    run(main())


def test_write_parts_on_a_reply_off_link_publishes_without_replies(shared, key):
    # The relay's hot path: PUBLISH written by hand on a link told CLIENT REPLY OFF.
    channel = key.encode()

    async def main():
        async with subscribed(shared, channel) as (pushes, _, pub):
            pub.push_only("CLIENT", "REPLY", "OFF")
            for payload in (b"first", b"x" * 100_000):
                head = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n" % (
                    len(channel), channel, len(payload))
                pub.write_parts((head, payload, b"\r\n"), len(head) + len(payload) + 2)
            await pushes.until(lambda p: len(p.messages()) == 2)
            assert pushes.messages() == [b"first", b"x" * 100_000]
            assert not pub._waiting                # nothing was waiting for a reply
    run(main())


# ---------------------------------------------------------------- closing, losing, refusing

def test_close_fails_what_is_pending_and_later_commands_at_once(shared):
    async def main():
        lost: list = []
        link = await Link.open(shared, BOUND, on_lost=lost.append)
        pending = link.command("BLPOP", "fastws-test:never:" + uuid.uuid4().hex, 0)
        await asyncio.sleep(0)
        link.close()
        with pytest.raises(RedisError, match="closed"):
            await pending
        with pytest.raises(RedisError, match="closed"):
            await link.command("PING")
        link.send("PING")                       # a no-op on a closed link, not an error
        link.push_only("PING")
        link.write_parts((b"x",), 1)
        await asyncio.sleep(0.05)
        assert link.closed and lost == []       # closing is not losing
    run(main())


def test_a_server_that_goes_away_fails_pending_commands_and_says_so_once(own_redis: OwnRedis):
    async def main():
        lost: list = []
        link = await Link.open(parse_url(own_redis.url), BOUND, on_lost=lost.append)
        assert await link.command("PING") == b"PONG"
        pending = [link.command("BLPOP", "never", 0) for _ in range(3)]
        await asyncio.sleep(0.05)
        own_redis.stop()                        # SIGKILL: no goodbye
        for fut in pending:
            with pytest.raises(RedisError, match="lost"):
                await bounded(fut)
        while not lost:
            await asyncio.sleep(0.01)
        assert len(lost) == 1 and link.closed
        with pytest.raises(RedisError, match="closed"):
            await link.command("PING")
        await asyncio.sleep(0.05)
        assert len(lost) == 1
    run(main())


def test_a_link_is_not_reconnected_a_new_one_is_opened(own_redis: OwnRedis):
    # The link promises no reconnection (the relay reconnects by opening new
    # links): after a restart the old link stays closed and a new one works.
    async def main():
        url = parse_url(own_redis.url)
        old = await Link.open(url, BOUND, on_lost=lambda exc: None)
        own_redis.stop()
        while not old.closed:
            await asyncio.sleep(0.01)
        with pytest.raises(RedisError, match=f"^cannot connect to {re.escape(url.safe)}"):
            await Link.open(url, BOUND)
        own_redis.start()
        new = await Link.open(url, BOUND)
        try:
            assert await new.command("PING") == b"PONG"
            assert old.closed
            with pytest.raises(RedisError):
                await old.command("PING")
        finally:
            new.close()
    run(main())


def test_nothing_listening_is_a_clear_error_naming_the_url_without_the_password():
    url = parse_url(f"redis://user:hunter2@127.0.0.1:{free_port()}/0")

    async def main():
        with pytest.raises(RedisError) as info:
            await Link.open(url, BOUND)
        return str(info.value)
    text = run(main())
    assert text.startswith(f"cannot connect to {url.safe}") and "hunter2" not in text


def test_a_server_that_never_answers_is_a_timeout_not_a_hang():
    async def main():
        # The writers are kept: since 3.13 a StreamWriter that is collected
        # closes its connection, and the server would no longer be silent.
        writers: list = []
        silent = await asyncio.start_server(lambda r, w: writers.append(w), "127.0.0.1", 0)
        port = silent.sockets[0].getsockname()[1]
        try:
            url = parse_url(f"redis://:hunter2@127.0.0.1:{port}/0")     # AUTH waits for a reply
            with pytest.raises(RedisError) as info:
                await Link.open(url, 0.2)
            return str(info.value), url.safe
        finally:
            for writer in writers:
                writer.close()
            silent.close()
    text, safe = run(main())
    assert text == f"no answer from {safe} within 0.2s" and "hunter2" not in text


def test_a_reply_that_is_not_resp_fails_pending_commands_and_drops_the_link():
    async def main():
        async def garbage(reader, writer):
            await reader.read(100)
            writer.write(b"?this is not RESP\r\n")
            await writer.drain()
            await reader.read(100)          # until the client drops us
            writer.close()

        server = await asyncio.start_server(garbage, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        lost: list = []
        try:
            link = await Link.open(parse_url(f"redis://127.0.0.1:{port}"), BOUND,
                                   on_lost=lost.append)
            with pytest.raises(RedisError, match="bad reply from Redis"):
                await link.command("PING")
            while not link.closed:
                await asyncio.sleep(0.01)
            assert len(lost) == 1
        finally:
            server.close()
    run(main())


def test_a_wrong_password_is_refused_without_showing_it(own_redis: OwnRedis):
    own_redis.stop()
    own_redis.start("--requirepass", "right-one")

    async def main():
        good = await Link.open(parse_url(f"redis://:right-one@127.0.0.1:{own_redis.port}/0"), BOUND)
        assert await good.command("PING") == b"PONG"
        good.close()
        url = parse_url(f"redis://:hunter2@127.0.0.1:{own_redis.port}/0")
        with pytest.raises(RedisError) as info:
            await Link.open(url, BOUND)
        text = str(info.value)
        assert text.startswith(f"{url.safe}: refused the credentials:") and "hunter2" not in text
        # Without a password, the first command says NOAUTH.
        bare = await Link.open(parse_url(f"redis://127.0.0.1:{own_redis.port}/0"), BOUND)
        with pytest.raises(RedisError, match="NOAUTH"):
            await bare.command("PING")
        bare.close()
    run(main())


def test_the_database_is_selected_and_a_bad_one_names_the_url(own_redis: OwnRedis):
    async def main():
        one = await Link.open(parse_url(f"redis://127.0.0.1:{own_redis.port}/1"), BOUND)
        zero = await Link.open(parse_url(f"redis://127.0.0.1:{own_redis.port}/0"), BOUND)
        try:
            await one.command("SET", "where", "db1")
            assert await zero.command("GET", "where") is None
            assert await one.command("GET", "where") == b"db1"
        finally:
            one.close()
            zero.close()
        url = parse_url(f"redis://127.0.0.1:{own_redis.port}/999")
        with pytest.raises(RedisError) as info:
            await Link.open(url, BOUND)
        assert str(info.value).startswith(f"{url.safe}: ") and "out of range" in str(info.value)
    run(main())
