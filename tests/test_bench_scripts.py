"""The benchmark scripts bench/README.md tells a user to run start and explain
themselves, and refuse a bad command line with a message rather than a traceback.

They are run as a user runs them (``python bench/<script>.py``), so an import that
only works from another directory, or an option that no longer parses, fails here
rather than in the hands of the next person who wants a figure.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .reliability.procs import build_loadgen, listening_port

ROOT = Path(__file__).resolve().parents[1]

SCRIPTS = ["abtest", "asgi", "cluster", "codec_table", "compare", "curves", "history",
           "instructions", "nats_link", "recovery", "upgrades"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=60)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_explains_itself(script: str) -> None:
    proc = run(f"bench/{script}.py", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: "), proc.stdout[:200]


def test_every_script_the_readme_names_is_checked() -> None:
    readme = (ROOT / "bench" / "README.md").read_text()
    named = {p.stem for p in (ROOT / "bench").glob("*.py")
             if f"python bench/{p.name}" in readme and not p.stem.startswith("test_")}
    assert named <= set(SCRIPTS), f"add to SCRIPTS: {sorted(named - set(SCRIPTS))}"


def test_abtest_takes_a_peer_or_a_checkout_as_its_base() -> None:
    unknown = run("bench/abtest.py", "--base-server", "nosuch")
    assert unknown.returncode == 2
    assert "--base-server: one of " in unknown.stderr and "bun" in unknown.stderr
    both = run("bench/abtest.py", "--base", ".", "--base-server", "bun")
    assert both.returncode == 2 and "not allowed with" in both.stderr
    neither = run("bench/abtest.py")
    assert neither.returncode == 2 and "--base-server" in neither.stderr
    # The floor server only holds idle connections: asking it for echo is refused
    # before anything starts.
    floor = run("bench/abtest.py", "--base-server", "floor", "--modes", "echo")
    assert floor.returncode == 2, floor.stderr[-2000:]
    assert "--base-server floor does not take part in echo" in floor.stderr
    # --v1 clients speak fastws's own subprotocol: a peer cannot be their base.
    v1 = run("bench/abtest.py", "--base-server", "bun", "--v1")
    assert v1.returncode == 2 and "--v1: only fastws speaks fastws.v1" in v1.stderr, v1.stderr


def test_history_counts_what_it_keeps_as_the_memory_it_takes() -> None:
    # A smoke run: the script works from the repository root, and its figure (RSS
    # growth over what the store reports) is sane. The bar (within 1.1x) is for
    # the full run in bench/README.md; small runs are noisier.
    proc = run("bench/history.py", "--quick")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratio = float(proc.stdout.split("growth / reported: ")[1].split()[0])
    assert 0.5 < ratio < 2.0, proc.stdout


def test_recovery_replays_exactly_what_was_missed_alone_and_in_a_storm(tmp_path: Path) -> None:
    # A smoke run of bench/recovery.py: a replay from memory and from Redis, and a
    # small storm through a second node after the first is killed; it exits 1
    # unless every client got exactly what it missed.
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed, and CI must run the recovery bench")
        pytest.skip("redis-server is not installed")
    proc = run("bench/recovery.py", "--quick", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "exactly their missed messages: 200 of 200" in proc.stdout, proc.stdout


def test_loadgen_v1_receivers_get_every_offset(tmp_path: Path) -> None:
    # What abtest --v1 runs, small: loadgen --v1 against the fastws bench server with
    # history, so every room message carries an offset and each receiver checks that
    # they follow one another. One room of 20 (binary, base64 in "bytes"), then 5 chat
    # rooms of 4 (the server's object in "data").
    loadgen = build_loadgen(tmp_path)
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "fastws_server.py", "0"],
                                  cwd=ROOT / "bench" / "servers", stdin=subprocess.DEVNULL,
                                  stdout=log, stderr=subprocess.STDOUT,
                                  env={**os.environ, "BENCH_HISTORY": "50"})
    try:
        deadline = time.monotonic() + 30
        while (port := listening_port(server.pid)) is None:
            assert server.poll() is None, (tmp_path / "server.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "the bench server did not listen within 30 s"
            time.sleep(0.05)
        for extra in ([], ["--group", "4", "--path", "/chat/g", "--chat"]):
            proc = subprocess.run(
                [str(loadgen), "fanout", "--port", str(port), "--receivers", "20", "--window", "8",
                 "--size", "64", "--warmup", "0.2", "--duration", "0.5", "--drain", "3", "--v1",
                 *extra], capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            assert lines, f"loadgen printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
            result = json.loads(lines[-1])
            assert "error" not in result, result
            assert result["v1"] is True and result["messages"] > 0, result
            assert (result["v1_gaps"], result["v1_epochs_changed"], result["v1_unpositioned"]) \
                == (0, 0, 0), result
            assert (result["lost"], result["corrupt"], result["bad_frames"]) == (0, 0, 0), result
            # At least a fastws.welcome and a fastws.joined per receiver, never counted
            # as messages.
            assert result["v1_control_frames"] >= 2 * 20, result
    finally:
        server.kill()
        server.wait(10)
