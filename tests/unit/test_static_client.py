"""The JS client the package ships: ``src/fastws/static/fastws-client.js`` is
the demo page's ``/fastws-client.js`` and must be ``clients/js/src/index.js``
byte for byte (the npm package is the source; the package carries a copy, so
that ``pip install fastws`` serves the demo without the repository). And the
build ships it: pyproject.toml's package data names it."""

from __future__ import annotations

import fnmatch
import importlib.resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "clients" / "js" / "src" / "index.js"
COPY = ROOT / "src" / "fastws" / "static" / "fastws-client.js"


def test_the_shipped_client_is_the_npm_packages_source():
    source, copy = SOURCE.read_bytes(), COPY.read_bytes()
    if copy != source:
        at = next((i for i, (a, b) in enumerate(zip(source, copy)) if a != b), min(len(source), len(copy)))
        line = source[:at].count(b"\n") + 1
        pytest.fail(f"{COPY.relative_to(ROOT)} differs from {SOURCE.relative_to(ROOT)} "
                    f"(first at byte {at}, line {line}; {len(copy)} bytes against {len(source)}). "
                    f"It must be an exact copy: after changing the client, run "
                    f"`cp {SOURCE.relative_to(ROOT)} {COPY.relative_to(ROOT)}` from the repository's root.")


def test_the_installed_package_finds_it():
    """What the demo reads (importlib.resources), from the install in use."""
    found = importlib.resources.files("fastws").joinpath("static", "fastws-client.js")
    assert found.read_bytes() == SOURCE.read_bytes()


def test_the_build_ships_it_as_package_data():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    patterns = setuptools["package-data"].get("fastws", [])
    relative = COPY.relative_to(ROOT / "src" / "fastws").as_posix()
    assert any(fnmatch.fnmatchcase(relative, p) for p in patterns), (
        f"pyproject.toml's [tool.setuptools.package-data] fastws = {patterns} does not ship {relative}")
    excluded = [p for ps in setuptools.get("exclude-package-data", {}).values() for p in ps]
    assert not any(fnmatch.fnmatchcase(COPY.name, p) for p in excluded), excluded
