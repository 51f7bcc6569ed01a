"""The README's two commands and what CI runs must not drift apart.

CI (``.ci/run``) proves the README's run command in a fresh clone and runs its test
command; these tests fail when either command changes in one place and not the other,
and when an example has no row for the smoke test to follow.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

from tests.pythons import supported

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> tuple[str, str]:
    """(run command, test command): the two ``sh`` blocks of the README's "Try it"."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Try it", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", section, re.S)
    assert len(blocks) == 2, f"README 'Try it' should hold two sh blocks, found {len(blocks)}"
    run, test = (b.strip() for b in blocks)
    assert "\n" not in run and "\n" not in test, "each README command is one line"
    return run, test


def ci_lines() -> list[str]:
    return (ROOT / ".ci" / "run").read_text().splitlines()


def test_ci_smoke_runs_the_readme_run_command_verbatim():
    run, _ = readme_commands()
    assert "fastws.demo" in run and "pip install ." in run
    lines = ci_lines()
    assert f"RUN_COMMAND='{run}'" in lines, ".ci/run must define RUN_COMMAND as the README's run command"
    smoke = [ln for ln in lines if ln.lstrip().startswith('"$smoke/driver/bin/python" .ci/smoke.py')]
    assert smoke and smoke[0].rstrip().endswith('"$RUN_COMMAND"'), \
        ".ci/run must hand RUN_COMMAND to .ci/smoke.py"
    assert any(ln.lstrip().startswith('git clone -q . "$smoke/clone"') for ln in lines), \
        "the run command must be smoke-tested in a fresh clone"


def test_ci_runs_the_readme_test_command_verbatim():
    _, test = readme_commands()
    assert "pytest" in test
    assert test in ci_lines(), ".ci/run must run the README's test command as one line, verbatim"


def test_smoke_has_a_row_for_every_example():
    spec = importlib.util.spec_from_file_location("ci_smoke", ROOT / ".ci" / "smoke.py")
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    rows = smoke.example_rows(ROOT / "examples" / "README.md")
    names = {row["name"] for row in rows}
    files = {p.stem for p in (ROOT / "examples").glob("*.py") if p.stem != "__init__"}
    assert names == files, f"examples/README.md rows {sorted(names)} != example files {sorted(files)}"
    for row in rows:
        assert row["servers"], f"row {row['name']} names no 'python -m examples.…' command"
        assert row["urls"] or row["clients"], f"row {row['name']} names no ws:// URL or client to try"


def claimed_in_pyproject() -> tuple[list[str], list[str], str]:
    """(classifier versions, cibuildwheel build identifiers, requires-python),
    read from the text (tomllib is not in 3.10)."""
    text = (ROOT / "pyproject.toml").read_text()
    classifiers = re.findall(r'"Programming Language :: Python :: (3\.\d+)"', text)
    cibw = text.split("[tool.cibuildwheel]", 1)[1]
    build = re.search(r'^build = "([^"]*)"', cibw, re.M)
    requires = re.search(r'^requires-python = "([^"]*)"', text, re.M)
    assert build and requires, "pyproject.toml lost its cibuildwheel build list or requires-python"
    return classifiers, build.group(1).split(), requires.group(1)


def test_what_fastws_claims_is_what_ci_tests():
    """CI (.ci/run's PYTHONS) runs the README's commands on every version named
    by the classifiers, the wheels' build list, the README and the docs, and on
    no other."""
    versions = supported()
    assert versions[0] == "3.10" and len(versions) >= 4, versions
    classifiers, build, requires = claimed_in_pyproject()
    assert classifiers == versions
    assert build == [f"cp{v.replace('.', '')}-*" for v in versions]
    assert requires == f">={versions[0]}"
    in_words = ", ".join(f"CPython {v}" if i == 0 else v for i, v in enumerate(versions[:-1])) \
        + f" or {versions[-1]}"
    for doc in ("README.md", "docs/index.md"):
        text = " ".join((ROOT / doc).read_text().split())
        assert in_words in text, f"{doc} should say fastws runs on {in_words!r}"
