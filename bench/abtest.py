#!/usr/bin/env python3
"""Before and after: two fastws builds through the same load, interleaved, median of N.

    python bench/abtest.py --base ../before             # the checkout to compare against
    python bench/abtest.py --base ../before --rounds 3 --modes echo,fanout,idle --rooms 1000,5000
    python bench/abtest.py --base . --env FASTWS_BENCH_METRICS=1   # one build, two settings
    python bench/abtest.py --base-server bun --rounds 5            # fastws against a peer
    python bench/abtest.py --base ../before --modes rooms,chat       # 2,000 rooms of 5
    python bench/abtest.py --base ../before --modes fanout,chat --v1 \
        --env BENCH_HISTORY=100 --base-env BENCH_HISTORY=100        # recovering clients

``--base-server NAME`` takes a peer of ``compare.py`` (``bun``, ``picows``...) as the
base instead, so fastws and that peer go through the same interleaved rounds.
``--base DIR`` is another checkout of fastws with its own built venv (``DIR/.venv``, made
by the README's test command or ``pip install -e DIR``); its ``bench/servers/fastws_server.py``
is served by its ``.venv/bin/python``. "new" is this checkout, served by the interpreter
running this script. ``--env``/``--base-env KEY=VALUE`` add environment variables to
one side's server (both sides read the ``BENCH_*``/``FASTWS_BENCH_*`` switches of
``bench/servers/fastws_server.py``).

``--v1``: in the fanout, rooms and chat modes every client speaks the ``fastws.v1``
subprotocol (docs/protocol.md) as the recovering clients do (``loadgen --v1``): room
messages arrive wrapped with their room and position, and each receiver checks that its
offsets follow one another. Offsets exist only where the server keeps history, so give
both sides ``BENCH_HISTORY=N``; the report adds the v1 counters (gaps, epochs changed,
messages without a position). Both sides must speak fastws.v1 (not with
``--base-server``); echo and idle stay plain.

Each round measures every mode on both builds, one right after the other, alternating
which goes first, each on a freshly started server pinned as in ``compare.py`` (server on
CPU 0, load generator on CPU 1). The report gives each figure's median over the rounds,
the ratio new / base, and every round's value, so a reader sees the spread too.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (bench/compare.py: the harness this reuses)

FIGURES = [
    # (key, label, lower is better)
    ("echo_msg_s", "echo msg/s", False),
    ("echo_cpu", "echo server CPU µs/msg", True),
    ("echo_p99", "echo p99 µs", True),
]


def fastws_side(name: str, label: str, python: str, tree: Path, env: dict[str, str]) -> tuple:
    script = tree / "bench" / "servers" / "fastws_server.py"
    if not script.exists():
        raise SystemExit(f"abtest: {script} not found")
    server = compare.Server(name, label, lambda port: [python, str(script), str(port)],
                            lambda: None, lambda: "")
    return server, env


def parse_env(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"abtest: --env wants KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


GROUP_MODES = list(compare.GROUP_MODES)        # rooms, chat, chat-orjson
MODES = ["echo", "fanout", "idle", *GROUP_MODES]


#: loadgen --v1's counters: (result field, label). A gap is an offset that does not
#: follow the previous one; unpositioned messages came without one (no history).
V1_FIGURES = [("v1_gaps", "v1 gaps"), ("v1_epochs_changed", "v1 epochs changed"),
              ("v1_unpositioned", "v1 unpositioned")]


def figures_of(entry: dict, rooms: list[int]) -> dict[str, float | None]:
    m = compare.metrics(entry, rooms)
    for room in rooms:
        fan = compare._ok(compare._get(entry, "fanout", str(room)))
        m[f"fan{room}_p99"] = fan["latency_us"]["p99"] if fan else None
        m[f"fan{room}_msg_s"] = fan["msg_per_s"] if fan else None
        for field, _label in V1_FIGURES:
            m[f"fan{room}_{field}"] = fan.get(field) if fan and fan.get("v1") else None
    for mode in GROUP_MODES:
        key = compare.result_key(mode)
        for figure, value in compare.group_metrics(entry, mode).items():
            m[f"{key}_{figure}"] = value
        r = compare._ok(entry.get(key))
        for field, _label in V1_FIGURES:
            m[f"{key}_{field}"] = r.get(field) if r and r.get("v1") else None
    return m


def figure_list(rooms: list[int], modes: list[str],
                v1: bool = False) -> list[tuple[str, str, bool]]:
    out = []
    if "echo" in modes:
        out += FIGURES
    if "fanout" in modes:
        for room in rooms:
            out += [(f"fan{room}_cpu", f"fan-out {room:,}: server CPU µs/msg", True),
                    (f"fan{room}_msg_s", f"fan-out {room:,}: delivered msg/s", False),
                    (f"fan{room}_p99", f"fan-out {room:,}: p99 µs", True),
                    (f"fan{room}_lost", f"fan-out {room:,}: lost", True)]
            if v1:
                out += [(f"fan{room}_{field}", f"fan-out {room:,}: {label}", True)
                        for field, label in V1_FIGURES]
    if "idle" in modes:
        out.append(("idle_kib", "idle KiB/conn", True))
    for mode in GROUP_MODES:
        if mode in modes:
            key = compare.result_key(mode)
            out += [(f"{key}_cpu", f"{mode}: server CPU µs/msg", True),
                    (f"{key}_msg_s", f"{mode}: delivered msg/s", False),
                    (f"{key}_p99", f"{mode}: p99 µs", True),
                    (f"{key}_lost", f"{mode}: lost", True)]
            if mode != compare.ROOMS_MODE:
                out.append((f"{key}_corrupt", f"{mode}: corrupt", True))
            if v1:
                out += [(f"{key}_{field}", f"{mode}: {label}", True) for field, label in V1_FIGURES]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    base = ap.add_mutually_exclusive_group(required=True)
    base.add_argument("--base", help="checkout of the build to compare against")
    base.add_argument("--base-server", metavar="NAME",
                      help="a peer of compare.py (bun, picows, ...) as the base: fastws against "
                           "it in the same interleaved rounds")
    ap.add_argument("--base-python", help="its interpreter (default BASE/.venv/bin/python)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds; the median is reported (default 3)")
    ap.add_argument("--modes", default="echo,fanout,idle",
                    help=f"subset of {','.join(MODES)} (default echo,fanout,idle; see compare.py "
                         "--help)")
    ap.add_argument("--rooms", default="1000,5000", help="fan-out room sizes (default 1000,5000)")
    ap.add_argument("--echo", default="64x4x32", help="echo CONNSxINFLIGHTxBYTES (default 64x4x32)")
    ap.add_argument("--idle", type=int, default=10000, help="idle connections (default 10000)")
    ap.add_argument("--room-count", type=int, default=2000,
                    help="rooms, chat: rooms of 5 (default 2000)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--env", action="append", default=[], help="KEY=VALUE for the new side's server")
    ap.add_argument("--base-env", action="append", default=[], help="KEY=VALUE for the base side's server")
    ap.add_argument("--v1", action="store_true",
                    help="fanout, rooms, chat: clients speak the fastws.v1 subprotocol and check "
                         "their offsets (loadgen --v1); give both sides --env/--base-env "
                         "BENCH_HISTORY=N for offsets")
    ap.add_argument("--out", default=str(compare.RESULTS), help="directory for the JSON (default bench/results)")
    args = ap.parse_args(argv)
    modes = args.modes.split(",")
    if set(modes) - set(MODES):
        ap.error(f"--modes: subset of {','.join(MODES)}")
    if not 1 <= args.room_count <= compare.MAX_IN_FLIGHT // 4:
        ap.error(f"--room-count: 1 to {compare.MAX_IN_FLIGHT // 4:,} (4 messages in flight each)")
    here = Path(__file__).resolve().parents[1]
    if args.base_server:
        peers = {s.name: s for s in compare.SERVERS}
        peer = peers.get(args.base_server)
        if peer is None:
            ap.error(f"--base-server: one of {', '.join(peers)}")
        if args.v1:
            ap.error(f"--v1: only fastws speaks fastws.v1, not --base-server {peer.name}")
        reason = peer.check()
        if reason:
            ap.error(f"--base-server {peer.name}: {reason}")
        missing = [m for m in modes if m not in peer.modes]
        if missing:
            ap.error(f"--base-server {peer.name} does not take part in {', '.join(missing)}")
        base_side = (peer, parse_env(args.base_env))
    else:
        base_tree = Path(args.base).resolve()
        base_python = args.base_python or str(base_tree / ".venv" / "bin" / "python")
        if not os.access(base_python, os.X_OK):
            ap.error(f"no interpreter at {base_python}: build the base checkout's venv first")
        base_side = fastws_side("base", f"base ({base_tree.name})", base_python, base_tree,
                                parse_env(args.base_env))
    sides = {
        "base": base_side,
        "new": fastws_side("new", f"new ({here.name})", sys.executable, here, parse_env(args.env)),
    }
    if args.v1:
        for side, (_server, env) in sides.items():
            if not env.get("BENCH_HISTORY"):
                print(f"abtest: --v1: the {side} server keeps no history (no BENCH_HISTORY=N in "
                      f"its {'--env' if side == 'new' else '--base-env'}): its room messages "
                      "carry no offsets, counted as v1 unpositioned", file=sys.stderr)
    rooms = [int(r) for r in args.rooms.split(",")]
    conns, inflight, size = (int(x) for x in args.echo.lower().split("x"))
    plan = compare.Plan(modes=modes, rooms=rooms, table_rooms=rooms, echo_conns=conns,
                        echo_inflight=inflight, echo_size=size, fanout_window=16, fanout_size=64,
                        idle_conns=args.idle, warmup=args.warmup, duration=args.duration,
                        drain=5.0, deflate_rooms=[], deflate_size=1024,
                        deflate_offer=compare.BROWSER_OFFER, room_count=args.room_count,
                        v1=args.v1)
    with compare.pinned_session() as (pin, loadgen):
        runs: dict[str, list[dict]] = {"base": [], "new": []}
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="fastws-abtest-") as log_dir:
            for r in range(args.rounds):
                for mode in modes:
                    order = ["base", "new"] if (r + modes.index(mode)) % 2 == 0 else ["new", "base"]
                    for side in order:
                        server, env = sides[side]
                        one = compare.Plan(**{**plan.__dict__, "modes": [mode]})
                        entry = measure_with_env(server, one, loadgen, pin, Path(log_dir), env)
                        if len(runs[side]) <= r:
                            runs[side].append({"label": server.label, "status": "ok"})
                        for key in ("echo", "fanout", "idle",
                                    *map(compare.result_key, GROUP_MODES)):
                            if key in entry:
                                if key == "fanout":
                                    runs[side][r].setdefault("fanout", {}).update(entry["fanout"])
                                else:
                                    runs[side][r][key] = entry[key]
    report(args, sides, runs, rooms, modes, time.monotonic() - started)
    return 0


def measure_with_env(server, plan, loadgen, pin, log_dir, env):
    """compare.measure_server, with extra environment variables for the server."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return compare.measure_server(server, plan, loadgen, pin, log_dir)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def report(args, sides, runs, rooms, modes, elapsed: float) -> None:
    stamp = _dt.datetime.now()
    print(f"## fastws before/after ({stamp.isoformat(timespec='seconds')}, {elapsed:.0f} s, "
          f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f} at the end)\n")
    print(f"base: {sides['base'][0].label} {sides['base'][1] or ''}; "
          f"new: {sides['new'][0].label} {sides['new'][1] or ''}\n")
    print("| figure | base (median) | new (median) | new / base | base runs | new runs |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    table = []
    for key, label, _lower in figure_list(rooms, modes, args.v1):
        vals = {side: [figures_of(e, rooms).get(key) for e in runs[side]] for side in runs}
        med = {}
        for side, vs in vals.items():
            got = [v for v in vs if v is not None]
            med[side] = statistics.median(got) if got else None
        ratio = (med["new"] / med["base"]) if med["base"] and med["new"] is not None else None
        table.append({"figure": label, "base": vals["base"], "new": vals["new"],
                      "base_median": med["base"], "new_median": med["new"], "ratio": ratio})
        fmt = lambda v: "–" if v is None else compare._num(v)  # noqa: E731
        print(f"| {label} | {fmt(med['base'])} | {fmt(med['new'])} | "
              f"{'–' if ratio is None else f'{ratio:.3f}'} | "
              f"{', '.join(fmt(v) for v in vals['base'])} | {', '.join(fmt(v) for v in vals['new'])} |")
    compare.save_results(args.out, "abtest", stamp, {"args": vars(args), "table": table, "runs": runs})


if __name__ == "__main__":
    sys.exit(main())
