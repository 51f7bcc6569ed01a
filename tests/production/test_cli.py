"""The real ``fastws`` command in subprocesses: flags, environment, bad values, TLS, a
Unix socket, --factory, --reload, hooks, health through a drain, proxy headers, access logs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from ..cluster.conftest import Node
from ..integration.clients import wait_for, ws_connect
from ..integration.rawws import handshake_request, read_head
from ..reliability.procs import ROOT

APP = "tests.production.app:app"
pytestmark = pytest.mark.timeout(120)


def fastws(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastws", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def http(node: Node, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(node.url(path, "http"), headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def raw_request(port: int, request: bytes) -> bytes:
    """The head of the answer to ``request`` sent on a raw socket."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        return read_head(s)


@pytest.mark.parametrize("args, env, names", [
    (["--port", "abc"], {}, "--port"),
    (["--ws-max-size", "big"], {}, "--ws-max-size"),
    (["--ws-ping-interval", "-1"], {}, "ping_interval"),
    (["--ws-backpressure", "drop"], {}, "backpressure"),
    (["--log-level", "loud"], {}, "--log-level"),
    (["--workers", "0"], {}, "--workers"),
    ([], {"FASTWS_WS_PING_TIMEOUT": "soon"}, "FASTWS_WS_PING_TIMEOUT='soon'"),
    (["--ws-max-message-size", "big"], {}, "--ws-max-message-size"),
    (["--ws-ping-timeout", "0"], {}, "--ws-ping-timeout"),
    ([], {"FASTWS_PORT": "x"}, "FASTWS_PORT"),
    (["--ssl-keyfile", "k.pem"], {}, "--ssl-certfile"),
    (["--forwarded-allow-ips", "somewhere", "--proxy-headers"], {}, "forwarded_allow_ips"),
])
def test_bad_values_name_the_flag_and_exit_2(args, env, names):
    done = fastws(APP, *args, env=env)
    assert done.returncode == 2, done.stderr
    assert names in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_version():
    done = fastws("--version")
    assert done.returncode == 0 and done.stdout.startswith("fastws ")


def test_ws_limits_from_flags_and_from_the_environment(tmp_path):
    for extra, env in ((("--ws-max-size", "100"), {}), ((), {"FASTWS_WS_MAX_SIZE": "100"})):
        with Node(tmp_path / "limits.log", env, app=APP, extra=extra) as node:
            with ws_connect(node.url("/ws")) as ws:
                ws.recv()
                ws.send("x" * 50)
                assert ws.recv() == "x" * 50
                ws.send("x" * 200)
                with pytest.raises(ConnectionClosed) as info:
                    ws.recv()
                assert info.value.rcvd.code == 1009


def test_tls_from_files_and_factory(tmp_path):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    client = ssl.create_default_context()
    ca.configure_trust(client)
    extra = ("--ssl-certfile", str(tmp_path / "cert.pem"), "--ssl-keyfile", str(tmp_path / "key.pem"),
             "--factory")
    with Node(tmp_path / "tls.log", {}, app="tests.production.app:make_app", extra=extra) as node:
        with ws_connect(node.url("/ws", "wss"), ssl=client) as ws:
            assert ws.recv() == "127.0.0.1 https"


def test_unix_socket(tmp_path):
    path = str(tmp_path / "fastws.sock")
    node = Node(tmp_path / "uds.log", {}, app=APP, extra=("--uds", path))
    node.start(wait=False)
    try:
        wait_for(lambda: os.path.exists(path), timeout=30, what="the socket file")
        from websockets.sync.client import unix_connect
        with unix_connect(path, uri="ws://localhost/ws") as ws:
            assert ws.recv().endswith(" http")
            ws.send("over uds")
            assert ws.recv() == "over uds"
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(30) == 0
        assert not os.path.exists(path)
    finally:
        node.kill()


def test_reload_serves_the_changed_file(tmp_path):
    pytest.importorskip("watchfiles")
    appdir = tmp_path / "src"
    appdir.mkdir()
    shutil.copy(Path(__file__).with_name("app.py"), appdir / "reloaded.py")
    env = {"PYTHONPATH": str(appdir)}
    with Node(tmp_path / "reload.log", env, app="reloaded:app", cwd=appdir,
              extra=("--reload",)) as node:
        wait_for(lambda: http(node, "/version")[1] == b"1", timeout=30, what="version 1")
        text = (appdir / "reloaded.py").read_text().replace('VERSION = "1"', 'VERSION = "2"')
        (appdir / "reloaded.py").write_text(text)
        wait_for(lambda: http(node, "/version")[1] == b"2", timeout=30, what="version 2 after the change")


def test_startup_and_shutdown_hooks_run_in_order_and_a_failing_one_stops_the_start(tmp_path):
    hooks = tmp_path / "hooks.txt"
    with Node(tmp_path / "hooks.log", {"PROD_HOOKS": str(hooks)}, app=APP) as node:
        assert http(node, "/version")[0] == 200
        assert hooks.read_text().splitlines() == ["startup 1", "startup 2"]
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(30) == 0
    assert hooks.read_text().splitlines() == ["startup 1", "startup 2", "shutdown"]
    done = fastws(APP, "--port", "0", env={"PROD_FAIL_STARTUP": "1"})
    assert done.returncode == 1
    assert "startup hook second failed: RuntimeError: the database is not there" in done.stderr
    assert "Traceback" not in done.stderr


def test_health_answers_503_while_draining(tmp_path):
    extra = ("--health-path", "/healthz", "--ws-drain-window", "3")
    with Node(tmp_path / "health.log", {}, app=APP, extra=extra) as node:
        assert http(node, "/healthz") == (200, b"ok")
        ws = ws_connect(node.url("/ws"))
        ws.recv()
        node.proc.send_signal(signal.SIGTERM)
        wait_for(lambda: http(node, "/healthz")[0] == 503, timeout=10, what="503 while draining")
        refused = raw_request(node.port, handshake_request("/ws"))
        assert refused.startswith(b"HTTP/1.1 503"), refused[:60]
        with pytest.raises(ConnectionClosed) as info:
            while True:
                ws.recv(timeout=20)
        assert info.value.rcvd.code == 1001
        assert node.proc.wait(30) == 0


def test_proxy_headers_from_trusted_and_untrusted_peers(tmp_path):
    chain = {"X-Forwarded-For": "6.6.6.6, 198.51.100.7", "X-Forwarded-Proto": "https"}
    with Node(tmp_path / "trusted.log", {}, app=APP, extra=("--proxy-headers",)) as node:
        assert json.loads(http(node, "/whoami", chain)[1]) == {"client": "198.51.100.7", "scheme": "https"}
        # One family is believed: under the default, a client's Forwarded is not.
        with ws_connect(node.url("/ws"), additional_headers={"Forwarded": "for=203.0.113.5;proto=https"}) as ws:
            assert ws.recv() == "127.0.0.1 http"
    extra = ("--proxy-headers", "--forwarded-header", "forwarded")
    with Node(tmp_path / "forwarded.log", {}, app=APP, extra=extra) as node:
        with ws_connect(node.url("/ws"), additional_headers={"Forwarded": "for=203.0.113.5;proto=https"}) as ws:
            assert ws.recv() == "203.0.113.5 https"
        assert json.loads(http(node, "/whoami", chain)[1]) == {"client": "127.0.0.1", "scheme": "http"}
    # a per-address cap counts the real clients, not the proxy
    extra = ("--proxy-headers", "--ws-max-connections-per-ip", "1")
    with Node(tmp_path / "caps.log", {}, app=APP, extra=extra) as node:
        a = ws_connect(node.url("/ws"), additional_headers={"X-Forwarded-For": "192.0.2.1"})
        b = ws_connect(node.url("/ws"), additional_headers={"X-Forwarded-For": "192.0.2.2"})
        again = raw_request(node.port, handshake_request(
            "/ws", extra=[("X-Forwarded-For", "192.0.2.1")]))
        assert again.startswith(b"HTTP/1.1 429"), again[:40]
        a.close(); b.close()
    # the peer is not in the allow list: the headers are ignored
    extra = ("--proxy-headers", "--forwarded-allow-ips", "10.9.9.9")
    with Node(tmp_path / "untrusted.log", {}, app=APP, extra=extra) as node:
        assert json.loads(http(node, "/whoami", chain)[1]) == {"client": "127.0.0.1", "scheme": "http"}
    # without --proxy-headers nothing is believed
    with Node(tmp_path / "off.log", {}, app=APP) as node:
        assert json.loads(http(node, "/whoami", chain)[1])["client"] == "127.0.0.1"


def test_access_log_lines_with_secrets_redacted(tmp_path):
    log = tmp_path / "access.log"
    with Node(log, {}, app=APP, extra=("--access-log", "--log-format", "json")) as node:
        assert http(node, "/version?token=s3cret&page=2")[0] == 200
        with ws_connect(node.url("/ws?token=s3cret&room=lobby")) as ws:
            ws.recv()
            for i in range(3):
                ws.send(f"m{i}")
                ws.recv()
        wait_for(lambda: '"kind": "close"' in node.log(), timeout=10, what="the close line")
    text = log.read_text()
    assert "s3cret" not in text
    records = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    access = [r for r in records if r["logger"] == "fastws.access"]
    http_line = next(r for r in access if r["kind"] == "http")
    assert http_line["status"] == 200 and http_line["path"] == "/version"
    assert http_line["query"] == "token=***&page=2"
    up = next(r for r in access if r["kind"] == "upgrade")
    assert up["status"] == 101 and up["query"] == "token=***&room=lobby"
    close = next(r for r in access if r["kind"] == "close")
    assert close["code"] == 1000 and close["closed_by"] == "client"
    assert close["messages_in"] == 3 and close["messages_out"] == 4     # the greeting + 3 echoes
    assert close["bytes_in"] > 0 and close["bytes_out"] > 0


def test_the_readme_documents_every_flag():
    from fastws.__main__ import build_parser
    readme = (ROOT / "README.md").read_text()
    missing = [o for a in build_parser()._actions for o in a.option_strings
               if o.startswith("--") and o != "--help" and f"`{o}`" not in readme]
    assert missing == [], missing


def test_fd_serves_an_inherited_listening_socket(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "fastws", APP, "--fd", str(sock.fileno())],
                            cwd=ROOT, pass_fds=[sock.fileno()], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    sock.close()            # the child holds it now
    try:
        def answers() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=2) as r:
                    return r.read() == b"1"
            except OSError:
                return False
        wait_for(answers, timeout=30, what="the app on the inherited socket")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_log_config_from_a_json_dictconfig(tmp_path):
    out = tmp_path / "configured.log"
    config = {"version": 1, "formatters": {"plain": {"format": "CONFIGURED %(name)s %(message)s"}},
              "handlers": {"file": {"class": "logging.FileHandler", "filename": str(out),
                                    "formatter": "plain"}},
              "root": {"handlers": ["file"], "level": "INFO"}}
    (tmp_path / "log.json").write_text(json.dumps(config))
    extra = ("--log-config", str(tmp_path / "log.json"), "--access-log")
    with Node(tmp_path / "n.log", {}, app=APP, extra=extra) as node:
        assert http(node, "/version")[0] == 200
        wait_for(lambda: out.exists() and "CONFIGURED fastws.access" in out.read_text(),
                 timeout=10, what="the access line through the configured handler")
    bad = fastws(APP, "--log-config", str(tmp_path / "missing.json"))
    assert bad.returncode == 2 and "--log-config" in bad.stderr
