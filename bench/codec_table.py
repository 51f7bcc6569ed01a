"""Run the codec benchmarks and print them as a markdown table.

    python bench/codec_table.py                  # run bench/test_codec_bench.py, then print
    python bench/codec_table.py --json run.json  # print a run saved with --benchmark-json
    python bench/codec_table.py --keep run.json  # run, and keep the raw pytest-benchmark JSON

One row per library, one column per benchmark group. Each cell gives the
absolute figure and, in parentheses, that figure divided by fastws's in the
same column: below 1x means slower than fastws. Masking functions are compared
with the fastws function of the same kind (a copying one with
``apply_mask``, an in-place one with ``apply_mask_inplace``). The fastest
cell of each column is in bold.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SUITE = HERE / "test_codec_bench.py"
PEERS = ("websockets", "aiohttp", "wsproto", "picows")
ROWS = ("fastws", "fastws, copying", *PEERS)
# The fastws row each masking mode is measured against.
REFERENCE_ROW = {"in place": "fastws", "copy": "fastws, copying"}


def run_suite(json_path: Path, extra: list[str]) -> int:
    """Run the benchmark file in a child pytest writing pytest-benchmark JSON; its exit code."""
    cmd = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider",
           "--benchmark-only", "--benchmark-group-by=group", "--benchmark-sort=min",
           f"--benchmark-json={json_path}", *extra]
    print("$", " ".join(cmd), file=sys.stderr)
    # pytest's report goes to stderr so that stdout holds only the table.
    return subprocess.run(cmd, cwd=HERE.parent, stdout=sys.stderr).returncode


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's best guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> str:
    """Python and package versions, for the line above the table."""
    parts = [f"Python {platform.python_version()}"]
    for name in ("fastws", *PEERS):
        try:
            parts.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def throughput(bench: dict[str, Any], stat: str) -> float:
    """Bytes per second for masking, frames per second for parse and encode."""
    seconds = bench["stats"][stat]
    info = bench["extra_info"]
    return info.get("bytes", info.get("frames", 0)) / seconds


def fmt(value: float, column: str) -> str:
    """GB/s (10**9 bytes) for masking, k or M frames/s for parse and encode."""
    if column.startswith("unmask"):
        return f"{value / 1e9:.3g} GB/s"
    if value >= 1e6:
        return f"{value / 1e6:.3g} M/s"
    return f"{value / 1e3:.3g} k/s"


def table(data: dict[str, Any], stat: str) -> str:
    """The markdown table for one pytest-benchmark JSON document."""
    cells: dict[tuple[str, str], float] = {}
    modes: dict[tuple[str, str], str] = {}
    columns: list[str] = []
    for bench in data["benchmarks"]:
        column, info = bench["group"], bench["extra_info"]
        if column not in columns:
            columns.append(column)
        cells[info["library"], column] = throughput(bench, stat)
        if "mode" in info:
            modes[info["library"], column] = info["mode"]
    columns.sort(key=lambda c: (not c.startswith("unmask"), c.startswith("encode"),
                                _size_order(c)))
    header = ["library"] + [c if c.startswith("unmask") else f"{c} (frames/s)" for c in columns]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(columns)]
    best = {c: max(v for (_, col), v in cells.items() if col == c) for c in columns}
    for row in ROWS:
        if not any((row, c) in cells for c in columns):
            continue
        out = [row]
        for c in columns:
            if (row, c) not in cells:
                out.append("—")
                continue
            value = cells[row, c]
            ref_row = REFERENCE_ROW[modes[row, c]] if (row, c) in modes else "fastws"
            ref = cells.get((ref_row, c))
            text = fmt(value, c) + (f" ({value / ref:.2f}×)" if ref else "")
            out.append(f"**{text}**" if value == best[c] else text)
        lines.append("| " + " | ".join(out) + " |")
    return "\n".join(lines)


def _size_order(column: str) -> int:
    """Sort 1 KiB before 64 KiB before 1 MiB."""
    for i, unit in enumerate(("KiB", "MiB")):
        if column.endswith(unit):
            return i * 10_000 + int(column.split()[-2])
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run (or load) the codec benchmarks and print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="format this saved run instead of running")
    parser.add_argument("--keep", type=Path, help="where to keep the JSON of a new run")
    parser.add_argument("--stat", default="min", choices=("min", "median", "mean"),
                        help="per-call time statistic (default: min, the steadiest on a shared machine)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments, after --")
    args = parser.parse_args(argv)

    if args.json:
        path = args.json
    else:
        path = args.keep or Path(tempfile.mkdtemp(prefix="fastws-codec-")) / "codec.json"
        code = run_suite(path, args.pytest_args)
        if code != 0:
            print(f"codec_table: pytest exited with {code}; its report is above", file=sys.stderr)
            return code
    data = json.loads(path.read_text())
    print(f"CPU: {cpu_model()}; {versions()}; statistic: {args.stat}")
    print()
    print(table(data, args.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
