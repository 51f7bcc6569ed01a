"""The release artifacts as a user gets them (slow set).

``python -m build`` makes the sdist and the wheel from this working tree. In CI
that tree already holds an editable build (generated C and compiled modules in
src/fastws/), which must reach neither artifact. Then:

- the sdist holds the sources a build needs and nothing generated;
- the wheel holds a compiled module for each extension, the license, and the
  version from src/fastws/_version.py;
- ``twine check --strict`` passes on both, and ``auditwheel show`` prints which
  manylinux tag the wheel's shared libraries allow (shown with ``-rP``);
- each installs into a fresh virtual environment, the sdist into one without
  Cython (pip's build isolation brings it from build-system.requires, and it
  must not stay behind). From each: ``import fastws`` finds the installed,
  compiled package; ``fastws --version`` and the installed metadata agree; the
  ``fastws`` command serves an app in a subprocess; one WebSocket round trip
  with the websockets client; SIGTERM, exit status 0, nothing left running;
- on the oldest and the newest CPython fastws supports (tests/pythons.py), a
  wheel built from the sdist by that version's pip installs and serves the same
  way (the running version's is the wheel above).

About six minutes on two cores, nearly all of it compiling the extensions
three times (the wheel, the sdist's install, the other version's wheel). Needs the package index that pip
is configured with, for the build requirements and fastws's dependencies.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tarfile
import time
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from pathlib import Path

import pytest

from ..integration.clients import free_port, wait_for, ws_connect
from ..pythons import require_interpreter, supported

pytest.importorskip("build", reason="python -m build makes the artifacts (pip install -e '.[test]')")
pytest.importorskip("twine", reason="twine checks the artifacts (pip install -e '.[test]')")

# Hang guard for the whole module: the first test also pays for the build.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# Hang guards for each step, never expectations about speed.
BUILD_TIMEOUT = 900      # sdist, then the wheel from it (compiles every extension)
INSTALL_TIMEOUT = 900    # pip install of the sdist compiles them again
STEP_TIMEOUT = 180       # venv creation, pip install of the wheel, twine, probes
SERVE_TIMEOUT = 30       # from starting the fastws command to a listening port
STOP_TIMEOUT = 30        # from SIGTERM to exit

#: The sdist's top level, exactly: anything new there is a decision to make here.
SDIST_TOP = {"CHANGELOG.md", "LICENSE", "MANIFEST.in", "PKG-INFO", "README.md",
             "pyproject.toml", "setup.cfg", "setup.py", "src"}
#: Build products: in neither artifact's sources (the wheel has its own modules).
GENERATED = (".c", ".so", ".pyd", ".dylib", ".o", ".html", ".pyc")
SOURCE_SUFFIXES = (".py", ".pyx", ".pxd", ".h", ".pyi")

#: Run by each venv's python: where fastws came from, its versions, and the
#: file behind each module that should be compiled (names in argv).
PROBE = """
import importlib, importlib.metadata, json, sys, sysconfig
import fastws
print(json.dumps({
    "file": fastws.__file__,
    "version": fastws.__version__,
    "metadata": importlib.metadata.version("fastws"),
    "python": "%d.%d" % sys.version_info[:2],
    "suffix": sysconfig.get_config_var("EXT_SUFFIX"),
    "modules": {m: importlib.import_module("fastws." + m).__file__ for m in sys.argv[1:]},
}))
"""


@dataclass
class Artifacts:
    sdist: Path
    wheel: Path
    version: str


def source_version() -> str:
    """The version in src/fastws/_version.py, read the way setuptools reads it."""
    tree = ast.parse((ROOT / "src" / "fastws" / "_version.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("src/fastws/_version.py assigns no __version__")


def compiled_modules() -> set[str]:
    """Every module setup.py compiles: each .pyx, and the .py files it names."""
    package = ROOT / "src" / "fastws"
    names = {".".join(p.relative_to(package).with_suffix("").parts) for p in package.rglob("*.pyx")}
    if os.environ.get("FASTWS_PURE_PYTHON"):
        return names
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "COMPILED_PY" for t in node.targets):
            return names | set(ast.literal_eval(node.value))
    raise AssertionError("setup.py defines no COMPILED_PY")


def run(cmd: list[str | Path], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` to completion; a non-zero exit fails the test with its output."""
    argv = [str(a) for a in cmd]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kwargs)
    if done.returncode != 0:
        pytest.fail(f"{' '.join(argv)} exited {done.returncode}\n--- stdout ---\n"
                    f"{done.stdout[-6000:]}\n--- stderr ---\n{done.stderr[-6000:]}")
    return done


def timed(label: str, cmd: list[str | Path], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    started = time.monotonic()
    done = run(cmd, timeout, **kwargs)
    print(f"{label}: {time.monotonic() - started:.0f} s")
    return done


def user_env() -> dict[str, str]:
    """This environment minus what would point Python at the checkout or the
    dev venv, and minus FASTWS_* settings, so the command sees only our flags."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("FASTWS_")}


def make_venv(path: Path, python: str | Path = sys.executable) -> Path:
    """A fresh venv from ``python`` (by default the interpreter running the
    tests: its base, not the dev venv)."""
    timed(f"venv {path.name}", [python, "-m", "venv", path], STEP_TIMEOUT, env=user_env())
    return path


def importable(venv: Path, module: str) -> bool:
    done = subprocess.run([str(venv / "bin" / "python"), "-c",
                           f"import importlib.util, sys; sys.exit(importlib.util.find_spec({module!r}) is None)"],
                          capture_output=True, timeout=STEP_TIMEOUT, env=user_env())
    return done.returncode == 0


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Artifacts:
    """``python -m build`` on the working tree: the sdist, then the wheel built from it."""
    out = tmp_path_factory.mktemp("dist")
    timed("python -m build (sdist, then the wheel from it)",
          [sys.executable, "-m", "build", "--outdir", out, ROOT], BUILD_TIMEOUT)
    sdists, wheels = sorted(out.glob("*.tar.gz")), sorted(out.glob("*.whl"))
    assert len(sdists) == 1 and len(wheels) == 1, sorted(p.name for p in out.iterdir())
    return Artifacts(sdists[0], wheels[0], source_version())


def test_sdist_holds_the_sources_and_nothing_generated(artifacts: Artifacts):
    top = f"fastws-{artifacts.version}"
    with tarfile.open(artifacts.sdist) as tar:
        members = tar.getmembers()
    assert all(m.name == top or m.name.startswith(top + "/") for m in members), "one top directory"
    assert not [m.name for m in members if m.issym() or m.islnk()], "no links"
    names = sorted(m.name.removeprefix(top + "/") for m in members if m.isfile())
    print(f"{artifacts.sdist.name}:", *names, sep="\n  ")

    assert {n.split("/")[0] for n in names} == SDIST_TOP
    package = ROOT / "src" / "fastws"
    sources = {p.relative_to(ROOT).as_posix() for p in package.rglob("*")
               if (p.suffix in SOURCE_SUFFIXES or p.name == "py.typed") and "__pycache__" not in p.parts}
    assert not sources - set(names), f"sources missing from the sdist: {sorted(sources - set(names))}"
    assert not [n for n in names if n.endswith(GENERATED)], "generated files in the sdist"
    assert not [n for n in names if n.startswith("src/") and not n.startswith(("src/fastws/", "src/fastws.egg-info/"))]

    with tarfile.open(artifacts.sdist) as tar:
        pkg_info = Parser().parsestr(tar.extractfile(f"{top}/PKG-INFO").read().decode())
    assert pkg_info["Version"] == artifacts.version
    assert pkg_info["License-Expression"] == "MIT" and pkg_info["License-File"] == "LICENSE"


def test_wheel_holds_a_compiled_module_for_each_extension(artifacts: Artifacts):
    with zipfile.ZipFile(artifacts.wheel) as whl:
        names = sorted(whl.namelist())
        dist_info = f"fastws-{artifacts.version}.dist-info"
        metadata = Parser().parsestr(whl.read(f"{dist_info}/METADATA").decode())
    print(f"{artifacts.wheel.name}:", *names, sep="\n  ")

    # This interpreter's tag, so the wheel is the one it built, not a stale copy.
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    built = {n.removeprefix("fastws/").removesuffix(suffix).replace("/", ".") for n in names
             if n.startswith("fastws/") and n.endswith(suffix)}
    assert built == compiled_modules()
    assert not [n for n in names if n.endswith(GENERATED) and not n.endswith(suffix)]
    assert all(n.startswith(("fastws/", f"{dist_info}/")) for n in names)
    assert f"{dist_info}/licenses/LICENSE" in names
    assert metadata["Version"] == artifacts.version
    assert metadata["License-Expression"] == "MIT"


def test_twine_check_strict(artifacts: Artifacts):
    # COLUMNS: twine wraps its report at the terminal's width, 80 without one
    done = run([sys.executable, "-m", "twine", "--no-color", "check", "--strict",
                artifacts.sdist, artifacts.wheel], STEP_TIMEOUT, env={**os.environ, "COLUMNS": "200"})
    print(done.stdout.strip())
    assert done.stdout.count("PASSED") == 2, done.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel reads Linux wheels")
def test_auditwheel_show(artifacts: Artifacts):
    pytest.importorskip("auditwheel", reason="auditwheel shows the wheel's platform tag (pip install -e '.[test]')")
    done = run([sys.executable, "-m", "auditwheel", "show", artifacts.wheel], STEP_TIMEOUT)
    verdict = (done.stdout + done.stderr).strip()
    print(f"auditwheel show {artifacts.wheel.name}:\n{verdict}")
    # Only the C library and the interpreter: nothing a repair would have to bundle.
    assert re.search(r'platform tag:\s*"(many|musl)linux_\d+_\d+_\w+"', verdict), verdict
    assert "external shared libraries are required" not in verdict, verdict


def test_wheel_installs_and_serves(artifacts: Artifacts, tmp_path: Path):
    venv = make_venv(tmp_path / "wheel-venv")
    timed("pip install the wheel", [venv / "bin" / "pip", "install", artifacts.wheel], STEP_TIMEOUT,
          env=user_env())
    smoke(venv, tmp_path, artifacts.version)


def test_sdist_installs_without_cython_and_serves(artifacts: Artifacts, tmp_path: Path):
    venv = make_venv(tmp_path / "sdist-venv")
    assert not importable(venv, "Cython"), "a fresh venv should have no Cython"
    # --no-cache-dir: pip would otherwise keep the wheel it builds, a copy of
    # fastws in the user's cache per run. Cython comes from build isolation.
    timed("pip install the sdist (compiles)",
          [venv / "bin" / "pip", "install", "--no-cache-dir", artifacts.sdist], INSTALL_TIMEOUT,
          env=user_env())
    assert not importable(venv, "Cython"), "build isolation should not leave Cython installed"
    smoke(venv, tmp_path, artifacts.version)


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_a_wheel_built_on_the_oldest_and_newest_python_serves(which: str, artifacts: Artifacts,
                                                               tmp_path: Path):
    versions = supported()
    python = versions[0] if which == "oldest" else versions[-1]
    if python == "%d.%d" % sys.version_info[:2]:
        pytest.skip(f"CPython {python} runs these tests: test_wheel_installs_and_serves is its wheel")
    venv = make_venv(tmp_path / f"py{python}-venv", require_interpreter(python))
    out = tmp_path / "wheel"
    timed(f"pip wheel from the sdist on CPython {python} (compiles)",
          [venv / "bin" / "pip", "wheel", "--no-deps", "--no-cache-dir", "--wheel-dir", out,
           artifacts.sdist], INSTALL_TIMEOUT, env=user_env())
    wheels = sorted(out.glob("*.whl"))
    tag = "cp" + python.replace(".", "")
    assert len(wheels) == 1 and f"-{tag}-{tag}-" in wheels[0].name, [w.name for w in wheels]
    timed("pip install that wheel", [venv / "bin" / "pip", "install", wheels[0]], STEP_TIMEOUT,
          env=user_env())
    smoke(venv, tmp_path, artifacts.version, python=python)


def smoke(venv: Path, workdir: Path, version: str, python: str | None = None) -> None:
    """Import, versions, and one served WebSocket round trip from ``venv``."""
    env = user_env()
    app_dir = workdir / "app"
    app_dir.mkdir()
    shutil.copy(HERE / "echo_app.py", app_dir / "echo_app.py")

    modules = sorted(compiled_modules())
    found = json.loads(run([venv / "bin" / "python", "-c", PROBE, *modules], STEP_TIMEOUT,
                           cwd=app_dir, env=env).stdout)
    assert Path(found["file"]).resolve().is_relative_to(venv.resolve()), found["file"]
    assert found["version"] == found["metadata"] == version, found
    assert found["python"] == (python or "%d.%d" % sys.version_info[:2]), found
    suffix = found["suffix"]
    assert {m: f for m, f in found["modules"].items() if not f.endswith(suffix)} == {}, \
        "modules imported as Python source, not compiled"

    cli = run([venv / "bin" / "fastws", "--version"], STEP_TIMEOUT, cwd=app_dir, env=env)
    assert cli.stdout.strip() == f"fastws {version}"

    port = free_port()
    log_path = workdir / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(venv / "bin" / "fastws"), "echo_app:app", "--port", str(port)],
                                cwd=app_dir, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: proc.poll() is not None or listening(port), timeout=SERVE_TIMEOUT,
                 what=f"the fastws command to listen on port {port}")
        assert proc.poll() is None, f"exited {proc.returncode}:\n{log_path.read_text()}"
        with ws_connect(f"ws://127.0.0.1:{port}/echo", open_timeout=10) as ws:
            ws.send("hello from the packaging test")
            assert ws.recv(timeout=10) == "echo: hello from the packaging test"
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running {STOP_TIMEOUT} s after SIGTERM:\n{log_path.read_text()}")
        assert status == 0, f"exit status {status} after SIGTERM:\n{log_path.read_text()}"
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)      # nothing of its process group left running
        print(f"{venv.name} (CPython {found['python']}): import, fastws --version, "
              "a served round trip, SIGTERM -> exit 0")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
