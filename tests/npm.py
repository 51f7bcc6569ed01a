"""Node for the tests that drive a JavaScript client: the ``node`` executable
with a folder's locked npm packages installed (``npm ci``). Without Node the
test is skipped, except on CI (CI=true), where a missing Node is a failure."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def node_with_packages(folder: Path, package: str, why: str, timeout: float = 240) -> str:
    """The node executable, once ``folder``'s packages (``package`` among them)
    are installed; ``why`` says what needs them, for the skip or failure."""
    exe = shutil.which("node")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"node is not installed, and CI must run {why}")
        pytest.skip(f"node is not installed (needed for {why})")
    if not (folder / "node_modules" / package).is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"node is installed but npm is not; cannot install {folder}'s packages")
        # `npm ci` installs exactly the locked versions.
        cmd = [npm, "ci" if (folder / "package-lock.json").exists() else "install",
               "--no-audit", "--no-fund"]
        done = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, timeout=timeout)
        assert done.returncode == 0, f"{' '.join(cmd)} in {folder} failed:\n{done.stdout}\n{done.stderr}"
    return exe
