#!/usr/bin/env python3
"""New users under load: how fast upgrades complete while established connections
echo flat out, and what the new users cost the established ones.

    python bench/upgrades.py                          # fastws and Bun, 5 rounds (~8 minutes)
    python bench/upgrades.py --servers fastws --rounds 3
    python bench/upgrades.py --base ../before         # also a fastws checkout to compare against
    python bench/upgrades.py --closed 16              # a closed-loop prober: 16 handshakes in flight

Each round, for each server (order alternating between rounds), two runs on a fresh
server pinned to CPU 0 with the C load generator on CPU 1 (as in compare.py):

1. ``echo``: C connections (default 2,000) each keeping P messages (default 2) of 32 B
   in flight, as fast as the server answers;
2. the same plus ``--churn R``: R new connections per second (default 1,000), each
   timed from connect() to its 101 and then reset. With ``--closed N`` the new
   connections come from a closed-loop prober instead: N handshakes always in
   flight, the next started as soon as one completes, so "upgrades/s" is the most
   the server lets through while it echoes (the load generator's ``--churn`` at a
   rate no server reaches, with ``--churn-max N``; attempts it had no free slot for
   are not failures, only the pacing it skips).

Reported per server, as the median over the rounds: echo msg/s without and with the
churn and the drop between them, upgrades completed per second, and the handshake's
p50 and p99. The load generator is on the other core and busy too: its own delay is
in the handshake times, for every server alike (Bun, on uWebSockets, shows what this
machine and harness allow).
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
import compare  # noqa: E402


#: The --churn rate of a closed-loop run: far above what any server completes, so
#: the prober's slots (--churn-max) are what limits it.
CLOSED_RATE = 1_000_000


def one_run(server: compare.Server, loadgen: Path, pin: bool, log_dir: Path, conns: int,
            inflight: int, churn: float, warmup: float, duration: float,
            churn_max: int | None = None) -> dict:
    srv = compare.RunningServer(server, pin, log_dir)
    try:
        srv.wait_ready()
        compare.wait_quiet(srv.proc.pid, settle=0.3, limit=5)
        args = ["--conns", str(conns), "--inflight", str(inflight), "--size", "32",
                "--warmup", str(warmup), "--duration", str(duration)]
        if churn:
            args += ["--churn", str(churn)]
            if churn_max is not None:
                args += ["--churn-max", str(churn_max)]
        return compare.run_loadgen(loadgen, pin, "echo", srv.port, srv.proc.pid, args,
                                   timeout=180 + conns / 50)
    except compare.ServerFailed as exc:
        return {"error": f"did not start: {exc}"}
    finally:
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--servers", default="fastws,bun", help="comma-separated, from compare.py (default fastws,bun)")
    ap.add_argument("--base", help="another fastws checkout (with its .venv) to measure too, as 'base'")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; medians are reported (default 5)")
    ap.add_argument("--conns", type=int, default=2000, help="established echo connections (default 2000)")
    ap.add_argument("--inflight", type=int, default=2, help="messages in flight per connection (default 2)")
    ap.add_argument("--churn", type=float, default=1000, help="new upgrades per second offered (default 1000)")
    ap.add_argument("--closed", type=int, metavar="N",
                    help="a closed-loop prober with N handshakes in flight instead of --churn")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--out", default=str(compare.RESULTS), help="directory for the JSON (default bench/results)")
    args = ap.parse_args(argv)
    if args.closed is not None:
        if args.closed < 1:
            ap.error("--closed takes a count of handshakes in flight, at least 1")
        args.churn = CLOSED_RATE
    known = {s.name: s for s in compare.SERVERS}
    chosen = []
    for name in args.servers.split(","):
        if name not in known:
            ap.error(f"unknown server {name!r}; known: {', '.join(known)}")
        chosen.append(known[name])
    if args.base:
        base = Path(args.base).resolve()
        py = str(base / ".venv" / "bin" / "python")
        script = base / "bench" / "servers" / "fastws_server.py"
        chosen.append(compare.Server("base", f"fastws base ({base.name})",
                                     lambda port: [py, str(script), str(port)], lambda: None,
                                     lambda: "base"))
    runs: dict[str, list[dict]] = {s.name: [] for s in chosen}
    started = time.monotonic()
    with compare.pinned_session() as (pin, loadgen):
        skipped = {}
        for s in chosen:
            why = s.check()
            if why:
                skipped[s.name] = why
        live = [s for s in chosen if s.name not in skipped]
        with tempfile.TemporaryDirectory(prefix="fastws-upgrades-") as log_dir:
            for r in range(args.rounds):
                order = live if r % 2 == 0 else list(reversed(live))
                for s in order:
                    pair = {}
                    for churn in (0, args.churn):
                        print(f"upgrades: round {r + 1}: {s.name}: churn {churn:g} ...",
                              file=sys.stderr, flush=True)
                        pair["churn" if churn else "echo"] = one_run(
                            s, loadgen, pin, Path(log_dir), args.conns, args.inflight, churn,
                            args.warmup, args.duration, args.closed)
                    runs[s.name].append(pair)
    report(args, chosen, runs, skipped, time.monotonic() - started)
    return 0


def summarize(pairs: list[dict]) -> dict:
    ok = [p for p in pairs if "error" not in p["echo"] and "error" not in p["churn"]]
    if not ok:
        return {"error": next((p[k]["error"] for p in pairs for k in p if "error" in p[k]), "no run")}
    echo = [p["echo"]["msg_per_s"] for p in ok]
    loaded = [p["churn"]["msg_per_s"] for p in ok]
    drops = [1 - b / a for a, b in zip(echo, loaded)]
    churn = [p["churn"]["churn"] for p in ok]
    return {
        "rounds": len(ok),
        "echo_msg_s": statistics.median(echo),
        "echo_with_churn_msg_s": statistics.median(loaded),
        "drop": statistics.median(drops),
        "drops": drops,
        "upgrades_per_s": statistics.median(c["upgrades_per_s"] for c in churn),
        "p50_ms": statistics.median(c["handshake_us"]["p50"] for c in churn) / 1000,
        "p99_ms": statistics.median(c["handshake_us"]["p99"] for c in churn) / 1000,
        "failed": sum(c["measured_failed"] for c in churn),
        "skipped": sum(c["skipped"] for c in churn),
    }


def report(args, chosen, runs, skipped, elapsed: float) -> None:
    stamp = _dt.datetime.now()
    print(f"## New upgrades under load ({stamp.isoformat(timespec='seconds')}, {elapsed:.0f} s, "
          f"load average {os.getloadavg()[0]:.1f} at the end)\n")
    offered = (f"a closed-loop prober keeping {args.closed} handshakes in flight"
               if args.closed is not None else f"{args.churn:,.0f} new upgrades/s offered")
    print(f"{args.conns:,} connections x {args.inflight} x 32 B echoing; {offered}; "
          f"median of {args.rounds} rounds, each run {args.duration:g} s.\n")
    print("| server | echo msg/s | with new users | echo drop | upgrades/s | handshake p50 ms | "
          "p99 ms | failed | not started (no free slot) | drops per round |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    summary = {}
    for s in chosen:
        if s.name in skipped:
            print(f"| {s.label} | skipped: {skipped[s.name]} | | | | | | | | |")
            continue
        m = summary[s.name] = summarize(runs[s.name])
        if "error" in m:
            print(f"| {s.label} | error: {m['error']} | | | | | | | | |")
            continue
        print(f"| {s.label} | {m['echo_msg_s']:,.0f} | {m['echo_with_churn_msg_s']:,.0f} | "
              f"{100 * m['drop']:.0f} % | {m['upgrades_per_s']:,.0f} | {m['p50_ms']:.1f} | "
              f"{m['p99_ms']:.1f} | {m['failed']} | {m['skipped']} | "
              f"{', '.join(f'{100 * d:.0f} %' for d in m['drops'])} |")
    compare.save_results(args.out, "upgrades", stamp, {"args": vars(args), "summary": summary,
                                                      "runs": runs, "skipped": skipped})


if __name__ == "__main__":
    sys.exit(main())
