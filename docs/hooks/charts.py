"""mkdocs hook: the benchmark page's tables and charts, made from bench/results at build time.

``docs/benchmarks.md`` holds placeholders, ``<!-- bench:NAME -->`` alone on a
line. This hook replaces each with Markdown made from the newest result file
of its kind in ``bench/results/`` (its date, machine and command first) and
adds the SVG charts that Markdown shows to the site as generated files. A new
benchmark run therefore shows on the next build, and at once under
``mkdocs serve``, which watches ``bench/results`` (see mkdocs.yml).

The charts are SVG written here by hand, so building the docs needs no
plotting library. The JSON shapes are those of ``bench/compare.py``, whose
own readers (``metrics``, ``render_tables``, ``render_deflate``) are reused so
that the page and the script print the same tables, and of ``bench/cluster.py``,
``upgrades.py``, ``abtest.py`` and ``instructions.py``, which all save through
``compare.save_results``.

The home page (``docs/index.md``) and README.md's "How fast" quote the same
peer comparison as the benchmark page, through ``headline``: the home page
through its ``<!-- bench:headline -->`` placeholder, README.md, which GitHub
shows as it is, through blocks between ``<!-- readme:NAME -->`` and
``<!-- /readme:NAME -->`` lines that ``python docs/hooks/charts.py --readme``
rewrites (and tests/test_docs.py compares).

Only the standard library is imported at module level: tests/test_docs.py
renders every section from the committed results without mkdocs installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import shlex
import sys
import textwrap
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable
from xml.sax.saxutils import escape

PLACEHOLDER = re.compile(r"^<!-- bench:([a-z-]+) -->$", re.M)
#: Where generated charts live in the site, relative to docs/ (and so to benchmarks.md).
CHART_DIR = "charts"
PAGE = "benchmarks.md"
_STAMP = re.compile(r"-(\d{4}-\d{2}-\d{2})-(\d{6})\.json$")


# ---------------------------------------------------------------- result files

@dataclass
class Result:
    """One result file: its path (relative to the repository) and its JSON."""

    path: Path
    rel: str
    data: dict

    @property
    def when(self) -> datetime:
        """When the run was saved: the file's ``date``, else its name's stamp
        (bench/cluster.py wrote no ``date`` before it saved through compare.py)."""
        if isinstance(self.data.get("date"), str):
            return datetime.fromisoformat(self.data["date"])
        m = _STAMP.search(self.path.name)
        return datetime.strptime(f"{m.group(1)} {m.group(2)}", "%Y-%m-%d %H%M%S")


def results(root: Path, kind: str) -> list[Result]:
    """Every ``bench/results/<kind>-<date>-<time>.json``, oldest first (the
    stamp in the name sorts as text)."""
    out = []
    for path in sorted((root / "bench" / "results").glob(f"{kind}-*.json")):
        if not _STAMP.search(path.name):
            continue
        out.append(Result(path, path.relative_to(root).as_posix(), json.loads(path.read_text())))
    return out


def newest(root: Path, kind: str, accept: Callable[[dict], bool] = lambda d: True) -> Result | None:
    """The newest result of ``kind`` that ``accept`` takes, or None."""
    found = [r for r in results(root, kind) if accept(r.data)]
    return found[-1] if found else None


_module_cache: dict[Path, Any] = {}


def bench_module(root: Path, name: str) -> Any:
    """``bench/<name>.py``, loaded from its file (bench/ is no package; its
    scripts import each other by name, so bench/ is on the path while it loads)."""
    path = root / "bench" / f"{name}.py"
    if path not in _module_cache:
        spec = importlib.util.spec_from_file_location(f"_fastws_bench_{name}", path)
        module = importlib.util.module_from_spec(spec)
        # dataclasses look their module up in sys.modules while the class is made.
        sys.modules[spec.name] = module
        sys.path.insert(0, str(path.parent))
        try:
            spec.loader.exec_module(module)
        finally:
            sys.path.remove(str(path.parent))
        _module_cache[path] = module
    return _module_cache[path]


def compare_module(root: Path) -> Any:
    """bench/compare.py."""
    return bench_module(root, "compare")


# ---------------------------------------------------------------- provenance

def _when(r: Result) -> str:
    return r.when.strftime("%Y-%m-%d %H:%M:%S")


def compare_command(cmp: Any, data: dict) -> str:
    """The bench/compare.py command that makes the plan recorded in ``data``:
    compare.py saves its plan, not its arguments, so the flags are what differs
    from the plan of a bare run (or of ``--quick``, whichever is closer)."""
    def flags_for(plan: dict) -> list[str]:
        out: list[str] = []
        # (flag, its value as compare.py's parser reads it, from a plan)
        for flag, text in (
            ("--modes", lambda p: ",".join(p["modes"])),
            ("--rooms", lambda p: ",".join(map(str, p["rooms"]))),
            ("--table-rooms", lambda p: ",".join(map(str, p["table_rooms"]))),
            ("--echo", lambda p: f"{p['echo_conns']}x{p['echo_inflight']}x{p['echo_size']}"),
            ("--fanout-window", lambda p: str(p["fanout_window"])),
            ("--fanout-size", lambda p: str(p["fanout_size"])),
            ("--idle", lambda p: str(p["idle_conns"])),
            ("--warmup", lambda p: f"{p['warmup']:g}"),
            ("--duration", lambda p: f"{p['duration']:g}"),
            ("--deflate-rooms", lambda p: ",".join(map(str, p["deflate_rooms"]))),
            ("--deflate-size", lambda p: str(p["deflate_size"])),
            ("--deflate-offer", lambda p: p["deflate_offer"]),
        ):
            if text(data["plan"]) != text(plan):
                out += [flag, text(data["plan"])]
        return out

    candidates = []
    for base in ([], ["--quick"]):
        plan = cmp.make_plan(cmp.parse_args(base)).__dict__
        candidates.append(base + flags_for(plan))
    args = min(candidates, key=len)
    names = list(data["servers"])
    if names != [s.name for s in cmp.SERVERS]:
        args += ["--servers", ",".join(names)]
    return " ".join(["python", "bench/compare.py", *map(shlex.quote, args)])


def script_command(script: str, args: dict) -> str:
    """``python bench/<script> --flag value ...`` from the arguments a script
    saved (every one, its output directory aside: the scripts' flags are their
    argument names with ``-`` for ``_``)."""
    words = ["python", f"bench/{script}"]
    for name, value in args.items():
        if name == "out" or value is None or value is False or value == []:
            continue
        flag = "--" + name.replace("_", "-")
        if value is True:
            words.append(flag)
        elif isinstance(value, list):
            for item in value:
                words += [flag, shlex.quote(str(item))]
        else:
            words += [flag, shlex.quote(f"{value:g}" if isinstance(value, float) else str(value))]
    return " ".join(words)


def provenance(r: Result, command: str, machine: str | None, extra: str = "") -> str:
    """The lines under each section's heading: date, machine, command, data file."""
    where = machine or "not recorded in the file"
    took = f", {r.data['elapsed_s']:.0f} s" if isinstance(r.data.get("elapsed_s"), (int, float)) else ""
    lines = [f"**Run of {_when(r)}**{took}{extra}.", "",
             f"- Machine: {where}.",
             f"- Command, from the repository root: `{command}`",
             f"- Data: `{r.rel}`"]
    return "\n".join(lines)


def compare_machine(data: dict) -> str | None:
    """What compare.py records of the machine, or None if nothing."""
    m = data.get("machine") or {}
    parts = []
    if m.get("cpus"):
        parts.append(f"{m['cpus']} CPUs")
    if m.get("kernel"):
        parts.append(f"kernel {m['kernel']}")
    if m.get("python"):
        parts.append(f"Python {m['python']}")
    if m.get("tcp_congestion_control"):
        parts.append(f"TCP congestion control {m['tcp_congestion_control']}")
    if "pinned" in m:
        parts.append("server and load generator pinned to a core each" if m["pinned"]
                     else "not pinned to cores")
    return ", ".join(parts) if parts else None


# ---------------------------------------------------------------- SVG

PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf",
           "#bcbd22", "#7f7f7f"]
EMPHASIS = "#111111"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"'


def _fmt(v: float) -> str:
    """An axis tick's label: plain digits, thousands separated."""
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.0f}"
    if v >= 1:
        return f"{v:.2f}".rstrip("0").rstrip(".") if v != int(v) else f"{v:.0f}"
    return f"{v:.3g}"


def _value(v: float) -> str:
    """A bar's label: three significant digits (0.705, 6.42, 10.4, 189)."""
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """1, 2, 5 times each power of ten from below ``lo`` to above ``hi``."""
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            t = m * 10.0 ** exp
            ticks.append(round(t, 12))
    first = max(t for t in ticks if t <= lo)
    last = min(t for t in ticks if t >= hi)
    return [t for t in ticks if first <= t <= last]


def linear_ticks(hi: float) -> list[float]:
    """About five round ticks from 0 to at least ``hi``."""
    raw = hi / 5 if hi > 0 else 1
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * step:
            step *= m
            break
    n = math.ceil(hi / step)
    return [i * step for i in range(n + 1)]


class Svg:
    """A small SVG document: a white card with a title, for <img> use."""

    def __init__(self, width: int, height: int, title: str) -> None:
        self.width, self.height = width, height
        label = escape(title, {'"': "&quot;"})
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{label}" {FONT}>',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
            f'<text x="{width / 2:.1f}" y="22" font-size="14" font-weight="600" '
            f'text-anchor="middle" fill="#222">{escape(title)}</text>',
        ]

    def add(self, element: str) -> None:
        """Append one element (already SVG text)."""
        self.parts.append(element)

    def text(self, x: float, y: float, s: str, size: int = 11, anchor: str = "start",
             fill: str = "#333", weight: str = "normal", rotate: float | None = None) -> None:
        """Text at (x, y)."""
        turn = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.add(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                 f'fill="{fill}" font-weight="{weight}"{turn}>{escape(s)}</text>')

    def line(self, x1: float, y1: float, x2: float, y2: float, stroke: str = "#ccc",
             width: float = 1, dash: str | None = None) -> None:
        """A straight line."""
        d = f' stroke-dasharray="{dash}"' if dash else ""
        self.add(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" '
                 f'stroke="{stroke}" stroke-width="{width}"{d}/>')

    def render(self) -> str:
        """The document."""
        return "\n".join(self.parts + ["</svg>"]) + "\n"


def line_chart(title: str, series: list[tuple[str, list[tuple[float, float]], bool]],
               xlabel: str, ylabel: str) -> str:
    """Lines on log-log axes, one per (label, points, emphasised) series."""
    # The legend sits right of the plot, as wide as its longest label.
    right = 70 + 7 * max(len(label) for label, _, _ in series)
    width, height = 560 + right, 440
    left, top, bottom = 70, 40, 60
    xs = [x for _, pts, _ in series for x, _ in pts]
    ys = [y for _, pts, _ in series for _, y in pts]
    xt, yt = sorted(set(xs)), log_ticks(min(ys), max(ys))
    x0, x1 = math.log10(min(xt)), math.log10(max(xt))
    if x0 == x1:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = math.log10(yt[0]), math.log10(yt[-1])
    pw, ph = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (math.log10(x) - x0) / (x1 - x0) * pw

    def py(y: float) -> float:
        return top + ph - (math.log10(y) - y0) / (y1 - y0) * ph

    svg = Svg(width, height, title)
    for t in yt:
        svg.line(left, py(t), left + pw, py(t))
        svg.text(left - 6, py(t) + 4, _fmt(t), anchor="end")
    for t in xt:
        svg.line(px(t), top, px(t), top + ph)
        svg.text(px(t), top + ph + 16, _fmt(t), anchor="middle")
    svg.line(left, top + ph, left + pw, top + ph, stroke="#666")
    svg.line(left, top, left, top + ph, stroke="#666")
    svg.text(left + pw / 2, height - 18, xlabel, anchor="middle")
    svg.text(18, top + ph / 2, ylabel, anchor="middle", rotate=-90)
    colors = iter(PALETTE)
    for i, (label, pts, emph) in enumerate(series):
        color = EMPHASIS if emph else next(colors)
        w = 3 if emph else 1.6
        path = " ".join(f"{'M' if j == 0 else 'L'}{px(x):.1f},{py(y):.1f}"
                        for j, (x, y) in enumerate(sorted(pts)))
        svg.add(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="{w}"/>')
        for x, y in pts:
            svg.add(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{color}"/>')
        ly = top + 10 + i * 20
        svg.line(left + pw + 16, ly, left + pw + 40, ly, stroke=color, width=w)
        svg.text(left + pw + 46, ly + 4, label, weight="600" if emph else "normal")
    return svg.render()


def bar_chart(title: str, rows: list[tuple], unit: str, log: bool = False,
              legend: list[tuple[str, str]] | None = None) -> str:
    """Horizontal bars, one per (label, value, colour) row; a row whose value
    is None shows its fourth item, if any, else "not measured"."""
    label_w, right = 250, 90
    width = 760
    top = 40 + (22 if legend else 0)
    bar_h, gap = 16, 6
    height = top + len(rows) * (bar_h + gap) + 50
    values = [row[1] for row in rows if row[1] is not None and row[1] > 0]
    pw = width - label_w - right
    if log:
        ticks = log_ticks(min(values), max(values))
        v0, v1 = math.log10(ticks[0]), math.log10(ticks[-1])
        # Bars start at the lowest tick: on a log axis there is no zero.
        scale = lambda v: (math.log10(v) - v0) / (v1 - v0) * pw  # noqa: E731
    else:
        ticks = linear_ticks(max(values))
        scale = lambda v: v / ticks[-1] * pw  # noqa: E731
    svg = Svg(width, height, title)
    if legend:
        x = label_w
        for name, color in legend:
            svg.add(f'<rect x="{x}" y="{top - 20}" width="12" height="12" fill="{color}"/>')
            svg.text(x + 16, top - 10, name)
            x += 28 + 7 * len(name)
    axis_y = top + len(rows) * (bar_h + gap)
    for t in ticks:
        x = label_w + scale(t)
        svg.line(x, top - 4, x, axis_y)
        svg.text(x, axis_y + 14, _fmt(t), anchor="middle")
    svg.text(label_w + pw / 2, axis_y + 34, unit + (" (log scale)" if log else ""), anchor="middle")
    for i, (label, value, color, *note) in enumerate(rows):
        y = top + i * (bar_h + gap)
        svg.text(label_w - 8, y + bar_h - 4, label, anchor="end")
        if value is None or value <= 0:
            svg.text(label_w + 4, y + bar_h - 4, note[0] if note else "not measured", fill="#888")
            continue
        w = max(scale(value), 1.5)
        svg.add(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{color}"/>')
        svg.text(label_w + w + 4, y + bar_h - 4, _value(value))
    svg.line(label_w, top - 4, label_w, axis_y, stroke="#666")
    return svg.render()


FASTWS_BAR, OTHER_BAR, OFF_BAR, ON_BAR = "#1f4e79", "#9fb6cd", "#9fb6cd", "#1f4e79"


# ---------------------------------------------------------------- sections

@dataclass
class Section:
    """What one placeholder becomes: Markdown, and the charts it shows."""

    markdown: str
    charts: dict[str, str] = field(default_factory=dict)


def _image(name: str, alt: str) -> str:
    return f"![{alt}]({CHART_DIR}/{name})"


MAIN_MODES = {"echo", "fanout", "idle"}


def _is_peer_comparison(data: dict) -> bool:
    ok = [e for e in data.get("servers", {}).values() if e.get("status") == "ok"]
    return bool(MAIN_MODES & set(data.get("plan", {}).get("modes", []))) and len(ok) >= 2


def section_compare(root: Path) -> Section:
    """The peer comparison: the newest compare.py run of echo, fan-out or idle
    that measured at least two servers."""
    r = newest(root, "compare", _is_peer_comparison)
    if r is None:
        return Section("No peer comparison in `bench/results/` yet: run `python bench/compare.py`.")
    cmp = compare_module(root)
    data = r.data
    ok = {n: e for n, e in data["servers"].items() if e.get("status") == "ok"}
    rooms = data["plan"]["table_rooms"]
    parts = [provenance(r, compare_command(cmp, data), compare_machine(data)), ""]
    charts: dict[str, str] = {}
    series = []
    for name, e in ok.items():
        pts = [(int(room), f["server_cpu_us_per_msg"]) for room, f in e.get("fanout", {}).items()
               if "error" not in f and f.get("server_cpu_us_per_msg", -1) > 0]
        if pts:
            series.append((f"{e['label']} {e.get('version', '')}".strip(), pts, name == "fastws"))
    p = data["plan"]
    if series:
        charts["compare-fanout.svg"] = line_chart(
            f"Fan-out: server CPU per delivered message ({p['fanout_window']} × "
            f"{p['fanout_size']} B in flight, {r.when:%Y-%m-%d})",
            series, "receivers in the room (log scale)", "server CPU µs per delivered message (log)")
        parts += [_image("compare-fanout.svg", "Fan-out: server CPU per delivered message "
                         "against room size"), ""]
    summary = {n: cmp.metrics(e, rooms) for n, e in ok.items()}
    echo_rows = [(e["label"], summary[n]["echo_cpu"], FASTWS_BAR if n == "fastws" else OTHER_BAR)
                 for n, e in ok.items()]
    if any(v for _, v, _ in echo_rows):
        charts["compare-echo.svg"] = bar_chart(
            f"Echo: server CPU per message ({p['echo_conns']} connections × "
            f"{p['echo_inflight']} × {p['echo_size']} B, {r.when:%Y-%m-%d})",
            echo_rows, "server CPU µs per message")
        parts += [_image("compare-echo.svg", "Echo: server CPU per message"), ""]
    idle_rows = [(e["label"], summary[n]["idle_kib"], FASTWS_BAR if n == "fastws" else OTHER_BAR)
                 for n, e in ok.items()]
    if any(v for _, v, _ in idle_rows):
        charts["compare-idle.svg"] = bar_chart(
            f"Idle: server memory per connection ({p['idle_conns']:,} connections, "
            f"{r.when:%Y-%m-%d})", idle_rows, "KiB of server RSS per idle connection")
        parts += [_image("compare-idle.svg", "Idle: server memory per connection"), ""]
    parts.append(cmp.render_tables(data, "fastws"))
    if {cmp.ROOMS_MODE, cmp.CHAT_MODE, cmp.CHAT_ORJSON_MODE} & set(p.get("modes", [])):
        parts += ["", cmp.render_groups(data, "fastws")]
    return Section("\n".join(parts), charts)


def section_compare_later(root: Path) -> Section:
    """compare.py runs newer than the peer comparison that measured fewer
    servers (one server's re-run of one mode, say): one line each."""
    chosen = newest(root, "compare", _is_peer_comparison)
    cmp = None
    lines = []
    for r in results(root, "compare"):
        modes = set(r.data.get("plan", {}).get("modes", []))
        if chosen is None or r.path.name <= chosen.path.name or not MAIN_MODES & modes \
                or _is_peer_comparison(r.data):
            continue
        cmp = cmp or compare_module(root)
        rooms = r.data["plan"]["table_rooms"]
        figures = []
        for name, e in r.data["servers"].items():
            if e.get("status") != "ok":
                figures.append(f"{e.get('label', name)} skipped ({e.get('reason', '?')})")
                continue
            m = cmp.metrics(e, rooms)
            shown = []
            if m["echo_cpu"] is not None:
                shown.append(f"echo {cmp._num(m['echo_cpu'])} µs/msg")
            for room in rooms:
                if m[f"fan{room}_cpu"] is not None:
                    shown.append(f"fan-out {room:,} {cmp._num(m[f'fan{room}_cpu'])} µs/msg")
            if m["idle_kib"] is not None:
                shown.append(f"idle {m['idle_kib']:.1f} KiB/conn")
            figures.append(f"{e['label']} {e.get('version', '')}: {', '.join(shown) or 'nothing measured'}")
        lines.append(f"- {_when(r)}, `{compare_command(cmp, r.data)}` "
                     f"(`{r.rel}`): {'; '.join(figures)}.")
    if not lines:
        return Section("No compare.py run with fewer servers since the one above.")
    return Section("\n".join(lines))


def section_deflate(root: Path) -> Section:
    """The compression benchmark: the newest ``--modes fanout-deflate`` run."""
    r = newest(root, "compare", lambda d: "fanout-deflate" in d.get("plan", {}).get("modes", []))
    if r is None:
        return Section("No compression run in `bench/results/` yet: run "
                       "`python bench/compare.py --modes fanout-deflate`.")
    cmp = compare_module(root)
    data = r.data
    rows = []
    for name, e in data["servers"].items():
        if e.get("status") != "ok" or "fanout_deflate" not in e:
            continue
        for state in ("off", "on"):
            figures = e["fanout_deflate"].get(state, {})
            room = min(figures, key=int) if figures else None
            f = figures.get(room) if room else None
            value = f["server_cpu_us_per_msg"] if f and "error" not in f else None
            note = f["error"] if f and "error" in f else "not measured"
            rows.append((f"{e['label']}, compression {state}", value,
                         ON_BAR if state == "on" else OFF_BAR, note))
    parts = [provenance(r, compare_command(cmp, data), compare_machine(data)), ""]
    charts = {}
    if any(row[1] for row in rows):
        p = data["plan"]
        charts["deflate-cpu.svg"] = bar_chart(
            f"Fan-out of {p['deflate_size']:,} B JSON to {p['deflate_rooms'][0]:,}: "
            f"server CPU per delivered message ({r.when:%Y-%m-%d})",
            rows, "server CPU µs per delivered message", log=True,
            legend=[("compression off", OFF_BAR), ("compression on", ON_BAR)])
        parts += [_image("deflate-cpu.svg", "Compression: server CPU per delivered message, "
                         "off and on"), ""]
    parts.append(cmp.render_deflate(data, skipped_too=True))
    return Section("\n".join(parts), charts)


def section_cluster(root: Path) -> Section:
    """Rooms across processes (bench/cluster.py): the newest run's summary."""
    r = newest(root, "cluster")
    if r is None:
        return Section("No cluster run in `bench/results/` yet: run `python bench/cluster.py`.")
    args, summary = r.data.get("args", {}), r.data["summary"]
    parts = [provenance(r, script_command("cluster.py", args), None,
                        f", median of {args.get('rounds', '?')} rounds"), ""]
    rows, table = [], []
    for name, m in summary.items():
        if "error" in m:
            table.append(f"| {name} | failed: {m['error'][:80]} | | | | | |")
            continue
        base = "fastws-rooms-local" if "rooms" in name else "fastws-local"
        local = summary.get(base, {}).get("nodes_cpu_us_per_msg")
        ratio = f"{m['nodes_cpu_us_per_msg'] / local:.2f}×" if local else "–"
        redis = f"{m['redis_cpu_us_per_msg']:.3f}" if m.get("redis_cpu_us_per_msg") is not None else "–"
        table.append(f"| {name} | {m['msg_per_s']:,.0f} | {m['nodes_cpu_us_per_msg']:.3f} | {redis} "
                     f"| {ratio} | {m['lost']:,} | {', '.join(f'{v:.1f}' for v in m['p99s_ms'])} |")
        rows.append((name, m["nodes_cpu_us_per_msg"],
                     FASTWS_BAR if name.startswith("fastws") else OTHER_BAR))
    charts = {}
    if rows:
        charts["cluster-cpu.svg"] = bar_chart(
            f"Fan-out across processes: nodes' CPU per delivered message ({r.when:%Y-%m-%d})",
            rows, "CPU µs of every node per delivered message", log=True,
            legend=[("fastws", FASTWS_BAR), ("python-socketio", OTHER_BAR)])
        parts += [_image("cluster-cpu.svg", "Fan-out across processes: CPU per delivered "
                         "message by scenario"), ""]
    parts += ["| scenario | delivered msg/s | nodes' CPU µs/msg | redis-server CPU µs/msg "
              "| vs the same load on one node | lost | p99 ms (per round) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |", *table]
    fc, sc = summary.get("fastws-cross"), summary.get("socketio-cross")
    if fc and sc and "error" not in fc and "error" not in sc:
        parts += ["", f"fastws across two nodes delivers {fc['msg_per_s'] / sc['msg_per_s']:.0f}× "
                  f"the messages per second of python-socketio across two nodes, at "
                  f"1/{sc['nodes_cpu_us_per_msg'] / fc['nodes_cpu_us_per_msg']:.0f} of the node "
                  "CPU per delivered message."]
    return Section("\n".join(parts), charts)


def section_upgrades(root: Path) -> Section:
    """New users under load (bench/upgrades.py): the newest run's summary."""
    r = newest(root, "upgrades")
    if r is None:
        return Section("No run of `bench/upgrades.py` in `bench/results/` yet.")
    args, summary = r.data.get("args", {}), r.data["summary"]
    labels = {s.name: s.label for s in compare_module(root).SERVERS}
    if args.get("base"):
        labels["base"] = f"fastws at the --base checkout ({args['base']})"
    parts = [provenance(r, script_command("upgrades.py", args), None,
                        f", median of {args.get('rounds', '?')} rounds"), "",
             f"{args.get('conns', 0):,} connections echoing ({args.get('inflight')} × 32 B in "
             f"flight each), then the same with "
             + (f"a closed-loop prober keeping {args['closed']} handshakes in flight on top "
                "(the next one starts as one completes; the last column counts the pacing "
                "it skipped, not failures)." if args.get("closed") else
                f"{args.get('churn', 0):,.0f} new upgrades per second offered on top."), "",
             "| server | echo msg/s | with new users | echo drop | upgrades/s | handshake p50 ms "
             "| p99 ms | failed | not started (no free slot) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in summary.items():
        label = labels.get(name, name)
        if "error" in m:
            parts.append(f"| {label} | error: {m['error']} | | | | | | | |")
            continue
        parts.append(f"| {label} | {m['echo_msg_s']:,.0f} | {m['echo_with_churn_msg_s']:,.0f} | "
                     f"{100 * m['drop']:.0f} % | {m['upgrades_per_s']:,.0f} | {m['p50_ms']:.1f} | "
                     f"{m['p99_ms']:.1f} | {m['failed']:,} | {m['skipped']:,} |")
    for name, why in (r.data.get("skipped") or {}).items():
        parts.append(f"| {labels.get(name, name)} | skipped: {why} | | | | | | | |")
    return Section("\n".join(parts))


def _env_text(pairs: Iterable[str]) -> str:
    pairs = list(pairs)
    return f" with `{' '.join(pairs)}`" if pairs else ""


def _sides(args: dict) -> str:
    """Which builds an A/B run compared, from its saved arguments."""
    if args.get("base_server"):
        return (f"Base: the peer `{args['base_server']}` of `bench/compare.py`; new: this "
                f"checkout's build{_env_text(args.get('env') or [])}.")
    base = args.get("base")
    where = "this checkout's build" if base in (".", "./") else f"the build at `{base}`"
    return (f"Base: {where}{_env_text(args.get('base_env') or [])}; new: this checkout's "
            f"build{_env_text(args.get('env') or [])}.")


def _figure(v: float | int | None) -> str:
    """A table cell: counts as integers, large figures without decimals."""
    if v is None:
        return "–"
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.2f}"


def section_abtest(root: Path) -> Section:
    """Interleaved rounds (bench/abtest.py): the newest run against another build,
    and the newest against a peer (``--base-server``), each with its medians."""
    def against_peer(d: dict) -> bool:
        return bool(d.get("args", {}).get("base_server"))

    runs = [r for r in (newest(root, "abtest", lambda d: not against_peer(d)),
                        newest(root, "abtest", against_peer)) if r is not None]
    if not runs:
        return Section("No run of `bench/abtest.py` in `bench/results/` yet.")
    parts: list[str] = []
    for r in runs:
        args = r.data.get("args", {})
        parts += [provenance(r, script_command("abtest.py", args), None,
                             f", {args.get('rounds', '?')} rounds"), "", _sides(args), "",
                  "| figure | base (median) | new (median) | new ÷ base |",
                  "| --- | ---: | ---: | ---: |"]
        for row in r.data.get("table", []):
            ratio = "–" if row.get("ratio") is None else f"{row['ratio']:.3f}"
            parts.append(f"| {row['figure']} | {_figure(row.get('base_median'))} | "
                         f"{_figure(row.get('new_median'))} | {ratio} |")
        parts.append("")
    return Section("\n".join(parts).rstrip())


def section_instructions(root: Path) -> Section:
    """Instructions per message (bench/instructions.py): the newest run."""
    r = newest(root, "instructions")
    if r is None:
        return Section("No run of `bench/instructions.py` in `bench/results/` yet.")
    args, res = r.data.get("args", {}), r.data.get("results", {})
    sides = [s for s in ("base", "new") if s in res]
    parts = [provenance(r, script_command("instructions.py", args), None), ""]
    if args.get("base"):
        parts += [_sides(args) + " Fewest instructions over the repeats.", ""]
    head = "| figure | " + " | ".join(sides) + (" | new ÷ base |" if len(sides) == 2 else " |")
    parts += [head, "| --- |" + " ---: |" * (len(sides) + (len(sides) == 2))]
    receivers = args.get("receivers")
    for label, mode, key in (("echo: instructions per message", "echo", "per_message"),
                             (f"fan-out to {receivers:,}: per delivered message", "fanout",
                              "per_delivered"),
                             (f"fan-out to {receivers:,}: per broadcast", "fanout", "per_message")):
        if not all(res[s].get(mode) for s in sides):
            continue
        vals = [min(x[key] for x in res[s][mode]) for s in sides]
        line = f"| {label} | " + " | ".join(f"{v:,.0f}" for v in vals)
        if len(vals) == 2:
            line += f" | {vals[1] / vals[0]:.3f}"
        parts.append(line + " |")
    return Section("\n".join(parts))


def section_asgi(root: Path) -> Section:
    """FastAPI through app.mount against uvicorn (bench/asgi.py): the newest run."""
    r = newest(root, "asgi")
    if r is None:
        return Section("No run of `bench/asgi.py` in `bench/results/` yet.")
    args, versions = r.data.get("args", {}), r.data.get("versions", {})
    pinned = ", ".join(f"{k} {v}" for k, v in versions.items())
    parts = [provenance(r, script_command("asgi.py", args), None,
                        f", {args.get('rounds', '?')} rounds, {args.get('conns', '?')} "
                        f"keep-alive connections; {pinned}"), "",
             f"`GET {r.data.get('path', '?')}`, medians over the rounds.", "",
             "| figure | fastws (`app.mount`) | uvicorn | fastws ÷ uvicorn |",
             "| --- | ---: | ---: | ---: |"]
    for label, row in r.data.get("summary", {}).items():
        parts.append(f"| {label} | {_figure(row['fastws'])} | {_figure(row['uvicorn'])} | "
                     f"{row['ratio']:.3f} |")
    return Section("\n".join(parts))


def section_curves(root: Path) -> Section:
    """Cost curves (bench/curves.py): CPU per delivered message against room size
    and message size, one line per server, from the newest run."""
    # A full run only: a one-curve run (an A/B of a machine setting, say)
    # is cited where it is discussed, in bench/README.md.
    r = newest(root, "curves", lambda d: set(d["plan"]["curves"]) >= {"rooms", "sizes"})
    if r is None:
        return Section("No run of `bench/curves.py` in `bench/results/` yet.")
    cur = bench_module(root, "curves")
    data, plan = r.data, r.data["plan"]
    args = {"servers": ",".join(data["servers"]), "reference": plan["reference"],
            "curves": ",".join(plan["curves"]),
            "rooms": ",".join(map(str, plan["rooms"])), "room_msg_size": plan["room_msg_size"],
            "sizes": ",".join(map(str, plan["sizes"])), "size_room": plan["size_room"],
            "window": plan["window"], "window_bytes": plan["window_bytes"],
            "warmup": plan["warmup"], "duration": plan["duration"], "drain": plan["drain"]}
    tree = data.get("fastws_tree") or {}
    extra = f"; fastws at `{tree['commit']}`" if tree.get("commit") else ""
    if tree.get("src_changes"):
        extra += " with uncommitted changes in `src/`"
    parts = [provenance(r, script_command("curves.py", args), compare_machine(data), extra), ""]
    charts: dict[str, str] = {}
    ran = cur._ran(data)
    for curve in plan["curves"]:
        keys = plan["rooms"] if curve == "rooms" else plan["sizes"]
        series = []
        for name in ran:
            pts = [(k, c) for k in keys if (c := cur._cpu(data, name, curve, k)) is not None]
            if pts:
                series.append((data["servers"][name]["label"], pts, name == "fastws"))
        if not series:
            continue
        if curve == "rooms":
            title = (f"Server CPU per delivered message against room size "
                     f"({cur.size_label(plan['room_msg_size'])} messages, {r.when:%Y-%m-%d})")
            axis = "receivers in the room (log scale)"
        else:
            title = (f"Server CPU per delivered message against message size (room of "
                     f"{plan['size_room']:,}, {r.when:%Y-%m-%d})")
            axis = "message size in bytes (log scale)"
        name = f"curves-{curve}.svg"
        charts[name] = line_chart(title, series, axis, "server CPU µs per delivered message (log)")
        parts += [_image(name, title), ""]
    parts.append(cur.render(data))
    return Section("\n".join(parts), charts)


SECTIONS: dict[str, Callable[[Path], Section]] = {
    "compare": section_compare,
    "compare-later": section_compare_later,
    "deflate": section_deflate,
    "cluster": section_cluster,
    "upgrades": section_upgrades,
    "abtest": section_abtest,
    "instructions": section_instructions,
    "asgi": section_asgi,
    "curves": section_curves,
}


def render_page(markdown: str, root: Path,
                sections: dict[str, Callable[[Path], Section]] | None = None,
                page: str = PAGE) -> tuple[str, dict[str, str]]:
    """``markdown`` (the page ``page``) with every placeholder replaced from
    ``sections`` (the benchmark page's by default); and every chart made, by
    file name. An unknown placeholder is an error, not a blank."""
    sections = SECTIONS if sections is None else sections
    charts: dict[str, str] = {}

    def replace(m: re.Match) -> str:
        name = m.group(1)
        if name not in sections:
            raise ValueError(f"{page}: unknown placeholder <!-- bench:{name} --> "
                             f"(known: {', '.join(sections)})")
        section = sections[name](root)
        charts.update(section.charts)
        return section.markdown

    return PLACEHOLDER.sub(replace, markdown), charts


# ---------------------------------------------------------------- README.md and the home page

#: The home page: its headline figures are a placeholder, like the benchmark page's sections.
INDEX = "index.md"
#: A generated block of README.md: a ``<!-- readme:NAME ... -->`` line, the
#: block, and a ``<!-- /readme:NAME -->`` line.
README_BLOCK = re.compile(
    r"^(<!-- readme:([a-z-]+)(?=\s)[^\n]*-->)\n(.*?)^(<!-- /readme:\2 -->)$", re.M | re.S)
README_COMMAND = "python docs/hooks/charts.py --readme"
#: What a row stands for, where compare.py's label says only what the server is.
_ROLES = {"floor": "the floor"}


@dataclass
class Headline:
    """The peer comparison's figures as README.md's "How fast" and the home page
    quote them, all from one result file."""

    result: Result
    #: README: how, when and on what the run was made, and what its modes mean.
    lead: str
    #: README: one row per server.
    table: str
    #: README: fastws against the peers not built on uWebSockets, and losses.
    verdict: str
    #: README: the chart compare.py saved next to its JSON ("" if none).
    chart: str
    #: docs/index.md: the sentences of the headline placeholder.
    index: str


def _wrap(text: str) -> str:
    # Not at hyphens: a date or a file name split across lines reads badly.
    return textwrap.fill(text, 88, break_on_hyphens=False, break_long_words=False)


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def _times_short(v: float) -> str:
    """A ratio in the prose: two significant digits (1.6, 3.5, 27, 34)."""
    return f"{v:.1f}" if v < 10 else f"{v:.0f}"


def _row_name(name: str, e: dict) -> str:
    """``websockets 17.4 (uvloop)``: compare.py's label and version, without the
    version's aside (Node's own version) that the table has no room for."""
    base, _, aside = e["label"].partition(" (")
    version = e.get("version", "")
    version = "" if version.startswith("(") else version.partition(" (")[0]
    aside = _ROLES.get(name) or aside.rstrip(")")
    return f"{base} {version}".strip() + (f" ({aside})" if aside else "")


class _Run:
    """One peer comparison's summary figures, as the prose and the table need them."""

    def __init__(self, r: Result, cmp: Any) -> None:
        self.r, self.cmp, self.data, self.plan = r, cmp, r.data, r.data["plan"]
        self.ok = {n: e for n, e in self.data["servers"].items() if e.get("status") == "ok"}
        self.rooms = self.plan["table_rooms"]
        self.groups = [m for m in (cmp.ROOMS_MODE, cmp.CHAT_MODE) if m in self.plan["modes"]]
        self.figs = {}
        for name, e in self.ok.items():
            self.figs[name] = cmp.metrics(e, self.rooms)
            for mode in self.groups:
                self.figs[name][mode] = cmp.group_metrics(e, mode)["cpu"]
        # The servers the prose sets fastws against as a group: those that
        # echoed (the floor is no WebSocket server) and are not built on
        # uWebSockets, whose servers the prose names apart.
        self.peers = [n for n, e in self.ok.items() if n != "fastws"
                      and "uWebSockets" not in e["label"] and self.figs[n]["echo_cpu"] is not None]
        if not self.peers:
            raise ValueError(f"{r.rel}: no peer besides fastws and uWebSockets echoed")
        self.peer_names = _and([self.ok[n]["label"].partition(" (")[0] for n in self.peers])

    def need(self, name: str, key: str) -> float:
        """A figure the prose quotes; its absence is an error that names it."""
        v = self.figs.get(name, {}).get(key)
        if v is None:
            raise ValueError(f"{self.r.rel}: no {key} figure for {name}, which README.md "
                             f"and {INDEX} quote")
        return v

    def ratios(self, keys: list[str]) -> list[float]:
        """How many times better fastws is than each peer, figure by figure."""
        out = []
        for n in self.peers:
            for key in keys:
                a, b = self.figs["fastws"].get(key), self.figs[n].get(key)
                if a and b:
                    out.append(a / b if key in self.cmp.HIGHER_IS_BETTER else b / a)
        if not out:
            raise ValueError(f"{self.r.rel}: fastws and its peers share none of {keys}")
        return out

    def columns(self) -> list[tuple[str, str, int]]:
        """README's table: (heading, figure, digits) for the modes the run measured."""
        modes, out = self.plan["modes"], []
        if "echo" in modes:
            out += [("echo msg/s", "echo_msg_s", 0), ("echo CPU µs/msg", "echo_cpu", 2),
                    ("echo p99 µs", "echo_p99", 0)]
        if "fanout" in modes:
            out += [(f"fan-out to {room:,}" + (": CPU µs/msg" if i == 0 else ""),
                     f"fan{room}_cpu", 2) for i, room in enumerate(self.rooms)]
        out += [(f"{mode}: CPU µs/msg", mode, 2) for mode in self.groups]
        if "idle" in modes:
            n = self.plan["idle_conns"]
            out.append((f"idle KiB/conn ({n // 1000}k)" if n % 1000 == 0 else
                        f"idle KiB/conn ({n:,})", "idle_kib", 1))
        return out

    def table(self) -> str:
        """README's table: a row per server, fastws's in bold."""
        columns = self.columns()
        lines = [f"| server | {' | '.join(c[0] for c in columns)} |",
                 "| --- |" + " --- |" * len(columns)]
        for name, e in self.ok.items():
            cells = [_row_name(name, e)] + [self.cmp._num(self.figs[name][key], digits)
                                            for _, key, digits in columns]
            if name == "fastws":
                cells = [f"**{c}**" for c in cells]
            lines.append(f"| {' | '.join(cells)} |")
        return "\n".join(lines)

    def verdict(self) -> str:
        """README's paragraph under the table: fastws against the group, and losses."""
        every = self.ratios([key for _, key, _ in self.columns()])
        lo, hi = _times_short(min(every)), _times_short(max(every))
        if min(every) > 1:
            text = f"fastws is ahead of {self.peer_names} on every figure of the table, " \
                   f"by {lo}× to {hi}×."
        else:
            text = f"Against {self.peer_names}, fastws is {lo}× to {hi}× as good per " \
                   "figure of the table (below 1× it is behind)."
        lost = {}
        for name, e in self.ok.items():
            runs = list(e.get("fanout", {}).values())
            runs += [e[k] for k in map(self.cmp.result_key, self.cmp.GROUP_MODES)
                     if isinstance(e.get(k), dict)]
            count = sum(f.get("lost", 0) for f in runs if "error" not in f)
            if count:
                lost[e["label"]] = count
        if lost:
            return text + " Messages lost: " + "; ".join(f"{k} {v:,}" for k, v in lost.items()) \
                + "."
        return text + " No server lost a message."

    def lead(self) -> str:
        """README's paragraph over the table: how, when, on what, and the modes."""
        cmp, plan, data = self.cmp, self.plan, self.data
        machine = data.get("machine") or {}
        on_what = [f"{machine['cpus']} cores"] if machine.get("cpus") else []
        if machine.get("python"):
            on_what.append(f"Python {machine['python']}")
        if machine.get("tcp_congestion_control"):
            on_what.append(f"TCP congestion control {machine['tcp_congestion_control']}")
        took = f", {data['elapsed_s']:.0f} s" if isinstance(data.get("elapsed_s"), (int, float)) \
            else ""
        where = ("Server on one core, a C epoll load generator on the other"
                 if machine.get("pinned")
                 else "Server and a C epoll load generator on one machine, not pinned to cores")
        text = (f"{where}, every server measured in the same run (`{compare_command(cmp, data)}`, "
                f"{self.r.when:%Y-%m-%d %H:%M}, {', '.join(on_what) or 'machine not recorded'}"
                f"{took}; data in `{self.r.rel}`, method and details in "
                "[bench/README.md](bench/README.md)). Server CPU time per delivered message is "
                "the figure that stays stable on a shared machine.")
        if cmp.ROOMS_MODE in self.groups:
            text += (f" \"Rooms\" is {plan['room_count']:,} rooms of {plan['room_members']} "
                     "with a publisher each")
            if cmp.CHAT_MODE in self.groups:
                orjson = cmp.group_metrics(self.ok["fastws"], cmp.CHAT_ORJSON_MODE)["cpu"]
                extra = (f"; fastws with `orjson` costs {cmp._num(orjson)} µs there"
                         if orjson is not None else "")
                text += ("; \"chat\" is the same rooms with the seed's chat handler (JSON in, "
                         f"a dict broadcast out, stdlib `json`{extra})")
            text += "."
        return text

    def index(self) -> str:
        """The home page's sentences: echo and the first fan-out, and idle memory."""
        num, room = self.cmp._num, self.rooms[0]
        fan = f"fan{room}_cpu"
        two = self.ratios(["echo_cpu", fan])
        cpus = (self.data.get("machine") or {}).get("cpus")
        text = (f"{f'On a {cpus}-core machine' if cpus else 'On one machine'}, with every "
                f"server measured in the same run ({self.r.when:%Y-%m-%d}), a fastws process "
                f"spent {num(self.need('fastws', 'echo_cpu'))} µs of CPU per echoed message and "
                f"{num(self.need('fastws', fan))} µs per delivered message in a fan-out to "
                f"{room:,} receivers. {self.peer_names} spent {_times_short(min(two))} to "
                f"{_times_short(max(two))} times "
                f"{'as much' if min(two) > 1 else 'what fastws spent'}, depending on the "
                "server and the figure.")
        if "bun" in self.ok:
            text += (f" {self.ok['bun']['label']} spent {num(self.need('bun', 'echo_cpu'))} "
                     f"and {num(self.need('bun', fan))} µs.")
        return text + (f" An idle connection cost fastws about "
                       f"{self.need('fastws', 'idle_kib'):.0f} KiB of memory.")


def headline(root: Path) -> Headline:
    """README's "How fast" figures and the home page's, from the peer comparison
    that the benchmark page's first section shows (the newest one). A figure
    they quote that the run lacks is an error that names it, not a gap."""
    r = newest(root, "compare", _is_peer_comparison)
    if r is None:
        raise ValueError("no peer comparison in bench/results/: run python bench/compare.py")
    run = _Run(r, compare_module(root))
    png = r.path.with_suffix(".png")
    chart = (f"![Fan-out cost against room size]({png.relative_to(root).as_posix()})"
             if png.is_file() else "")
    return Headline(r, _wrap(run.lead()), run.table(), _wrap(run.verdict()), chart,
                    _wrap(run.index()))


INDEX_SECTIONS: dict[str, Callable[[Path], Section]] = {
    "headline": lambda root: Section(headline(root).index),
}


def readme_blocks(root: Path) -> dict[str, str]:
    """README.md's generated blocks, by name, from the newest results."""
    h = headline(root)
    return {"how-fast": f"{h.lead}\n\n{h.table}\n\n{h.verdict}", "how-fast-chart": h.chart}


def rewrite_readme(text: str, root: Path) -> str:
    """``text`` (README.md) with every generated block made anew; a block it
    lacks or does not know is an error, so a lost marker cannot pass unseen."""
    blocks = readme_blocks(root)
    seen = []

    def replace(m: re.Match) -> str:
        name = m.group(2)
        if name not in blocks:
            raise ValueError(f"README.md: unknown block <!-- readme:{name} --> "
                             f"(known: {', '.join(blocks)})")
        seen.append(name)
        body = blocks[name]
        return f"{m.group(1)}\n{body}\n{m.group(4)}" if body else f"{m.group(1)}\n{m.group(4)}"

    out = README_BLOCK.sub(replace, text)
    missing = [name for name in blocks if name not in seen]
    if missing:
        raise ValueError(f"README.md lacks the generated block(s) {', '.join(missing)}: "
                         "a <!-- readme:NAME --> line and a <!-- /readme:NAME --> line each")
    return out


def readme_stale(text: str, root: Path) -> list[str]:
    """The generated blocks of ``text`` (README.md) that differ from what
    ``rewrite_readme`` would write, by name; [] when it is current."""
    fresh = {m.group(2): m.group(3) for m in README_BLOCK.finditer(rewrite_readme(text, root))}
    return [m.group(2) for m in README_BLOCK.finditer(text) if m.group(3) != fresh[m.group(2)]]


def main(argv: list[str] | None = None) -> int:
    """``python docs/hooks/charts.py --readme``: rewrite README.md's generated
    blocks from the newest results (``--check``: only say whether they are)."""
    parser = argparse.ArgumentParser(
        prog="python docs/hooks/charts.py",
        description="README.md's benchmark figures, from the newest results in bench/results/.")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--readme", action="store_true", help="rewrite README.md's generated blocks")
    what.add_argument("--check", action="store_true",
                      help="exit 1 if they differ from what --readme would write")
    args = parser.parse_args(argv)
    root = Path(__file__).resolve().parents[2]
    path = root / "README.md"
    text = path.read_text(encoding="utf-8")
    if args.check:
        stale = readme_stale(text, root)
        if stale:
            print(f"README.md: out of date: {', '.join(stale)}; run {README_COMMAND}")
            return 1
        print("README.md: current")
        return 0
    new = rewrite_readme(text, root)
    if new != text:
        path.write_text(new, encoding="utf-8")
    print(f"README.md: {'rewritten' if new != text else 'already current'}, from "
          f"{headline(root).result.rel}")
    return 0


# ---------------------------------------------------------------- mkdocs events

_state: dict[str, Any] = {}


def on_config(config: Any) -> Any:
    """Note the repository root (the directory of mkdocs.yml)."""
    _state["root"] = Path(config.config_file_path).resolve().parent
    return config


def on_files(files: Any, config: Any) -> Any:
    """Render the benchmark page's sections now, so that its charts are files
    of the site (links to them are checked like any other)."""
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    page = files.get_file_from_path(PAGE)
    if page is None:
        return files
    try:
        text, charts = render_page(Path(page.abs_src_path).read_text(encoding="utf-8"),
                                   _state["root"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PluginError(f"docs/hooks/charts.py: cannot render {PAGE}: "
                          f"{type(exc).__name__}: {exc}") from exc
    _state["page"] = text
    for name, svg in sorted(charts.items()):
        files.append(File.generated(config, f"{CHART_DIR}/{name}", content=svg))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """The benchmark page with its sections filled in, and the home page with
    its headline figures."""
    if page.file.src_uri == PAGE and "page" in _state:
        return _state["page"]
    if page.file.src_uri == INDEX:
        from mkdocs.exceptions import PluginError
        try:
            return render_page(markdown, _state["root"], INDEX_SECTIONS, INDEX)[0]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PluginError(f"docs/hooks/charts.py: cannot render {INDEX}: "
                              f"{type(exc).__name__}: {exc}") from exc
    return markdown


if __name__ == "__main__":
    sys.exit(main())
