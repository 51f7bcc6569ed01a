"""The JS client (``clients/js``, npm ``fastws-client``): its own unit tests,
then the recovery scenario against a real server under Node, cut off by a real
proxy (RST, silent stall) while a publisher in another process sends."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest

from tests.npm import node_with_packages
from tests.recovery.harness import Observed, run_scenario

ROOT = Path(__file__).resolve().parents[2]
CLIENT_DIR = ROOT / "clients" / "js"


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the client's dev packages installed."""
    return node_with_packages(CLIENT_DIR, "ws", "the JS client's tests")


def test_the_js_clients_own_tests_pass(node):
    done = subprocess.run([node, "--test"], cwd=CLIENT_DIR, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]


class NodeClient:
    """tests/recovery/js_client.mjs under Node, its lines read into ``Observed``."""

    def __init__(self, node: str, url: str, observed: Observed) -> None:
        self.proc = subprocess.Popen([node, str(Path(__file__).parent / "js_client.mjs"), url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.observed = observed
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        obs = self.observed
        for line in self.proc.stdout:
            self.lines.append(line)
            event = json.loads(line)
            with obs.lock:
                if event["event"] == "message":
                    obs.messages.append((event["n"], event["epoch"], event["offset"]))
                elif event["event"] == "recovered":
                    obs.outcomes.append((event["room"], event["recovered"], event["missed"]))
                elif event["event"] == "open":
                    obs.opens += 1
                elif event["event"] == "close":
                    obs.closes.append(event["code"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


@pytest.mark.parametrize("cut", ["reset", "stall"])
def test_the_js_client_under_node_recovers_exactly_what_it_missed(node, cut):
    run_scenario(lambda proxy, observed: NodeClient(node, proxy.url("/feed/lobby"), observed), cut)
