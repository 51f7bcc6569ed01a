"""Soak: 10,000 connections held and chatting for a minute, then 100,000
connect/close cycles; no errors, and no leak of sockets, rooms, handlers,
tasks or memory.

The server runs alone in a child process (its RSS is measured from /proc);
the clients run in two other processes: ``chatter`` (paced chat over many
sockets) and ``cycler`` (connect, upgrade, echo, close, in three styles).

Memory: Python's allocator and glibc keep freed memory for reuse, so RSS
after 10,000 connections close stays near its high-water mark; that is not
a leak. The leak check therefore takes its baseline after the soak and the
first tenth of the cycles (the warm-up), and requires RSS after the other
nine tenths to stay within 10% of it, with the live Python object count
back where it was: a leak of even ~100 bytes per cycle would show.

Size: FASTWS_SOAK_CONNS (10000), FASTWS_SOAK_SECONDS (60),
FASTWS_SOAK_CYCLES (100000). About 2-3 minutes on a 2-core machine.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ..integration.clients import wait_for
from .procs import ROOT, ServerProcess, raise_nofile_limit

pytestmark = pytest.mark.slow

CONNS = int(os.environ.get("FASTWS_SOAK_CONNS", "10000"))
SECONDS = float(os.environ.get("FASTWS_SOAK_SECONDS", "60"))
CYCLES = int(os.environ.get("FASTWS_SOAK_CYCLES", "100000"))
WARMUP_CYCLES = max(1, CYCLES // 10)
# Live objects that may come and go between two idle moments (caches,
# the stats request itself); a per-cycle leak over 90,000 cycles is far more.
OBJECT_SLACK = 2000


def chat(port: int, conns: int, seconds: float, on_holding=None) -> dict[str, Any]:
    """Run the chatter; ``on_holding(line)`` is called once all are open."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.chatter", "--port", str(port),
         "--conns", str(conns), "--seconds", str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        guard = 120 + conns / 100
        ready, _, _ = select.select([proc.stdout], [], [], guard)
        assert ready, f"chatter did not open {conns} connections within {guard:.0f}s"
        holding = json.loads(proc.stdout.readline())
        assert holding.get("event") == "holding", holding
        if on_holding is not None:
            on_holding(holding)
        out, err = proc.communicate(timeout=seconds + guard)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    assert lines, f"chatter printed nothing: {err[-2000:]}"
    return json.loads(lines[-1])


def cycle(port: int, cycles: int) -> dict[str, Any]:
    """Run ``cycles`` connect/close cycles through the cycler."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.reliability.cycler", "--port", str(port),
         "--cycles", str(cycles)],
        cwd=ROOT, capture_output=True, text=True, timeout=120 + cycles / 200)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"cycler printed nothing (rc {proc.returncode}): {proc.stderr[-2000:]}"
    return json.loads(lines[-1])


def settled(server: ServerProcess, opened: int) -> dict[str, Any]:
    """Stats once every connection opened so far has been closed and reaped."""
    def idle() -> dict[str, Any] | None:
        stats = server.stats()
        done = stats["connections"] == 0 and stats["closed"] == stats["opened"] == opened
        return stats if done else None
    wait_for(idle, timeout=60, what="the server to reap every connection")
    time.sleep(0.5)
    return server.stats("gc=1")


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f} MiB"


def test_soak_hold_chat_then_cycle(tmp_path: Path) -> None:
    limit = raise_nofile_limit()
    assert CONNS + 200 <= limit, f"RLIMIT_NOFILE {limit} is too low for {CONNS} connections"
    figures: dict[str, Any] = {"connections": CONNS, "chat_seconds": SECONDS, "cycles": CYCLES}
    started = time.monotonic()
    with ServerProcess("soak", tmp_path / "server.log", close_timeout=5) as server:
        # Warm-up: code paths, caches and allocator pools in use once.
        warm = cycle(server.port, 2000)
        assert warm["errors"] == 0, warm
        warm_chat = chat(server.port, min(1000, CONNS), 2)
        assert warm_chat["errors"] == 0 and warm_chat["missing"] == 0, warm_chat
        opened = 2000 + warm_chat["connections"]
        settled(server, opened)
        figures["rss_after_warmup_kib"] = rss_idle = server.rss_kib()

        # Hold CONNS connections and chat over every one of them.
        samples: list[int] = []

        def on_holding(line: dict[str, Any]) -> None:
            figures["setup_s"] = line["setup_s"]
            stats = server.stats()
            assert stats["connections"] == CONNS, stats
            samples.append(server.rss_kib())

        result = chat(server.port, CONNS, SECONDS, on_holding)
        samples.append(server.rss_kib())
        figures["chat"] = result
        assert result["connections"] == CONNS and result["failed"] == 0, result
        assert result["errors"] == 0 and result["missing"] == 0, result
        assert result["lost_by_server"] == 0, result
        assert result["echoed"] >= CONNS, result         # every connection spoke
        opened += CONNS
        after_soak = settled(server, opened)
        assert after_soak["rooms"] == 0 and after_soak["errors"] == 0, after_soak
        figures["rss_held_kib"] = rss_held = max(samples)
        figures["rss_per_connection_kib"] = round((rss_held - rss_idle) / CONNS, 2)
        figures["rss_after_soak_kib"] = server.rss_kib()

        # Cycles: a warm-up tenth, the baseline, then the rest.
        first = cycle(server.port, WARMUP_CYCLES)
        assert first["errors"] == 0, first
        opened += WARMUP_CYCLES
        base_stats = settled(server, opened)
        figures["rss_cycle_baseline_kib"] = rss_base = server.rss_kib()

        rest = cycle(server.port, CYCLES - WARMUP_CYCLES)
        figures["cycles_per_second"] = rest["per_second"]
        assert rest["errors"] == 0, rest
        opened += CYCLES - WARMUP_CYCLES
        end_stats = settled(server, opened)
        figures["rss_after_cycles_kib"] = rss_after = server.rss_kib()
        figures["objects_baseline"] = base_stats["objects"]
        figures["objects_after_cycles"] = end_stats["objects"]
        server.stats("trim=1")          # for the figures: what the allocator was keeping
        figures["rss_after_trim_kib"] = server.rss_kib()
        figures["total_s"] = round(time.monotonic() - started, 1)

        print("\nsoak figures:", json.dumps(figures, indent=1))
        print(f"held {CONNS} connections chatting {SECONDS:.0f}s: "
              f"{result['echoed']} echoes, RSS {mib(rss_idle)} idle -> {mib(rss_held)} held "
              f"= {figures['rss_per_connection_kib']} KiB per connection; "
              f"after soak {mib(figures['rss_after_soak_kib'])}; cycles: baseline "
              f"{mib(rss_base)} -> {mib(rss_after)} after {CYCLES - WARMUP_CYCLES} more "
              f"({rest['per_second']}/s); after malloc_trim {mib(figures['rss_after_trim_kib'])}")

        # No leak: nothing left open, no task, no room, no object, and RSS back.
        assert end_stats["rooms"] == 0 and end_stats["errors"] == 0, end_stats
        assert end_stats["tasks"] <= base_stats["tasks"], (base_stats, end_stats)
        assert end_stats["objects"] <= base_stats["objects"] + OBJECT_SLACK, (base_stats, end_stats)
        assert rss_after <= rss_base * 1.10, figures
        assert server.stop() == 0
        assert "Traceback" not in server.log(), server.log()[-3000:]
