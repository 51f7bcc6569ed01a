#!/usr/bin/env python3
"""FastAPI through ``app.mount`` against the same app under uvicorn: requests/s and CPU.

    python bench/asgi.py                     # 3 interleaved rounds (~2 minutes)
    python bench/asgi.py --rounds 5 --conns 64 --duration 5

One FastAPI app (``bench/servers/fastapi_app.py``: ``GET /items/{item_id}?q=...`` with a
validated response model) is served two ways, one process each, pinned to CPU 0:

* fastws: ``app.mount("/", api)`` beside a fastws WebSocket route
  (``bench/servers/fastws_asgi_server.py``);
* uvicorn with uvloop and httptools, no access log (``uvicorn_fastapi_server.py``).

The load is ``bench/httpload.c`` on CPU 1 (built here with ``cc``): C keep-alive
connections, one request in flight each. Each round measures both servers, alternating
which goes first, each freshly started; the report gives each figure's median over the
rounds, every round's value, and the ratio fastws / uvicorn. Needs the bench extra
(``pip install -e '.[bench]'``: fastapi, uvicorn[standard]).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare  # noqa: E402  (bench/compare.py: pinning, process helpers, results)

SIDES = {
    "fastws": "fastws_asgi_server.py",
    "uvicorn": "uvicorn_fastapi_server.py",
}
PATH = "/items/42?q=chat&limit=5"


def build_httpload() -> Path:
    """Compile bench/httpload.c unless the binary is newer than the source."""
    src = compare.BENCH / "httpload.c"
    exe = compare.BUILD / "httpload"
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SystemExit("asgi: no C compiler (cc) found to build bench/httpload.c")
    compare.BUILD.mkdir(exist_ok=True)
    subprocess.run([cc, "-O2", "-Wall", "-o", str(exe), str(src), "-lm"], check=True)
    return exe


def http_ok(port: int) -> bool:
    """True when GET PATH answers 200."""
    try:
        with socket.create_connection((compare.HOST, port), timeout=2) as s:
            s.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def measure(name: str, pin: bool, httpload: Path, args: argparse.Namespace, log_dir: Path) -> dict:
    """Start ``name``'s server, warm it, load it, stop it; the load generator's figures."""
    port = compare.free_port()
    argv = [sys.executable, str(compare.SERVERS_DIR / SIDES[name]), str(port)]
    if pin:
        argv = ["taskset", "-c", str(compare.SERVER_CPU), *argv]
    log = open(log_dir / f"{name}.log", "ab")
    proc = compare._spawn(argv, cwd=compare.SERVERS_DIR, stdin=subprocess.DEVNULL,
                          stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not http_ok(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"asgi: {name} did not start; see {log_dir / (name + '.log')}")
            time.sleep(0.2)
        load = [str(httpload), "--port", str(port), "--path", PATH, "--conns", str(args.conns),
                "--warmup", str(args.warmup), "--duration", str(args.duration),
                "--pid", str(proc.pid)]
        if pin:
            load = ["taskset", "-c", str(compare.LOADGEN_CPU), *load]
        out = subprocess.run(load, capture_output=True, text=True,
                             timeout=args.warmup + args.duration + 60)
        lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"asgi: httpload printed nothing: {out.stderr.strip()}")
        result = json.loads(lines[-1])
        if "error" in result or result.get("errors") or result.get("non2xx"):
            raise SystemExit(f"asgi: {name}: {result}")
        return result
    finally:
        compare._kill_group(proc)
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--out", default=str(compare.RESULTS))
    args = ap.parse_args()
    stamp = _dt.datetime.now()
    runs: dict[str, list[dict]] = {name: [] for name in SIDES}
    with compare.pinned_session() as (pin, _loadgen):
        httpload = build_httpload()
        log_dir = Path(tempfile.mkdtemp(prefix="fastws-asgi-"))
        names = list(SIDES)
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):
                res = measure(name, pin, httpload, args, log_dir)
                runs[name].append(res)
                print(f"asgi: round {r + 1} {name}: {res['req_per_s']:,.0f} req/s, "
                      f"{res.get('cpu_us_per_req', float('nan')):.1f} server CPU us/req, "
                      f"p99 {res['latency_us']['p99']:,.0f} us", flush=True)

    figures = [("requests/s", lambda x: x["req_per_s"], "{:,.0f}"),
               ("server CPU µs/request", lambda x: x.get("cpu_us_per_req"), "{:.1f}"),
               ("p50 µs", lambda x: x["latency_us"]["p50"], "{:,.0f}"),
               ("p99 µs", lambda x: x["latency_us"]["p99"], "{:,.0f}")]
    print(f"\nFastAPI `GET {PATH}`, {args.conns} keep-alive connections, "
          f"{args.rounds} rounds, medians\n")
    print("| figure | fastws (app.mount) | uvicorn | fastws / uvicorn | fastws runs | uvicorn runs |")
    print("| --- | ---: | ---: | ---: | --- | --- |")
    summary = {}
    for label, get, fmt in figures:
        vals = {n: [get(x) for x in runs[n]] for n in SIDES}
        med = {n: statistics.median(v) for n, v in vals.items()}
        summary[label] = {**med, "ratio": med["fastws"] / med["uvicorn"]}
        print(f"| {label} | {fmt.format(med['fastws'])} | {fmt.format(med['uvicorn'])} | "
              f"{med['fastws'] / med['uvicorn']:.3f} | "
              f"{', '.join(fmt.format(v) for v in vals['fastws'])} | "
              f"{', '.join(fmt.format(v) for v in vals['uvicorn'])} |")
    versions = {d: compare._dist_version(d)() for d in ("fastapi", "starlette", "uvicorn", "uvloop",
                                                        "httptools")}
    compare.save_results(args.out, "asgi", stamp, {
        "args": vars(args), "path": PATH, "versions": versions, "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
