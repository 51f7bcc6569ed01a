"""One version number: ``src/fastws/_version.py``. The build reads it into the
installed metadata; ``fastws.__version__`` and ``fastws --version`` show it."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

import pytest

import fastws
from fastws import _version
from fastws.__main__ import build_parser

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_installed_metadata_is_the_package_version():
    installed = importlib.metadata.version("fastws")
    assert installed == fastws.__version__, (
        f"installed metadata says {installed}, the package {fastws.__version__}: "
        "the install is older than src/fastws/_version.py (pip install -e '.[test]' again)")


def test_package_version_comes_from_version_py():
    assert fastws.__version__ is _version.__version__


def test_version_py_is_a_literal_the_build_reads_without_importing():
    # setuptools reads the attr statically only from a plain literal assignment;
    # anything else makes it import fastws, which needs the compiled modules.
    tree = ast.parse(Path(_version.__file__).read_text())
    literals = [node.value.value for node in tree.body
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)]
    assert literals == [fastws.__version__]


def test_cli_prints_it(capsys):
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"fastws {fastws.__version__}"


def test_pyproject_does_not_repeat_it():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from 3.11")
    if not PYPROJECT.exists():
        pytest.skip("run from an installed wheel without the project's pyproject.toml")
    config = tomllib.loads(PYPROJECT.read_text())
    assert "version" not in config["project"]
    assert "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "fastws._version.__version__"}
