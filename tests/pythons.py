"""The CPython versions fastws supports, and where this machine keeps each.

One list: ``PYTHONS`` in ``.ci/run``, which runs the README's commands on every
one of them. The classifiers, the cibuildwheel build list, the README and the docs
name the same versions (tests/test_readme_commands.py checks that); tests that need
another interpreter (the packaging test builds a wheel on the oldest and the
newest) find it here: pyenv's, as ``.ci/run`` looks first, or ``pythonX.Y`` on
PATH (``.ci/run`` also needs a ``python3`` of that version beside it, for the
README's commands as written).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

__all__ = ["supported", "interpreter", "require_interpreter"]


def supported() -> list[str]:
    """The versions, oldest first, as ``"3.10"`` strings."""
    text = (ROOT / ".ci" / "run").read_text()
    found = re.search(r'^PYTHONS="([0-9. ]+)"$', text, re.M)
    assert found, '.ci/run defines no PYTHONS="..." line'
    versions = found.group(1).split()
    return sorted(versions, key=lambda v: tuple(map(int, v.split("."))))


def _version_of(exe: Path) -> str | None:
    try:
        done = subprocess.run([str(exe), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                              capture_output=True, text=True, timeout=30)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def interpreter(version: str) -> Path | None:
    """A ``python3`` of ``version`` (X.Y): pyenv's newest patch release of it,
    else ``pythonX.Y`` on PATH; None if this machine has neither."""
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    releases = [p for p in (root / "versions").glob(f"{version}.*")
                if re.fullmatch(r"[0-9.]+", p.name)]
    for release in sorted(releases, key=lambda p: tuple(map(int, p.name.split("."))), reverse=True):
        exe = release / "bin" / "python3"
        if _version_of(exe) == version:
            return exe
    on_path = shutil.which(f"python{version}")
    if on_path and _version_of(Path(on_path)) == version:
        return Path(on_path)
    return None


def require_interpreter(version: str) -> Path:
    """``interpreter(version)``, or skip the test; under CI=true fail it
    instead: CI must test every version fastws claims."""
    exe = interpreter(version)
    if exe is None:
        message = f"CPython {version} is not installed (pyenv or python{version} on PATH)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return exe
