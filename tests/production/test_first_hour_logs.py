"""What an operator reads in the first hour: a backplane URL that is wrong in
its database or password, health probes in the access log and the request
counter, a guard's refusals in the log, and JSON timestamps that sort across
hosts. Real servers (the CLI in a subprocess, or in-process on loopback),
real clients, a real Redis."""

from __future__ import annotations

import json
import logging
import re
import urllib.request
from datetime import datetime, timedelta

import pytest
from websockets.exceptions import InvalidStatus

from fastws import HTTPError, create_app, websocket
from fastws.ops.access import JsonFormatter

from ..cluster.conftest import Node, OwnRedis, need_redis, redis_ping
from ..integration.clients import wait_for, ws_connect
from .test_cli import APP, fastws, http

pytestmark = pytest.mark.timeout(120)

# RFC 3339 with milliseconds and a numeric offset: what a JSON line's time must look like.
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$")


def one_error_line(done) -> str:
    """The start failed with status 1 and said why on one line, no traceback."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert len(lines[0]) < 200, lines[0]
    return lines[0]


# ------------------------------------------------------------------ 1. backplane URL errors


def test_a_db_index_redis_does_not_have_names_the_url():
    need_redis(redis_ping(6379), "the Redis server on 127.0.0.1:6379")
    done = fastws(APP, "--port", "0", "--backplane", "redis://127.0.0.1:6379/99")
    line = one_error_line(done)
    assert "backplane: redis://127.0.0.1:6379/99: ERR DB index is out of range" in line, line


def test_credential_errors_during_the_handshake_name_the_url_not_the_password(tmp_path):
    redis = OwnRedis(tmp_path)
    redis.start("--requirepass", "hunter2")
    try:
        port = redis.port
        cases = [
            # no password where one is needed: the first command (PING) is refused
            (f"redis://127.0.0.1:{port}/0", f"redis://127.0.0.1:{port}/0: NOAUTH"),
            # ... or, with a database, the SELECT
            (f"redis://127.0.0.1:{port}/3", f"redis://127.0.0.1:{port}/3: NOAUTH"),
            (f"redis://:wrong-pw@127.0.0.1:{port}/0",
             f"redis://:***@127.0.0.1:{port}/0: refused the credentials: WRONGPASS"),
            (f"redis://someone:wrong-pw@127.0.0.1:{port}/2",
             f"redis://someone:***@127.0.0.1:{port}/2: refused the credentials: WRONGPASS"),
        ]
        for url, expected in cases:
            line = one_error_line(fastws(APP, "--port", "0", "--backplane", url))
            assert f"backplane: {expected}" in line, (url, line)
            assert "wrong-pw" not in line
    finally:
        redis.stop()


# ------------------------------------------------------------------ 2 and 4. health probes, JSON time


def scrape(node: Node) -> dict[tuple[str, tuple], float]:
    parser = pytest.importorskip("prometheus_client.parser")
    with urllib.request.urlopen(node.url("/metrics", "http"), timeout=10) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in parser.text_string_to_metric_families(text) for s in family.samples}


def requests_with(samples: dict, status: str) -> float:
    return samples.get(("fastws_http_requests_total", (("status", status),)), 0.0)


def test_health_probes_are_counted_and_logged_like_any_request(tmp_path):
    pytest.importorskip("prometheus_client")
    log = tmp_path / "health.log"
    extra = ("--health-path", "/healthz", "--access-log", "--log-format", "json",
             "--metrics-path", "/metrics")
    with Node(log, {}, app=APP, extra=extra) as node:
        before = requests_with(scrape(node), "200")
        assert http(node, "/healthz") == (200, b"ok")
        assert http(node, "/healthz?token=s3cret") == (200, b"ok")
        head = urllib.request.Request(node.url("/healthz", "http"), method="HEAD")
        with urllib.request.urlopen(head, timeout=10) as resp:
            assert resp.status == 200
        after = requests_with(scrape(node), "200")
        # the first scrape (counted once answered) and the three probes
        assert after - before == 4
        wait_for(lambda: node.log().count('"path": "/healthz"') >= 3, timeout=10,
                 what="three access lines for the probes")
    text = log.read_text()
    assert "s3cret" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    probes = [r for r in records if r["logger"] == "fastws.access" and r.get("path") == "/healthz"]
    assert [(r["method"], r["status"], r["kind"]) for r in probes] == \
        [("GET", 200, "http"), ("GET", 200, "http"), ("HEAD", 200, "http")]
    assert probes[1]["query"] == "token=***"
    assert probes[0]["client"].startswith("127.0.0.1:")
    # every line the server wrote, access lines or not, carries an RFC 3339 time
    for record in records:
        assert RFC3339_MS.match(record["time"]), record
        stamp = datetime.fromisoformat(record["time"])
        assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0), record


def test_json_time_is_rfc3339_utc_with_milliseconds():
    record = logging.LogRecord("fastws", logging.INFO, __file__, 1, "served", None, None)
    record.created = 1796597709.1234      # 2026-12-06T22:55:09.123 UTC
    line = json.loads(JsonFormatter().format(record))
    assert line["time"] == "2026-12-06T22:55:09.123+00:00"
    stamp = datetime.fromisoformat(line["time"])
    assert stamp.tzinfo is not None and stamp.utcoffset() == timedelta(0)
    assert stamp.microsecond == 123000
    assert stamp.timestamp() == pytest.approx(1796597709.123, abs=1e-6)


# ------------------------------------------------------------------ 3. guard refusals


def guarded_app():
    app = create_app()
    app.use(websocket())

    @app.ws("/deny", guard=lambda ctx: False)
    def deny(ws, ctx):
        ws.send("never")

    def needs_token(ctx):
        raise HTTPError(401, "token required", {"WWW-Authenticate": "Bearer"})

    @app.ws("/auth", guard=needs_token)
    def auth(ws, ctx):
        ws.send("never")

    async def needs_token_later(ctx):
        raise HTTPError(401, "token expired")

    @app.ws("/auth-async", guard=needs_token_later)
    def auth_async(ws, ctx):
        ws.send("never")

    @app.ws("/full", guard=lambda ctx: ctx.json({"error": "room is full"}, status=429))
    def full(ws, ctx):
        ws.send("never")

    @app.ws("/open", guard=lambda ctx: True)
    def opened(ws, ctx):
        ws.send("welcome")

    return app


def refusals(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "fastws" and r.getMessage().startswith("refused WebSocket upgrade")]


def test_every_guard_refusal_is_logged_with_path_client_status_and_reason(serve, caplog):
    caplog.set_level(logging.INFO, logger="fastws")
    expected = {
        "/deny": (403, "the guard returned False"),
        "/auth": (401, "token required"),
        "/auth-async": (401, "token expired"),
        "/full": (429, "the guard returned a response"),
    }
    with serve(guarded_app()) as srv:
        for path, (status, _) in expected.items():
            with pytest.raises(InvalidStatus) as info:
                with ws_connect(srv.url(f"{path}?token=s3cret&room=lobby")):
                    pass
            assert info.value.response.status_code == status
        with ws_connect(srv.url("/open?token=s3cret")) as ws:
            assert ws.recv(timeout=5) == "welcome"
        wait_for(lambda: len(refusals(caplog)) >= len(expected), timeout=10,
                 what="a log line per refusal")
    logged = refusals(caplog)
    assert len(logged) == len(expected), [r.getMessage() for r in logged]
    for record in logged:
        message = record.getMessage()
        path = message.split()[4]
        status, reason = expected[path]
        assert record.levelno == logging.INFO
        assert re.match(rf"refused WebSocket upgrade to {re.escape(path)} from 127\.0\.0\.1:\d+: "
                        rf"guard answered {status}, {re.escape(reason)}$", message), message
        assert (record.path, record.status) == (path, status)
        assert record.client.startswith("127.0.0.1:")
    assert {r.getMessage().split()[4] for r in logged} == set(expected)
    assert not any("s3cret" in r.getMessage() or "room=" in r.getMessage() for r in caplog.records)
