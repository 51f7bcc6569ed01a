#!/usr/bin/env python3
"""Cost curves: server CPU per delivered fan-out message against room size and against
message size, for fastws and its reference peer (Bun, i.e. uWebSockets).

    python bench/curves.py                                  # fastws and Bun, both curves (~3.5 minutes)
    python bench/curves.py --servers fastws --curves sizes --duration 2
    python bench/curves.py --rooms 100,1000 --sizes 64,64KiB --warmup 0.5 --duration 2
    python bench/curves.py --from-json bench/results/curves-<stamp>.json   # redraw, measure nothing

Two curves, each point a fresh server pinned to CPU 0 and the C load generator
(bench/loadgen.c, ``fanout`` mode: one publisher, R receivers on ``/fanout``) pinned to
CPU 1, as in compare.py:

- ``rooms``: R = 10, 30, 100, 300, 1,000, 3,000, 10,000 receivers, 64-byte messages, 16
  in flight;
- ``sizes``: 32 B to 1 MiB messages to a room of 100. The publisher keeps at most
  ``--window`` messages and at most ``--window-bytes`` bytes in flight (16 and 2 MiB by
  default, so 256 KiB runs with 8 in flight and 1 MiB with 2): each message in flight is
  queued once per receiver, and 16 MiB per socket would make the 1 MiB point a test of
  the kernel's socket memory rather than of the server.

Reported per point: server CPU per delivered message (utime + stime from /proc/PID/stat
at the edges of the measured window, read by the load generator), delivered msg/s, p99
latency, lost messages, and the ratio of each server's CPU per message to the
reference's (``--reference``, Bun by default). Servers run point by point, their order
alternating, so a change in the machine's load falls on all of them alike. Writes
bench/results/curves-<stamp>.json and two PNG charts, curves-<stamp>-rooms.png and
curves-<stamp>-sizes.png (log-log, one line per server, the ratio in a second panel).
"""
from __future__ import annotations

import argparse
import atexit
import datetime as _dt
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402

DEFAULT_ROOMS = "10,30,100,300,1000,3000,10000"
DEFAULT_SIZES = "32,256,1KiB,4KiB,16KiB,64KiB,256KiB,1MiB"
#: loadgen's fan-out payload starts with a u64 sequence number and a u64 send time.
MIN_SIZE = 16
#: max_message_size of the bench servers (fastws_server.py, bun_server.js): 1 MiB.
MAX_SIZE = 1 << 20
#: Descriptors the load generator needs besides its receivers: the publisher, epoll,
#: stdio, and some slack for the handshakes in progress.
FD_SLACK = 64
CURVES = ("rooms", "sizes")

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 1 << 10,
          "m": 1 << 20, "mib": 1 << 20, "mb": 1 << 20}


def parse_size(text: str) -> int:
    """Bytes from ``4096``, ``4K``, ``4KiB`` or ``1MiB`` (binary units, as loadgen's
    sizes and the servers' 1 MiB limit are)."""
    m = re.fullmatch(r"\s*(\d+)\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use bytes, or a K/KiB/M/MiB suffix)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def size_label(n: int) -> str:
    """``65536`` -> ``64 KiB``: the size as the charts and tables print it."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale:,} {unit}"
    return f"{n:,} B"


def window_for(size: int, window: int, window_bytes: int) -> int:
    """Messages in flight for a message size: ``window``, or fewer so that no more
    than ``window_bytes`` are in flight (at least one)."""
    return max(1, min(window, window_bytes // size))


# ------------------------------------------------------------------ measuring

def measure_point(server: compare.Server, loadgen: Path, pin: bool, log_dir: Path,
                  receivers: int, size: int, window: int, args: argparse.Namespace) -> dict:
    """One fan-out measurement on a freshly started server; the load generator's JSON,
    with ``server_cpu_pct`` added, or ``{"error": ...}``."""
    try:
        srv = compare.RunningServer(server, pin, log_dir)
    except OSError as exc:
        return {"error": f"could not start: {exc}"}
    try:
        srv.wait_ready()
        compare.wait_quiet(srv.proc.pid, settle=0.3, limit=5)
        loadgen_args = ["--receivers", str(receivers), "--window", str(window),
                        "--size", str(size), "--drain", str(args.drain),
                        "--warmup", str(args.warmup), "--duration", str(args.duration)]
        # Hang guard as compare.py's: connection set-up, the phases, and the drain.
        timeout = 120 + receivers / 50 + args.warmup + args.duration + args.drain
        result = compare.run_loadgen(loadgen, pin, "fanout", srv.port, srv.proc.pid,
                                     loadgen_args, timeout)
        if "error" in result and srv.proc.poll() is not None:
            result["server_log"] = srv.log_tail()
    except compare.ServerFailed as exc:
        result = {"error": f"did not start: {exc}"}
    except (OSError, ValueError, RuntimeError, subprocess.SubprocessError) as exc:
        result = {"error": f"harness error: {type(exc).__name__}: {exc}"}
    finally:
        srv.stop()
    if result.get("duration_s") and result.get("server_cpu_s", -1) >= 0:
        result["server_cpu_pct"] = round(100 * result["server_cpu_s"] / result["duration_s"], 1)
    return result


def _progress(name: str, tag: str, r: dict) -> None:
    if "error" in r:
        msg = f"ERROR {r['error']}"
    else:
        msg = (f"{r['server_cpu_us_per_msg']:.3f} server CPU us/msg, {r['msg_per_s']:,.0f} msg/s, "
               f"p99 {r['latency_us']['p99'] / 1000:,.1f} ms, lost {r['lost']}, "
               f"server CPU {r.get('server_cpu_pct', 0):.0f} %, "
               f"loadgen CPU {r['loadgen_cpu_pct']:.0f} %")
    print(f"curves: {name}: {tag}: {msg}", file=sys.stderr, flush=True)


def plan_points(args: argparse.Namespace) -> list[tuple[str, int, int, int]]:
    """(curve, receivers, size, window) for every point, rooms curve first."""
    points = []
    if "rooms" in args.curves:
        window = window_for(args.room_msg_size, args.window, args.window_bytes)
        points += [("rooms", r, args.room_msg_size, window) for r in args.rooms]
    if "sizes" in args.curves:
        points += [("sizes", args.size_room, s, window_for(s, args.window, args.window_bytes))
                   for s in args.sizes]
    return points


def _tree_state() -> dict:
    """The commit fastws was measured at, and whether its sources had local changes
    (other work in progress in the same tree changes what is measured)."""
    root = compare.BENCH.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root,
                              capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root,
                               capture_output=True, text=True, timeout=30).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": head, "src_changes": [ln[3:] for ln in dirty if ln.strip()]}


def run(args: argparse.Namespace) -> dict:
    """Measure every point for every chosen server; the results as saved to JSON."""
    atexit.register(compare._kill_all)
    signal.signal(signal.SIGTERM, compare._on_terminate)
    chosen = [s for s in compare.SERVERS if s.name in args.servers]
    points = plan_points(args)
    data: dict[str, Any] = {
        "machine": compare.machine_facts(),
        "fastws_tree": _tree_state(),
        "plan": {"curves": args.curves, "rooms": args.rooms, "room_msg_size": args.room_msg_size,
                 "sizes": args.sizes, "size_room": args.size_room, "window": args.window,
                 "window_bytes": args.window_bytes, "warmup": args.warmup,
                 "duration": args.duration, "drain": args.drain, "reference": args.reference,
                 "points": [{"curve": c, "receivers": r, "size": s, "window": w}
                            for c, r, s, w in points]},
        "servers": {},
    }
    started = time.monotonic()
    with compare.pinned_session(args.lock_wait) as (pin, loadgen):
        data["machine"]["pinned"] = pin
        data["load_average"] = {"start": round(os.getloadavg()[0], 2)}
        live = []
        for server in chosen:
            entry: dict[str, Any] = {"label": server.label}
            # A server may take part in some of compare.py's modes only (the bare
            # protocol floor serves idle connections, no fan-out).
            modes = getattr(server, "modes", None)
            if modes is not None and "fanout" not in modes:
                why = f"takes no part in the fan-out (its modes: {', '.join(sorted(modes))})"
            else:
                why = server.check()
            if why:
                entry.update(status="skipped", reason=why)
                print(f"curves: {server.name}: skipped: {why}", file=sys.stderr)
            else:
                entry.update(status="ok", version=server.version(), rooms={}, sizes={})
                live.append(server)
            data["servers"][server.name] = entry
        with tempfile.TemporaryDirectory(prefix="fastws-curves-") as log_dir:
            for i, (curve, receivers, size, window) in enumerate(points):
                for server in (live if i % 2 == 0 else list(reversed(live))):
                    tag = (f"{receivers:,} receivers" if curve == "rooms" else size_label(size)) \
                        + f" ({curve}, {window} in flight)"
                    print(f"curves: {server.name}: {tag} ...", file=sys.stderr, flush=True)
                    result = measure_point(server, loadgen, pin, Path(log_dir), receivers, size,
                                           window, args)
                    key = str(receivers if curve == "rooms" else size)
                    data["servers"][server.name][curve][key] = result
                    _progress(server.name, tag, result)
        data["load_average"]["end"] = round(os.getloadavg()[0], 2)
    data["elapsed_s"] = round(time.monotonic() - started, 1)
    return data


# -------------------------------------------------------------------- report

def _ok(result: dict | None) -> dict | None:
    if not result or "error" in result or result.get("server_cpu_us_per_msg", -1) <= 0:
        return None
    return result


def _cpu(data: dict, name: str, curve: str, key: int) -> float | None:
    r = _ok(data["servers"].get(name, {}).get(curve, {}).get(str(key)))
    return r["server_cpu_us_per_msg"] if r else None


def _ran(data: dict) -> list[str]:
    return [n for n, e in data["servers"].items() if e.get("status") == "ok"]


def render(data: dict) -> str:
    """Markdown: one summary table per curve, then the details of every point."""
    plan = data["plan"]
    ran = _ran(data)
    ref = plan["reference"] if plan["reference"] in ran else None
    labels = {n: data["servers"][n]["label"] for n in ran}
    out: list[str] = []
    for curve in plan["curves"]:
        keys = plan["rooms"] if curve == "rooms" else plan["sizes"]
        if curve == "rooms":
            out.append(f"Room size: {size_label(plan['room_msg_size'])} messages, "
                       "server CPU µs per delivered message:")
        else:
            out.append(f"Message size: room of {plan['size_room']:,} receivers, server CPU µs "
                       "per delivered message (and ns per delivered payload byte):")
        out.append("")
        head = ["receivers" if curve == "rooms" else "size", "in flight"]
        head += [labels[n] for n in ran]
        others = [n for n in ran if n != ref] if ref else []
        head += [f"{labels[n]} ÷ {labels[ref]}" for n in others]
        out += [f"| {' | '.join(head)} |", "| --- |" + " ---: |" * (len(head) - 1)]
        windows = {(p["curve"], p["receivers"] if curve == "rooms" else p["size"]): p["window"]
                   for p in plan["points"]}
        for key in keys:
            row = [f"{key:,}" if curve == "rooms" else size_label(key),
                   str(windows.get((curve, key), "–"))]
            for n in ran:
                cpu = _cpu(data, n, curve, key)
                raw = data["servers"][n][curve].get(str(key), {})
                if cpu is None:
                    row.append(f"error: {raw.get('error', 'no figure')}"[:80] if raw else "–")
                elif curve == "sizes":
                    row.append(f"{compare._num(cpu)} ({1000 * cpu / key:.3g} ns/B)")
                else:
                    row.append(compare._num(cpu))
            for n in others:
                a, b = _cpu(data, n, curve, key), _cpu(data, ref, curve, key)
                row.append(f"{a / b:.2f}×" if a and b else "–")
            out.append(f"| {' | '.join(row)} |")
        out.append("")
    out += ["Every point (one fresh server each):", "",
            "| curve | receivers | size | in flight | server | delivered msg/s | server CPU µs/msg "
            "| server CPU % | p50 ms | p99 ms | lost | stalls | loadgen CPU % |",
            "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
            "| ---: |"]
    for p in plan["points"]:
        key = p["receivers"] if p["curve"] == "rooms" else p["size"]
        for n in ran:
            r = data["servers"][n][p["curve"]].get(str(key))
            if r is None:
                continue
            lead = (f"| {p['curve']} | {p['receivers']:,} | {size_label(p['size'])} | "
                    f"{p['window']} | {labels[n]} |")
            if "error" in r:
                out.append(f"{lead} error: {r['error'][:120]} |" + " |" * 7)
                continue
            out.append(f"{lead} {compare._num(r['msg_per_s'], 0)} | "
                       f"{compare._num(r['server_cpu_us_per_msg'])} | "
                       f"{compare._num(r.get('server_cpu_pct'), 0)} | "
                       f"{r['latency_us']['p50'] / 1000:,.2f} | {r['latency_us']['p99'] / 1000:,.2f} | "
                       f"{r['lost']:,} | {r['stalls']:,} | {compare._num(r['loadgen_cpu_pct'], 0)} |")
    skipped = [e for e in data["servers"].values() if e.get("status") != "ok"]
    if skipped:
        out += ["", "Skipped:", ""] + [f"- {e['label']}: {e.get('reason', '?')}" for e in skipped]
    return "\n".join(out)


def write_chart(data: dict, curve: str, path: Path) -> str | None:
    """One curve's chart: CPU per delivered message (log-log) above, each server's
    ratio to the reference below. None when written, else why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter, NullFormatter
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]')"
    plan = data["plan"]
    ran = _ran(data)
    ref = plan["reference"] if plan["reference"] in ran else None
    keys = plan["rooms"] if curve == "rooms" else plan["sizes"]
    series = {}
    for n in ran:
        pts = [(k, _cpu(data, n, curve, k)) for k in keys]
        pts = [(k, v) for k, v in pts if v]
        if pts:
            series[n] = pts
    if not series:
        return f"no {curve} results to plot"
    ratios = {}
    if ref in series:
        for n in series:
            if n == ref:
                continue
            pts = [(k, _cpu(data, n, curve, k) / _cpu(data, ref, curve, k)) for k in keys
                   if _cpu(data, n, curve, k) and _cpu(data, ref, curve, k)]
            if pts:
                ratios[n] = pts
    panels = 2 if ratios else 1
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(8, 7 if panels == 2 else 5),
                             dpi=120, gridspec_kw={"height_ratios": [3, 1.4][:panels]},
                             squeeze=False)
    ax = axes[0][0]
    for n, pts in series.items():
        xs, ys = zip(*pts)
        style = dict(linewidth=3, color="black") if n == "fastws" else dict(linewidth=1.5)
        ax.plot(xs, ys, marker="o", label=data["servers"][n]["label"], **style)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _pos: f"{v:,.0f}" if v >= 10 else f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    values = [v for pts in series.values() for _, v in pts]
    if max(values) / min(values) < 10:
        # Less than a decade (the room curve): label every minor tick, or the
        # axis would show one number or none.
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.yaxis.set_minor_formatter(FuncFormatter(compare._label_2_and_5))
    ax.set_ylabel("server CPU µs per delivered message (log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    date = data["date"][:16].replace("T", " ")
    if curve == "rooms":
        ax.set_title(f"Fan-out cost against room size: {size_label(plan['room_msg_size'])} "
                     f"messages, {window_for(plan['room_msg_size'], plan['window'], plan['window_bytes'])}"
                     f" in flight ({date})")
        xlabel, xfmt = "receivers in the room (log)", (lambda v, _pos: f"{v:,.0f}")
    else:
        ax.set_title(f"Fan-out cost against message size: room of {plan['size_room']:,} "
                     f"({date})")
        xlabel, xfmt = ("message size (log; in flight: at most "
                        f"{plan['window']} and {size_label(plan['window_bytes'])})",
                        lambda v, _pos: size_label(int(v)))
    bottom = axes[-1][0]
    if ratios:
        for n, pts in ratios.items():
            xs, ys = zip(*pts)
            style = dict(linewidth=3, color="black") if n == "fastws" else dict(linewidth=1.5)
            bottom.plot(xs, ys, marker="o",
                        label=f"{data['servers'][n]['label']} ÷ {data['servers'][ref]['label']}",
                        **style)
        bottom.axhline(1.0, color="grey", linewidth=1, linestyle="--")
        top = max(y for pts in ratios.values() for _, y in pts)
        low = min(y for pts in ratios.values() for _, y in pts)
        bottom.set_ylim(min(0.5, low * 0.9), max(1.5, top * 1.1))
        bottom.set_ylabel("CPU ratio")
        bottom.grid(True, which="both", alpha=0.3)
        bottom.legend(fontsize=8)
    bottom.set_xticks(keys)
    bottom.xaxis.set_major_formatter(FuncFormatter(xfmt))
    bottom.xaxis.set_minor_formatter(NullFormatter())
    bottom.set_xlabel(xlabel)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return None


# ---------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    names = [s.name for s in compare.SERVERS]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--servers", default="fastws,bun",
                    help=f"comma-separated, any of: {', '.join(names)}")
    ap.add_argument("--reference", default="bun",
                    help="server the ratios divide by (left out when it is not run)")
    ap.add_argument("--curves", default="rooms,sizes", help="which curves: rooms, sizes or both")
    ap.add_argument("--rooms", default=DEFAULT_ROOMS, help="receivers per point of the room curve")
    ap.add_argument("--room-msg-size", default="64",
                    help="message size of the room curve (bytes, or with K/KiB/M/MiB)")
    ap.add_argument("--sizes", default=DEFAULT_SIZES,
                    help=f"message sizes of the size curve, {MIN_SIZE} B to {size_label(MAX_SIZE)}")
    ap.add_argument("--size-room", type=int, default=100, help="receivers of the size curve")
    ap.add_argument("--window", type=int, default=16, help="most messages in flight")
    ap.add_argument("--window-bytes", default="2MiB",
                    help="most bytes in flight: large messages run with fewer in flight")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring, per point")
    ap.add_argument("--duration", type=float, default=5.0, help="measured seconds, per point")
    ap.add_argument("--drain", type=float, default=2.0,
                    help="seconds to wait for the messages in flight after measuring")
    ap.add_argument("--out", default=str(compare.RESULTS), help="directory for the JSON and PNGs")
    ap.add_argument("--lock-wait", type=float, default=1200,
                    help="seconds to wait for another benchmark holding the machine lock")
    ap.add_argument("--from-json", metavar="PATH",
                    help="measure nothing: print the tables and redraw the charts of a saved "
                         "run (the charts next to it)")
    args = ap.parse_args(argv)
    if args.from_json:
        return args
    args.servers = [s for s in args.servers.split(",") if s]
    unknown = sorted(set(args.servers) - set(names))
    if unknown or not args.servers:
        ap.error(f"--servers: unknown {', '.join(unknown) or '(none given)'}; "
                 f"known: {', '.join(names)}")
    args.curves = [c for c in args.curves.split(",") if c]
    if not args.curves or set(args.curves) - set(CURVES):
        ap.error(f"--curves: a comma-separated subset of {', '.join(CURVES)}")
    try:
        args.rooms = [int(r) for r in args.rooms.split(",")]
        args.sizes = [parse_size(s) for s in args.sizes.split(",")]
        args.room_msg_size = parse_size(args.room_msg_size)
        args.window_bytes = parse_size(args.window_bytes)
    except ValueError as exc:
        ap.error(str(exc))
    for what, sizes in (("--sizes", args.sizes), ("--room-msg-size", [args.room_msg_size])):
        bad = [s for s in sizes if not MIN_SIZE <= s <= MAX_SIZE]
        if bad:
            ap.error(f"{what}: {', '.join(map(str, bad))} out of range: loadgen needs at least "
                     f"{MIN_SIZE} bytes (sequence number and send time) and the bench servers "
                     f"accept at most {size_label(MAX_SIZE)}")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    most = hard - FD_SLACK if hard != resource.RLIM_INFINITY else 1 << 20
    for what, rooms in (("--rooms", args.rooms), ("--size-room", [args.size_room])):
        bad = [r for r in rooms if not 1 <= r <= most]
        if bad:
            ap.error(f"{what}: {', '.join(map(str, bad))} out of range 1 to {most:,} "
                     f"(the descriptor limit is {hard:,} per process)")
    if not 1 <= args.window <= 16384:
        ap.error("--window: 1 to 16,384 (loadgen's ring)")
    if args.window_bytes < 1:
        ap.error("--window-bytes must be positive")
    if args.duration <= 0 or args.warmup < 0 or args.drain < 0:
        ap.error("--duration must be positive, --warmup and --drain not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, print the tables, write the JSON and the charts."""
    args = parse_args(argv)
    if args.from_json:
        path = Path(args.from_json)
        data = json.loads(path.read_text())
        print(render(data))
        for curve in data["plan"]["curves"]:
            draw(data, curve, path)
        return 0
    stamp = _dt.datetime.now()
    data = run(args)
    data["date"] = stamp.isoformat(timespec="seconds")
    print(f"## Cost curves ({data['date']}, {data['elapsed_s']:.0f} s, load average "
          f"{data['load_average']['start']:.1f} at the start, "
          f"{data['load_average']['end']:.1f} at the end)\n")
    print(render(data))
    path = compare.save_results(args.out, "curves", stamp, {k: v for k, v in data.items()
                                                            if k != "date"})
    for curve in args.curves:
        draw(data, curve, path)
    return 0


def draw(data: dict, curve: str, json_path: Path) -> None:
    """Write one curve's chart next to the run's JSON and say where (or why not)."""
    png = json_path.with_name(f"{json_path.stem}-{curve}.png")
    why = write_chart(data, curve, png)
    print(f"chart: {png}" if why is None else f"chart ({curve}): not written ({why})")


if __name__ == "__main__":
    sys.exit(main())
