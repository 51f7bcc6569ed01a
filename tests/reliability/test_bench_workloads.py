"""The workloads bench/compare.py adds for many rooms, the JSON chat and the idle floor,
run small against the bench's own servers, so a change that breaks them fails here
rather than in the lead's next full comparison.

Each test starts a server file from ``bench/servers/`` as a child process on a port the
kernel picks and drives it with the C load generator (``bench/loadgen.c``): rooms of 4
receivers and a publisher (``--group 4``), in ``--chat`` every reply parsed and checked
(user, content, sequence number), and in ``idle`` every 101's Sec-WebSocket-Accept.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from .procs import ROOT, build_loadgen, listening_port

SERVERS = ROOT / "bench" / "servers"
ROOMS = 10                     # 10 rooms of 4 receivers + 1 publisher: 50 sockets


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The C load generator, compiled for this module."""
    return build_loadgen(tmp_path_factory.mktemp("loadgen"))


def start(script: str, log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run ``bench/servers/<script>`` on port 0; yield the port it listens on."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(SERVERS / script), "0"], cwd=SERVERS,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
    try:
        deadline = time.monotonic() + 30
        while (port := listening_port(proc.pid)) is None:
            assert proc.poll() is None, f"{script} exited: {log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"{script} did not listen within 30 s"
            time.sleep(0.05)
        yield port
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture(params=["default", "json", "orjson"])
def fastws_port(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """bench/servers/fastws_server.py, with fastws's default JSON, the stdlib json
    alone or orjson alone (BENCH_JSON)."""
    if request.param == "orjson" and importlib.util.find_spec("orjson") is None:
        pytest.skip("orjson is not installed (the test and bench extras have it)")
    yield from start("fastws_server.py", tmp_path / "server.log", {"BENCH_JSON": request.param})


def run(loadgen: Path, *args: str, timeout: float = 60) -> dict[str, Any]:
    """One load-generator run; its JSON result."""
    proc = subprocess.run([str(loadgen), *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"loadgen printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def rooms(loadgen: Path, port: int, path: str, *extra: str) -> dict[str, Any]:
    """ROOMS rooms of 4 receivers and a publisher, 4 messages in flight each, 1 s."""
    return run(loadgen, "fanout", "--port", str(port), "--path", path, "--group", "4",
               "--receivers", str(ROOMS * 4), "--window", "4", "--size", "64",
               "--warmup", "0.2", "--duration", "1", "--drain", "3", *extra)


def test_chat_rooms_deliver_every_reply_intact(loadgen: Path, fastws_port: int) -> None:
    result = rooms(loadgen, fastws_port, "/chat/g", "--chat")
    assert "error" not in result, result
    assert result["chat"] is True
    assert result["messages"] > 0
    # Every publish reached the 4 others of its room (not the publisher: publisher_frames),
    # each reply a JSON object naming the room's publisher and carrying its content.
    assert (result["lost"], result["corrupt"], result["bad_frames"]) == (0, 0, 0), result
    assert (result["out_of_order"], result["publisher_frames"]) == (0, 0), result
    assert result["received"] == result["published"] * 4


def test_binary_rooms_reach_the_other_members(loadgen: Path, tmp_path: Path) -> None:
    for port in start("fastws_server.py", tmp_path / "server.log"):
        result = rooms(loadgen, port, "/room/g")
        assert "error" not in result, result
        assert result["messages"] > 0
        assert (result["lost"], result["bad_frames"], result["publisher_frames"]) == (0, 0, 0)


def test_chat_check_rejects_a_plain_relay(loadgen: Path, tmp_path: Path) -> None:
    # /room/<name> sends the client's own {"type":"message","content":...} back out: no
    # "user", no "timestamp", "message" only as a value. None of it may count as a chat
    # reply, so not even the readiness probe gets through.
    for port in start("fastws_server.py", tmp_path / "server.log"):
        result = rooms(loadgen, port, "/room/g", "--chat", "--setup-timeout", "1")
        assert result.get("error") == "not every receiver got a probe (replies corrupt)", result
        assert result["probes_ready"] == 0 and result["corrupt"] > 0, result


def test_floor_server_answers_upgrades_and_holds_them(loadgen: Path, tmp_path: Path) -> None:
    # loadgen checks every Sec-WebSocket-Accept, then holds the 50 open for half a second.
    for port in start("floor_server.py", tmp_path / "server.log"):
        result = run(loadgen, "idle", "--port", str(port), "--conns", "50", "--hold-max", "0.5")
        assert "error" not in result, result
        assert (result["still_open"], result["handshake_errors"], result["server_closed"]) == \
            (50, 0, 0), result
