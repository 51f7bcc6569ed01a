"""The README's two commands and what CI runs must not drift apart.

CI (``.ci/run``) proves the README's run command in a fresh clone and runs its test
command; these tests fail when either command changes in one place and not the other,
and when an example has no row for the smoke test to follow.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

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
    assert any(ln.startswith('git clone -q . "$smoke/clone"') for ln in lines), \
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
