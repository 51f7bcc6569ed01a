"""What the browser tests need, installed when missing: Debian's ``chromium``
(with apt-get, as root) and ``playwright-core`` from npm into tests/browser/
(``npm ci`` against package-lock.json). Node itself is not installed here:
without it the tests skip, except under CI=true, where that is a failure (as
for the Node ``ws`` client test). tests/recovery/test_browser_client.py uses
these fixtures too (it imports them), and its driver imports chromium.mjs from
here, so that playwright-core resolves from tests/browser/node_modules."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

BROWSER_DIR = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
APT_TIMEOUT = 900       # a first install downloads Chromium and its libraries
NPM_TIMEOUT = 240


def _apt_get(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Another apt (a developer's, a parallel test session) may hold dpkg's
    # lock for a while: wait for it instead of failing at once.
    return subprocess.run(["apt-get", "-o", "DPkg::Lock::Timeout=300", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=APT_TIMEOUT)


@pytest.fixture(scope="session")
def chromium() -> Path:
    """/usr/bin/chromium, installed from Debian's packages when missing."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and there is no apt-get to install Debian's chromium")
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing; installing it needs root: apt-get install -y chromium")
    done = _apt_get("install", "-y", "chromium")
    if done.returncode != 0:
        # A fresh machine may have no package lists yet, or stale ones.
        update = _apt_get("update")
        done = _apt_get("install", "-y", "chromium")
        if done.returncode != 0:
            pytest.fail("could not install Debian's chromium for the browser tests:\n"
                        f"apt-get update: exit {update.returncode}\n{update.stderr[-2000:]}\n"
                        f"apt-get install -y chromium: exit {done.returncode}\n"
                        f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is not there")
    return CHROMIUM


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with tests/browser's npm packages installed."""
    exe = shutil.which("node")
    if exe is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("node is not installed, and CI must run the browser tests")
        pytest.skip("node is not installed (needed to drive Chromium with playwright-core)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("node is installed but npm is not; cannot install playwright-core")
        # `npm ci` installs exactly the locked version.
        cmd = [npm, "ci" if (BROWSER_DIR / "package-lock.json").exists() else "install",
               "--no-audit", "--no-fund"]
        done = subprocess.run(cmd, cwd=BROWSER_DIR, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(cmd)} in {BROWSER_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return exe
