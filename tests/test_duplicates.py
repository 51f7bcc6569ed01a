"""No copied code in src/: pylint's ``symilar`` over every .py, .pyx and .pxd
(as text, so Cython counts too), comments ignored, at six identical lines or
more. A rule written twice drifts; the second copy becomes a function."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "fastws"
MIN_LINES = 6


def symilar(files: list[Path]) -> tuple[int, str]:
    """(duplicated lines, report) for ``files``."""
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from pylint import run_symilar; run_symilar(sys.argv[1:])",
         "-d", str(MIN_LINES), "-i", *map(str, files)],
        capture_output=True, text=True, timeout=300)
    m = re.search(r"TOTAL lines=\d+ duplicates=(\d+)", done.stdout)
    assert m, done.stdout + done.stderr
    return int(m.group(1)), done.stdout


def sources(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix in (".py", ".pyx", ".pxd"))


def test_no_code_is_copied_in_src():
    duplicates, report = symilar(sources(SRC))
    assert duplicates == 0, report


def test_the_check_finds_a_copy(tmp_path):
    shutil.copytree(SRC, tmp_path / "fastws", ignore=shutil.ignore_patterns("*.so", "*.c", "*.html"))
    original = tmp_path / "fastws" / "serve" / "workers.py"
    (tmp_path / "fastws" / "copied.py").write_text(original.read_text())
    duplicates, _ = symilar(sources(tmp_path / "fastws"))
    assert duplicates > MIN_LINES
