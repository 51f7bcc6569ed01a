#!/usr/bin/env python3
"""Smoke-test the commands the READMEs tell a user to type, in a fresh clone.

    python .ci/smoke.py [--python X.Y] CLONE_DIR 'RUN COMMAND'

1. Runs the README's run command verbatim (``bash -c``) in CLONE_DIR, a clone with
   no build in it: it creates a venv, installs the package (not editable) and
   starts the chat demo on port 3000. Then: fetches the demo page, has two clients
   join one room and chat (each message reaches the other), sends SIGTERM to the
   server's own Python process (not to the shell around the ``&&`` chain) and
   expects exit status 0 with no process of the command left behind. With
   ``--python X.Y`` the venv the command made must be of that CPython version (the
   caller puts that version's ``python3`` first on PATH).
2. With that venv's ``python`` and ``fastws`` first on PATH, serves every example of
   ``examples/README.md`` both ways the README gives (``python -m examples.NAME``
   and ``fastws examples.NAME:app --port 3000``), opens each WebSocket URL its row
   names, fetches each ``curl`` URL, runs each client command, and stops the server
   with SIGTERM expecting exit 0.

Needs the ``websockets`` client library in the interpreter that runs it (the
server's venv does not have it: it is a user's plain install). Every wait is
bounded; on failure it prints the server's output and exits 1.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

PORT = 3000             # what the README and every example serve on
INSTALL_TIMEOUT = 900   # venv + pip install . (compiles the Cython extensions)
START_TIMEOUT = 30
STOP_TIMEOUT = 30


class SmokeFailed(Exception):
    """A documented command did not do what its README says."""


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def group_pids(pgid: int) -> list[int]:
    """Every live process in process group ``pgid``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry))
    return pids


def cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


class Command:
    """A shell command line started in its own process group, output to a file."""

    def __init__(self, line: str, cwd: Path, env: dict[str, str]) -> None:
        self.line = line
        self.log = tempfile.NamedTemporaryFile(prefix="smoke-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(["bash", "-c", line], cwd=cwd, env=env,
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    def fail(self, why: str) -> SmokeFailed:
        return SmokeFailed(f"{self.line!r}: {why}\n--- its output ---\n{self.output()[-4000:]}")

    def python_pid(self, marker: str) -> int:
        """The server's own process: the member of our process group whose
        command line mentions ``marker`` and that is not the shell."""
        for pid in group_pids(self.proc.pid):
            argv = cmdline(pid)
            if argv and not Path(argv[0]).name.startswith("bash") and \
                    any(marker in a for a in argv[1:]):
                return pid
        raise self.fail(f"no process running {marker!r} in its process group")

    def wait_ready(self, timeout: float, ready) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with status {self.proc.returncode} before it served")
            if ready():
                return
            time.sleep(0.5)
        raise self.fail(f"not serving after {timeout:.0f} s")

    def terminate(self, marker: str) -> None:
        """SIGTERM to the server's Python process; expect 0 and nothing left."""
        pid = self.python_pid(marker)
        os.kill(pid, signal.SIGTERM)
        try:
            # bash passes on the status of the last command of the chain, which
            # is the server's (when bash exec'd it, it is the same process).
            status = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise self.fail(f"still running {STOP_TIMEOUT} s after SIGTERM") from None
        finally:
            left = group_pids(self.proc.pid)
            self.kill()
        if status != 0:
            raise self.fail(f"exit status {status} after SIGTERM, expected 0")
        if left:
            raise self.fail(f"processes left behind after exit: {left}")

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return resp.status, resp.read().decode("utf-8", "replace")


def serving(port: int):
    def ready() -> bool:
        try:
            return http_get(f"http://127.0.0.1:{port}/")[0] > 0
        except urllib.error.HTTPError:
            return True         # any HTTP answer means it serves (404 at / is fine)
        except OSError:
            return False
    return ready


def next_chat(ws: Any, user: str) -> dict[str, Any]:
    """The next chat message from ``user`` that a demo client receives (not the
    page's live room count, a "joined" line, or its own messages coming back)."""
    while True:
        raw = ws.recv(timeout=10)
        try:
            message = json.loads(raw)
        except ValueError:
            continue                                    # "bob joined the room"
        if isinstance(message, dict) and message.get("user") == user:
            return message


def venv_version(clone: Path) -> str:
    done = subprocess.run([str(clone / ".venv" / "bin" / "python"), "-c",
                           "import sys; print('%d.%d' % sys.version_info[:2])"],
                          capture_output=True, text=True, timeout=60)
    return done.stdout.strip()


def check_demo(clone: Path, run_command: str, python: str | None) -> None:
    """Part 1: the README's run command, verbatim, in the fresh clone."""
    cmd = Command(run_command, clone, dict(os.environ))
    try:
        cmd.wait_ready(INSTALL_TIMEOUT, serving(PORT))
        if python is not None and venv_version(clone) != python:
            raise cmd.fail(f"the venv runs CPython {venv_version(clone)!r}, not {python}")
        status, page = http_get(f"http://127.0.0.1:{PORT}/")
        if status != 200 or "fastws chat" not in page:
            raise cmd.fail(f"GET / answered {status} without the chat page")
        room = f"ws://127.0.0.1:{PORT}/chat/smoke"
        with connect(f"{room}?user=alice", open_timeout=10, close_timeout=5, proxy=None) as alice, \
                connect(f"{room}?user=bob", open_timeout=10, close_timeout=5, proxy=None) as bob:
            for name, sender, receiver, text in (("alice", alice, bob, "hello bob"),
                                                 ("bob", bob, alice, "hi alice")):
                sender.send(json.dumps({"type": "message", "content": text}))
                got = next_chat(receiver, name)
                if got.get("message") != text:
                    raise cmd.fail(f"chat between two clients: sent {text!r}, the other got {got!r}")
        cmd.terminate("fastws.demo")
    except BaseException:
        cmd.kill()
        raise
    version = f" on CPython {python}" if python else ""
    print(f"smoke: README run command OK{version} (page, two clients chat, SIGTERM -> exit 0)")


def example_rows(readme: Path) -> list[dict[str, list[str]]]:
    """From examples/README.md's table: per row, its commands, ws:// URLs and curl URLs."""
    rows = []
    for line in readme.read_text().splitlines():
        if not line.startswith("| `") or ".py`" not in line.split("|")[1]:
            continue
        cells = re.findall(r"`([^`]*)`", line.split("|")[3])
        rows.append({
            "name": line.split("`")[1].removesuffix(".py"),
            "servers": [c for c in cells if "python -m examples." in c and not c.endswith(" client")],
            "clients": [c for c in cells if "python -m examples." in c and c.endswith(" client")],
            "installs": [c for c in cells if c.startswith("pip install ")],
            "urls": [c for c in cells if c.startswith("ws://")],
            "curls": [c.split()[-1] for c in cells if c.startswith("curl ")],
        })
    if len(rows) < 10:
        raise SmokeFailed(f"examples/README.md: expected a row per example, found {len(rows)}")
    return rows


def exercise(cmd: Command, row: dict[str, list[str]], clone: Path, env: dict[str, str]) -> None:
    for url in row["urls"]:
        try:
            with connect(url, open_timeout=10, close_timeout=5, proxy=None):
                pass
        except Exception as exc:
            raise cmd.fail(f"WebSocket {url} failed: {exc!r}") from None
    for url in row["curls"]:
        url = url if "://" in url else "http://" + url
        status, _ = http_get(url)
        if status != 200:
            raise cmd.fail(f"GET {url} answered {status}")
    for install in row["installs"]:
        done = subprocess.run(["bash", "-c", install], cwd=clone, env=env, timeout=300,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise cmd.fail(f"{install!r} exited {done.returncode}: {done.stdout}{done.stderr}")
    for client in row["clients"]:
        done = subprocess.run(["bash", "-c", client], cwd=clone, env=env, timeout=60,
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise cmd.fail(f"client {client!r} exited {done.returncode}: {done.stdout}{done.stderr}")


def check_examples(clone: Path) -> None:
    """Part 2: every example, as examples/README.md tells a user to run it."""
    env = dict(os.environ)
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    for row in example_rows(clone / "examples" / "README.md"):
        if not row["servers"]:
            raise SmokeFailed(f"examples/README.md row {row['name']!r} names no command")
        env_prefix = row["servers"][0].split("python -m")[0]
        lines = row["servers"] + [f"{env_prefix}fastws examples.{row['name']}:app --port {PORT}"]
        for line in lines:
            marker = f"examples.{row['name']}"
            cmd = Command(line, clone, env)
            try:
                cmd.wait_ready(START_TIMEOUT, serving(PORT))
                exercise(cmd, row, clone, env)
                cmd.terminate(marker)
            except BaseException:
                cmd.kill()
                raise
            print(f"smoke: {line} OK")


def main(argv: list[str]) -> int:
    python = None
    if len(argv) == 5 and argv[1] == "--python":
        python, argv = argv[2], argv[:1] + argv[3:]
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    clone, run_command = Path(argv[1]).resolve(), argv[2]
    if port_in_use(PORT):
        print(f"smoke: port {PORT} is in use; the README's commands serve on it", file=sys.stderr)
        return 1
    try:
        check_demo(clone, run_command, python)
        check_examples(clone)
    except (SmokeFailed, OSError, subprocess.SubprocessError) as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
