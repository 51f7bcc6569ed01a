"""Every snippet the README and the docs mark runnable runs: started as the
text around it says (``python main.py`` where it calls ``app.run()``, and the
``fastws`` command on it either way), asked one request or round trip, stopped
with SIGINT, exit status 0, no traceback and no ERROR in its log.

A snippet is marked by an HTML comment on the line before its fence (invisible
on GitHub and in the built docs):

- ``<!-- runnable: serve -->``: it starts and answers HTTP (any status below 500);
- ``<!-- runnable: http PATH STATUS -->``: GET PATH answers STATUS;
- ``<!-- runnable: echo PATH -->``: a WebSocket at PATH answers "hello" with a
  message that contains it;
- ``<!-- runnable: room PATH -->``: two WebSockets at PATH; what the second sends
  reaches the first;
- ``<!-- runnable: client EXPECTED -->``: a client, run against the page's
  previous runnable server; its output contains EXPECTED.

Port 3000 in a snippet is replaced by a free port (a snippet must name it).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import InvalidHandshake

from .clients import free_port, http_status, wait_for, ws_connect
from ..reliability.procs import ROOT

pytestmark = pytest.mark.timeout(120)

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MARK = re.compile(r"^<!-- runnable: (.+?) -->\n```(\w+)\n(.*?)^```", re.M | re.S)


@dataclass
class Snippet:
    doc: Path
    line: int
    check: list[str]
    code: str
    server: Snippet | None = None       # for a client: the server it talks to

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"


def snippets() -> list[Snippet]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        server = None
        for m in MARK.finditer(text):
            kind, _, rest = m.group(1).partition(" ")
            args = [rest] if kind == "client" else rest.split()
            snippet = Snippet(doc, text[:m.start()].count("\n") + 2, [kind, *args], m.group(3))
            if snippet.check[0] == "client":
                snippet.server = server
            else:
                server = snippet
            found.append(snippet)
    return found


SNIPPETS = snippets()


def with_port(code: str, port: int) -> str:
    if "app.run(" in code or "connect(" in code:
        assert "3000" in code, "a runnable snippet that picks a port picks 3000 (replaced here)"
    return re.sub(r"\b3000\b", str(port), code)


def check(snippet: Snippet, port: int) -> None:
    kind, *args = snippet.check
    if kind == "serve":
        status = http_status(port, "/")
        assert status is not None and status < 500, status
    elif kind == "http":
        path, status = args
        assert http_status(port, path) == int(status)
    elif kind == "echo":
        with ws_connect(f"ws://127.0.0.1:{port}{args[0]}") as ws:
            ws.send("hello")
            assert "hello" in ws.recv(timeout=10)
    elif kind == "room":
        url = f"ws://127.0.0.1:{port}{args[0]}"
        with ws_connect(url) as first, ws_connect(url) as second:
            # The first must be in the room before the second speaks: it
            # hears the second's arrival first, if the snippet announces one.
            try:
                first.recv(timeout=1)
            except TimeoutError:
                pass
            second.send("hello")
            wait_for(lambda: "hello" in str(first.recv(timeout=10)), timeout=10,
                     what="the message in the room")
    else:
        raise AssertionError(f"unknown check {kind!r}")


class Served:
    """A snippet serving on a free port, in its own process."""

    def __init__(self, tmp: Path, snippet: Snippet, how: str) -> None:
        self.port = free_port()
        (tmp / "snippet_app.py").write_text(with_port(snippet.code, self.port))
        argv = ([sys.executable, "snippet_app.py"] if how == "python" else
                [sys.executable, "-m", "fastws", "snippet_app:app", "--port", str(self.port)])
        self.log = tmp / f"{how}.log"
        self._out = open(self.log, "wb")
        self.proc = subprocess.Popen(argv, cwd=tmp, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONPATH": str(tmp)})
        wait_for(lambda: self.proc.poll() is not None or http_status(self.port, "/") is not None,
                 timeout=30, what=f"{snippet.id} to serve")
        assert self.proc.poll() is None, self.text()

    def text(self) -> str:
        self._out.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        assert self.proc.wait(30) == 0, self.text()
        self._out.close()
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def ways_to_run(snippet: Snippet) -> list[str]:
    """How the text around a server snippet says to run it."""
    if "app.run(" not in snippet.code:
        return ["command"]
    assert 'if __name__ == "__main__":' in snippet.code, \
        f"{snippet.id}: app.run() must be guarded, so that the fastws command can serve it too"
    return ["python", "command"]


def test_the_docs_mark_snippets_runnable():
    ids = {s.id.split(":")[0] for s in SNIPPETS}
    assert "README.md" in ids and "docs/index.md" in ids, ids
    assert any(s.check[0] == "client" for s in SNIPPETS)


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.check[0] != "client"],
                         ids=lambda s: s.id)
def test_a_runnable_snippet_serves(snippet, tmp_path):
    if "backplane(" in snippet.code:
        from ..cluster.conftest import need_redis, redis_ping
        need_redis(redis_ping(6379), "Redis on 127.0.0.1:6379")
    for how in ways_to_run(snippet):
        run_dir = tmp_path / how
        run_dir.mkdir()
        served = Served(run_dir, snippet, how)
        try:
            check(snippet, served.port)
            log = served.stop()
        finally:
            served.kill()
        assert "Traceback" not in log and " ERROR " not in log, log
        assert "calls app.run()" not in log, log


@pytest.mark.parametrize("snippet", [s for s in SNIPPETS if s.check[0] == "client"],
                         ids=lambda s: s.id)
def test_a_runnable_client_snippet_talks_to_its_server(snippet, tmp_path):
    assert snippet.server is not None, f"{snippet.id}: a client needs a runnable server before it"
    served = Served(tmp_path, snippet.server, ways_to_run(snippet.server)[0])
    try:
        (tmp_path / "client.py").write_text(with_port(snippet.code, served.port))
        done = subprocess.run([sys.executable, "client.py"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert snippet.check[1] in done.stdout, done.stdout
        served.stop()
    finally:
        served.kill()


def test_the_checks_can_fail(tmp_path):
    # A snippet that serves nothing at the path, or answers another status,
    # fails its check: the test above cannot pass by not looking.
    code = ('from fastws import create_app, websocket\napp = create_app()\n'
            'app.use(websocket())\n@app.get("/x")\ndef x():\n    return "x"\n')
    snippet = Snippet(ROOT / "README.md", 0, ["http", "/x", "201"], code)
    served = Served(tmp_path, snippet, "command")
    try:
        with pytest.raises(AssertionError):
            check(snippet, served.port)
        with pytest.raises(InvalidHandshake):
            check(Snippet(snippet.doc, 0, ["echo", "/nowhere"], code), served.port)
    finally:
        served.kill()
