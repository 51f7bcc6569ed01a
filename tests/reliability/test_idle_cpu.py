"""A server whose handlers await (a slow request, an async message handler
waiting on a database) sits idle meanwhile: it must not spin a core.

fastws keeps its loop's ready queue from waiting behind busy sockets while one
of its tasks runs (``Flusher.press``); pressing again every loop iteration for
as long as a task lives once turned a three-second request into three seconds
of one core at 100 %. The bound below is on the server's CPU time (from /proc),
not on a duration: an idle server uses next to none of it, a spinning one as
much as the wait lasts.
"""

from __future__ import annotations

import os
import urllib.request

import pytest

from ..integration.clients import ws_connect
from .procs import ServerProcess

WAIT = 2.0
AT_MOST = 0.25          # of the wait, in CPU seconds: a spinning loop uses all of it


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_awaiting_handler_leaves_the_loop_idle(tmp_path, kind):
    with ServerProcess("waiting", tmp_path / "server.log") as server:
        # warm up: imports, the first connection, the first task
        urllib.request.urlopen(server.url("/slow?s=0", "http"), timeout=30).read()
        before = cpu_seconds(server.pid)
        if kind == "http":
            body = urllib.request.urlopen(server.url(f"/slow?s={WAIT}", "http"), timeout=30).read()
            assert body == b"done"
        else:
            with ws_connect(server.url("/slow")) as ws:
                ws.send(str(WAIT))
                assert ws.recv(timeout=30) == str(WAIT)
        used = cpu_seconds(server.pid) - before
        assert used < AT_MOST * WAIT, f"{used:.2f} CPU s while a handler awaited {WAIT} s"
