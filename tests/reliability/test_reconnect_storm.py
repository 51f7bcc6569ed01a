"""A reconnect storm: 10,000 clients that were connected all reconnect at once
(after a deploy or a network blip), every one of them gets in, and the server's
memory goes back to where it was.

The load generator opens its connections with no cap on how many are in
progress (``--max-pending`` = all), so the 10,000 SYNs and upgrade requests
arrive together; the server must accept them all without one failing. The
first three rounds warm the server up (Python's and glibc's allocators keep the
arenas the first crowds needed; how much depends on how many handshakes
overlapped, so one CI run measured 56 MiB after two rounds and 64 after the
storm) and set the baseline, the highest RSS after any of them; the storm is
the fourth.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from ..integration.clients import wait_for
from .procs import ServerProcess, build_loadgen, raise_nofile_limit

pytestmark = pytest.mark.slow

CONNS = 10_000


@pytest.fixture(scope="module")
def loadgen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_loadgen(tmp_path_factory.mktemp("loadgen"))


def hold_all(loadgen: Path, port: int, server: ServerProcess) -> tuple[dict, int]:
    """Open CONNS connections at once, hold them, read the server's RSS, drop them
    (reset); the load generator's summary and the RSS while they were held."""
    proc = subprocess.Popen(
        [str(loadgen), "idle", "--port", str(port), "--conns", str(CONNS),
         "--max-pending", str(CONNS), "--setup-timeout", "120", "--hold-max", "120"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holding = json.loads(proc.stdout.readline() or "{}")
        assert holding.get("event") == "holding", (holding, proc.stderr.read()[-2000:])
        wait_for(lambda: server.stats()["connections"] == CONNS, timeout=60,
                 what="every connection open on the server")
        held_kib = server.rss_kib()
        out, err = proc.communicate("done\n", timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = json.loads(out.strip().splitlines()[-1])
    wait_for(lambda: server.stats()["connections"] == 0, timeout=60, what="every close seen")
    return {**holding, **result}, held_kib


def test_ten_thousand_clients_reconnecting_at_once_all_get_in(loadgen, tmp_path):
    assert raise_nofile_limit() >= CONNS + 200, "needs an open-files limit above 10,200"
    with ServerProcess("soak", tmp_path / "server.log", ping_interval=None,
                       max_message_size=1 << 16) as server:
        # The heap a fresh process grows into depends on how many handshakes
        # overlapped in each round, so the baseline is the highest RSS seen
        # after a warm-up round, over three of them.
        baseline_kib = 0
        for _ in range(3):
            first, _ = hold_all(loadgen, server.port, server)
            assert first["still_open"] == CONNS, first
            server.stats("trim=1")          # collect, and hand glibc's free pages back
            baseline_kib = max(baseline_kib, server.rss_kib())

        storm, held_kib = hold_all(loadgen, server.port, server)
        server.stats("trim=1")
        after_kib = server.rss_kib()
        print(f"\nstorm: {CONNS:,} reconnected in {storm['setup_s']:.2f}s; RSS "
              f"{baseline_kib / 1024:.1f} MiB at most after three warm-up rounds, {held_kib / 1024:.1f} "
              f"MiB with all held, {after_kib / 1024:.1f} MiB after the storm")
        for key in ("connect_errors", "handshake_errors", "server_closed"):
            assert storm[key] == 0, (key, storm)
        assert storm["still_open"] == CONNS, storm
        assert after_kib <= baseline_kib * 1.10, (after_kib, baseline_kib)
        assert server.stop() == 0
