"""A newcomer's first hour: each mistake, made for real through ``python app.py``
and the ``fastws`` command in subprocesses, ends with a line or two on stderr
that names the fix, no traceback, and the documented exit status."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ..integration.clients import free_port, http_status, wait_for
from ..reliability.procs import ROOT, listening_port

pytestmark = pytest.mark.timeout(120)

APP = '''
from fastws import create_app, websocket

app = create_app()
app.use(websocket())


@app.ws("/echo")
def echo(ws, ctx):
    ws.on("message", ws.send)
'''


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def env_for(directory: Path) -> dict[str, str]:
    # The app's directory first (as `python app.py` and the command would
    # find it), the checkout's tests package reachable too.
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(directory), str(ROOT)]),
            "PYTHONUNBUFFERED": "1"}


def run(directory: Path, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *argv], cwd=directory, capture_output=True, text=True,
                          timeout=timeout, env=env_for(directory), stdin=subprocess.DEVNULL)


def fastws(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return run(directory, "-m", "fastws", *args)


def problem(stderr: str) -> list[str]:
    """stderr without the log lines of a start (a timestamp and a level)."""
    log_line = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+ (DEBUG|INFO|WARNING) ")
    return [line for line in stderr.splitlines() if line.strip() and not log_line.match(line)]


def assert_short(done: subprocess.CompletedProcess, status: int, *names: str,
                 lines: int = 1) -> str:
    """Exit ``status``; stderr is at most ``lines`` lines, no traceback, and
    names each of ``names``."""
    text = "\n".join(problem(done.stderr))
    assert done.returncode == status, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert 1 <= len(problem(done.stderr)) <= lines, done.stderr
    for name in names:
        assert name in text, f"{name!r} not in:\n{done.stderr}"
    return text


class Holder:
    """A socket that holds a port, as another server would."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]

    def __enter__(self) -> Holder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


# ------------------------------------------------------------------ 1. app.run and the command

def test_the_command_serves_a_module_that_calls_app_run_when_imported(tmp_path):
    # The README's first snippet as it was: app.run() unguarded at the end.
    own, wanted = free_port(), free_port()
    write(tmp_path, "main.py", APP + f"\napp.run(port={own})\n")
    proc = subprocess.Popen([sys.executable, "-m", "fastws", "main:app", "--port", str(wanted)],
                            cwd=tmp_path, env=env_for(tmp_path), stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listening_port(proc.pid) or proc.poll() is not None, timeout=30,
                 what="the server to listen")
        # The command's --port is served, and nothing on the module's own port.
        assert listening_port(proc.pid) == wanted
        assert http_status(wanted, "/echo") == 426
        assert http_status(own) is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0       # one server, stopped once: no second one after it
        stderr = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    warning = [line for line in stderr.splitlines() if "calls app.run()" in line]
    assert len(warning) == 1, stderr
    assert "main.py, line 12" in warning[0] and 'if __name__ == "__main__":' in warning[0]
    assert "Traceback" not in stderr
    assert stderr.count("fastws serving on") == 1, stderr


def test_a_second_run_while_one_serves_is_refused(tmp_path):
    port = free_port()
    write(tmp_path, "twice.py", APP + f'''
import os, signal, threading, urllib.error, urllib.request

def second():
    try:
        app.run(port=0)
    except RuntimeError as exc:
        print("refused:", exc, flush=True)
    # SIGINT once the first run() answers, so its signal handlers are in place.
    while True:
        try:
            urllib.request.urlopen("http://127.0.0.1:{port}/", timeout=5)
        except urllib.error.HTTPError:
            break
        except OSError:
            pass
    os.kill(os.getpid(), signal.SIGINT)

app.on_startup(lambda: threading.Thread(target=second).start())
app.run(port={port})
''')
    done = run(tmp_path, "twice.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: app.run() is already serving this app"), done.stdout
    assert "call it once" in done.stdout


def test_app_run_inside_a_running_loop_says_to_await_serve(tmp_path):
    write(tmp_path, "inloop.py", APP + '''
import asyncio

async def main():
    try:
        app.run(port=0)
    except RuntimeError as exc:
        print(exc)

asyncio.run(main())
''')
    done = run(tmp_path, "inloop.py")
    assert done.returncode == 0, done.stderr
    assert "await app.serve(...)" in done.stdout


# ------------------------------------------------------------------ 2. the port is taken

def test_a_taken_port_is_one_line_from_python_app_py(tmp_path):
    with Holder() as held:
        write(tmp_path, "app.py", APP + f"\nif __name__ == '__main__':\n    app.run(port={held.port})\n")
        done = run(tmp_path, "app.py")
    assert_short(done, 1, f"127.0.0.1:{held.port}", "already in use", "port=")


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_port_is_one_line_from_the_command(tmp_path, workers):
    write(tmp_path, "app.py", APP)
    with Holder() as held:
        done = fastws(tmp_path, "app:app", "--port", str(held.port), "--workers", str(workers),
                      "--allow-split-rooms")
    assert_short(done, 1, f"127.0.0.1:{held.port}", "already in use", "--port")


def test_a_host_that_is_not_here_is_one_line(tmp_path):
    write(tmp_path, "app.py", APP)
    done = fastws(tmp_path, "app:app", "--host", "no-such-host.invalid", "--port", "0")
    assert_short(done, 1, "no-such-host.invalid", "does not resolve", "--host")
    done = fastws(tmp_path, "app:app", "--uds", str(tmp_path / "missing" / "app.sock"))
    assert_short(done, 1, "missing/app.sock", "directory does not exist", "--uds")


# ------------------------------------------------------------------ 3. the command pointed at the wrong thing

def test_a_factory_without_factory_suggests_the_flag(tmp_path):
    write(tmp_path, "app.py", '''
from fastws import create_app, websocket

def make_app():
    app = create_app()
    app.use(websocket())
    return app
''')
    text = assert_short(fastws(tmp_path, "app:make_app"), 1, "app:make_app", "function",
                        "--factory")
    assert "not a fastws App" in text
    # ...and with it, it serves.
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastws", "app:make_app", "--factory",
                             "--port", str(port)], cwd=tmp_path, env=env_for(tmp_path),
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_status(port) == 404, timeout=30, what="the factory's app")
    finally:
        proc.kill()
        proc.wait()


def test_a_path_instead_of_a_module_suggests_module_app(tmp_path):
    write(tmp_path, "app.py", APP)
    assert_short(fastws(tmp_path, "app.py"), 1, "fastws app:app")
    (tmp_path / "pkg").mkdir()
    write(tmp_path / "pkg", "chat.py", APP)
    assert_short(fastws(tmp_path, "pkg/chat.py"), 1, "fastws pkg.chat:app")
    assert_short(fastws(tmp_path, "./app.py"), 1, "fastws app:app")
    assert_short(fastws(tmp_path / "pkg", str(tmp_path / "app.py")), 1,
                 f"cd {tmp_path} && fastws app:app")


def test_the_wrong_attribute_names_the_app_that_is_there(tmp_path):
    write(tmp_path, "main.py", "from fastws import create_app\nserver = create_app()\n")
    assert_short(fastws(tmp_path, "main"), 1, "no attribute 'app'", "fastws main:server")


def test_an_asgi_app_is_told_to_mount_it(tmp_path):
    pytest.importorskip("fastapi")
    write(tmp_path, "api.py", "from fastapi import FastAPI\napp = FastAPI()\n")
    assert_short(fastws(tmp_path, "api:app"), 1, "not a fastws App", "mount")


def test_a_missing_websocket_plugin_shows_the_message_not_importlib(tmp_path):
    write(tmp_path, "nows.py", '''
from fastws import create_app

app = create_app()


@app.ws("/echo")
def echo(ws, ctx):
    pass
''')
    text = assert_short(fastws(tmp_path, "nows:app"), 1, "nows.py, line 7",
                        "app.use(websocket())", lines=3)
    assert "importlib" not in text and "frozen" not in text


def test_a_bug_in_the_module_shows_the_module_s_frames_only(tmp_path):
    write(tmp_path, "buggy.py", APP + "\nsetting = undefined_name + 1\n")
    done = fastws(tmp_path, "buggy:app")
    assert done.returncode == 1
    assert "NameError: name 'undefined_name' is not defined" in done.stderr
    assert "buggy.py\", line 12" in done.stderr
    assert "importlib" not in done.stderr and "runpy" not in done.stderr, done.stderr
    assert "fastws/__main__.py" not in done.stderr


def test_a_syntax_error_is_shown_with_its_line(tmp_path):
    write(tmp_path, "broken.py", "from fastws import create_app\napp = create_app(\n")
    done = fastws(tmp_path, "broken:app")
    assert done.returncode == 1
    assert "broken.py" in done.stderr and "SyntaxError" in done.stderr
    assert "importlib" not in done.stderr and "Traceback" not in done.stderr


# ------------------------------------------------------------------ 4. app.run's keywords

@pytest.mark.parametrize("call, names", [
    ("app.run(acces_log=True)", ["unknown keyword 'acces_log'", "did you mean access_log?"]),
    ("app.run(max_message_size=1024)", ["websocket()", "app.use(websocket(max_message_size=...))"]),
    ("app.run(port='3000')", ["port must be an int from 0 to 65535", "'3000' (str)"]),
    ("app.run(workers=0)", ["workers must be an int >= 1"]),
    ("app.run(ssl=True)", ["ssl must be an ssl.SSLContext", "load_cert_chain"]),
    ("app.run(health_path='healthz')", ["health_path must start with '/'"]),
    ("app.run(reload_dirs='src')", ["reload_dirs must be a list of directories"]),
])
def test_bad_run_keywords_name_the_fix_and_exit_2(tmp_path, call, names):
    write(tmp_path, "app.py", APP + f"\n{call}\n")
    assert_short(run(tmp_path, "app.py"), 2, "app.run()", *names)


def test_serve_refuses_the_same_keywords_with_an_exception(tmp_path):
    # await app.serve(...) is an API, not a main program: it raises.
    write(tmp_path, "serving.py", APP + '''
import asyncio

async def main():
    try:
        await app.serve(port=0, acess_log=True)
    except TypeError as exc:
        print(exc)

asyncio.run(main())
''')
    done = run(tmp_path, "serving.py")
    assert done.returncode == 0, done.stderr
    assert "app.serve() got an unknown keyword 'acess_log'; did you mean access_log?" in done.stdout


# ------------------------------------------------------------------ 6. TLS

@pytest.fixture
def pems(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    other = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    other.private_key_pem.write_to_path(str(tmp_path / "other-key.pem"))
    write(tmp_path, "app.py", APP)
    return tmp_path


def test_tls_a_missing_file_is_named(pems):
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "nope.pem", "--ssl-keyfile", "key.pem"),
                 2, "--ssl-certfile", "nope.pem", "No such file", lines=2)
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "cert.pem", "--ssl-keyfile", "gone.pem"),
                 2, "--ssl-keyfile", "gone.pem", lines=2)


def test_tls_a_certificate_without_its_key_says_ssl_keyfile(pems):
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "cert.pem"), 2,
                 "cert.pem", "not its private key", "--ssl-keyfile", lines=2)


def test_tls_the_wrong_key_and_files_swapped_are_named(pems):
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "cert.pem", "--ssl-keyfile",
                        "other-key.pem"), 2, "other-key.pem", "not the key of the certificate",
                 lines=2)
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "key.pem", "--ssl-keyfile", "cert.pem"),
                 2, "key.pem", "no PEM certificate", lines=2)


# ------------------------------------------------------------------ 7. the supervisor's "serving"

def test_the_supervisor_says_serving_only_once_its_workers_are(tmp_path):
    write(tmp_path, "app.py", APP)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "fastws", "app:app", "--port", str(port),
                             "--workers", "2", "--allow-split-rooms"], cwd=tmp_path,
                            env=env_for(tmp_path), stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        for line in proc.stderr:
            lines.append(line)
            if "fastws serving on" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    text = "".join(lines)
    assert f"fastws starting on http://127.0.0.1:{port} with 2 workers" in text, text
    assert f"fastws serving on http://127.0.0.1:{port} with 2 workers" in lines[-1], text
    assert text.index("starting on") < text.index("worker 0 ready") < text.index("serving on")
    assert text.index("worker 1 ready") < text.index("serving on")


def test_workers_that_cannot_start_never_say_serving(tmp_path):
    write(tmp_path, "app.py", APP)
    done = fastws(tmp_path, "app:app", "--port", "0", "--workers", "2",
                  "--backplane", "redis://no-such-redis.invalid:6379/0")
    assert done.returncode == 1, done.stderr
    assert "starting on" in done.stderr and "serving on" not in done.stderr, done.stderr
    assert "no-such-redis.invalid" in done.stderr and "giving up" in done.stderr


# ------------------------------------------------------------------ 8. commands the docs give

def fenced_commands(path: Path) -> list[str]:
    text = path.read_text()
    blocks = re.findall(r"^```sh\n(.*?)^```", text, re.M | re.S)
    joined = [re.sub(r"\\\n\s*", "", block) for block in blocks]
    return [line.strip() for block in joined for line in block.splitlines()
            if line.strip().startswith("fastws ")]


@pytest.mark.parametrize("doc", ["README.md", "docs/reference/cli.md"])
def test_every_fastws_command_in_the_docs_names_an_app_of_the_repository(doc):
    commands = fenced_commands(ROOT / doc)
    assert commands, f"no fastws command in a sh block of {doc}"
    sys.path.insert(0, str(ROOT))
    try:
        from fastws.__main__ import load_app
        from fastws.app import App
        for command in commands:
            spec = command.split()[1]
            assert isinstance(load_app(spec), App), command
    finally:
        sys.path.remove(str(ROOT))


# ------------------------------------------------------------------ rough edges of the command

@pytest.mark.parametrize("variable", ["FASTWS_WS_MAX_SIZE", "FASTWS_WS_MAX_MESSAGE_SIZE",
                                      "FASTWS_WS_IDLE_TIMEOUT"])
def test_a_bad_variable_is_named_not_a_flag_never_given(tmp_path, variable):
    write(tmp_path, "app.py", APP)
    done = subprocess.run([sys.executable, "-m", "fastws", "app:app"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60,
                          env={**env_for(tmp_path), variable: "abc"})
    text = assert_short(done, 2, f"{variable}='abc'", lines=2)
    assert "argument --" not in text


def test_every_ws_flag_is_the_option_s_own_name():
    from dataclasses import fields

    from fastws.__main__ import WS_FLAGS, build_parser
    from fastws.options import WebSocketOptions
    names = {f.name for f in fields(WebSocketOptions)}
    for flag, field, _parse, _help in WS_FLAGS:
        assert field in names
        assert flag == "--ws-" + field.replace("_", "-"), flag
    # The old spellings still parse, to the same setting.
    parser = build_parser()
    old = parser.parse_args(["app:app", "--ws-max-size", "5", "--ws-ping-timeout", "7"])
    new = parser.parse_args(["app:app", "--ws-max-message-size", "5", "--ws-idle-timeout", "7"])
    assert (old.ws_max_message_size, old.ws_idle_timeout) == ("5", "7")
    assert (new.ws_max_message_size, new.ws_idle_timeout) == ("5", "7")


def test_tls_an_encrypted_key_asks_for_its_password(pems):
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key((pems / "key.pem").read_bytes(), password=None)
    (pems / "locked.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "cert.pem", "--ssl-keyfile",
                        "locked.pem"), 2, "locked.pem", "encrypted", "--ssl-keyfile-password",
                 lines=2)
    assert_short(fastws(pems, "app:app", "--ssl-certfile", "cert.pem", "--ssl-keyfile",
                        "locked.pem", "--ssl-keyfile-password", "wrong"), 2,
                 "--ssl-keyfile-password", "does not decrypt", "locked.pem", lines=2)


def test_serve_on_a_taken_port_raises_bind_error(tmp_path):
    with Holder() as held:
        write(tmp_path, "serving.py", APP + f'''
import asyncio, errno
from fastws import BindError

async def main():
    try:
        await app.serve(port={held.port})
    except BindError as exc:
        print(exc.errno == errno.EADDRINUSE, isinstance(exc, OSError), exc)

asyncio.run(main())
''')
        done = run(tmp_path, "serving.py")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"True True cannot listen on 127.0.0.1:{held.port}: the address "
                                  "is already in use"), done.stdout


def test_what_run_took_before_the_checks_it_still_takes(tmp_path):
    # 0/1 for switches, a pathlib.Path for uds, a generator of names: read once,
    # so the access log still masks what it names.
    sock_path = tmp_path / "app.sock"
    write(tmp_path, "app.py", APP + f'''
from pathlib import Path
app.run(uds=Path({str(sock_path)!r}), access_log=1, reuse_port=0, backlog=0,
        redact_query=(name for name in ["mytoken"]))
''')
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=tmp_path, env=env_for(tmp_path),
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: sock_path.exists() or proc.poll() is not None, timeout=30,
                 what="the Unix socket")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(sock_path))
            s.sendall(b"GET /x?mytoken=SECRET&page=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 404"), answer
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        stderr = proc.stderr.read()
    finally:
        proc.kill()
        proc.wait()
    assert "/x?mytoken=" in stderr and "page=2" in stderr, stderr
    assert "SECRET" not in stderr, stderr
