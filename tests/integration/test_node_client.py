"""A non-Python client: Node's `ws` package drives examples/chat.py.

tests/node/chat_client.mjs does the talking and checks each step; this test
installs its npm dependencies when missing, serves the example and reads
the JSON lines the script prints. Without `node` the test is skipped, except
on CI (CI=true), where a missing Node is a failure.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import serving
from tests.npm import node_with_packages

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with tests/node's packages installed."""
    return node_with_packages(NODE_DIR, "ws", "the Node `ws` client test")


def test_node_ws_client_chat(node, example):
    mod = example("chat")
    with serving(mod.app) as srv:
        done = subprocess.run([node, str(NODE_DIR / "chat_client.mjs"), srv.url("")],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"node client failed:\n{done.stderr}\n{done.stdout}"
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    seen = [(r["client"], r["event"], r.get("data", r.get("code"))) for r in lines]
    chat = {(r["client"], json.loads(r["data"])["message"]) for r in lines
            if r["event"] == "message" and r["data"].startswith("{")}
    assert ("alice", "message", "Bob joined the room") in seen
    assert chat == {("bob", "hi from node"), ("alice", "Hello!"), ("bob", "héllo wörld ✓")}
    assert ("bob", "message", "Switched to room: general") in seen
    assert ("alice", "message", "Bob left the room") in seen
    assert seen[-1] == ("alice", "close", 1005)
    assert ("bob", "close", 1000) in seen
    # Four things each and nothing more: no client got its own chat message.
    assert len(lines) == 8
