#!/usr/bin/env python3
"""Room history in memory: does ``history_max_bytes`` count real memory, and what
does storing a message cost?

    python bench/history.py                         # 10,000 rooms x 100 messages of 200 B
    python bench/history.py --rooms 1000 --messages 50 --size 500
    python bench/history.py --quick                 # a smoke run (the suite runs it)

It fills a ``MemoryHistory`` (``fastws.runtime.history``, the store behind
``websocket(history_size=N)``) in this process and reports the process's RSS growth
next to what the store says it holds (``nbytes``): their ratio is how far
``history_max_bytes`` can be trusted as a memory bound (the issue's bar: growth
within 1.1x of what it reports). Then the time per ``append``, with the room's ring
full (each append evicts one) and for a room that keeps no history.
"""
from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fastws.runtime.history import MemoryHistory  # noqa: E402


def rss_bytes() -> int:
    """This process's resident set, from /proc (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def measure(rooms: int, messages: int, size: int) -> dict:
    names = [f"chat:{i}" for i in range(rooms)]
    tail = b"x" * (size % 8)
    gc.collect()
    store = MemoryHistory(messages, 3600.0, 1 << 40)
    before = rss_bytes()
    k = 0
    for _ in range(messages):
        for room in names:
            # A distinct payload made here, as a server receives each message:
            # what stays in memory afterwards is what the store keeps.
            store.append(room, 2, (b"%08d" % k) * (size // 8) + tail)
            k += 1
    gc.collect()
    grown = rss_bytes() - before
    kept = sum(len(store.read(room, limit=messages)) for room in names[:10])
    assert kept == 10 * messages, kept

    # Time per append: rings full, so each append also drops the room's oldest.
    n = min(200_000, rooms * messages)
    payload = b"m" * size
    started = time.perf_counter()
    for i in range(n):
        store.append(names[i % rooms], 2, payload)
    full_us = (time.perf_counter() - started) / n * 1e6
    without = MemoryHistory(messages, 3600.0, 1 << 40, rooms="nothing:*")
    started = time.perf_counter()
    for i in range(n):
        without.append(names[i % rooms], 2, payload)
    without_us = (time.perf_counter() - started) / n * 1e6
    return {"rooms": rooms, "messages_per_room": messages, "payload_bytes": size,
            "reported_bytes": store.nbytes, "rss_growth_bytes": grown,
            "rss_over_reported": round(grown / store.nbytes, 3),
            "append_us": round(full_us, 3), "append_room_without_history_us": round(without_us, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rooms", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=100, help="per room (history_size)")
    ap.add_argument("--size", type=int, default=200, help="payload bytes")
    ap.add_argument("--quick", action="store_true", help="1,000 rooms x 20 messages")
    ap.add_argument("--out", type=Path, default=None, help="write the result as JSON here")
    args = ap.parse_args()
    if min(args.rooms, args.messages, args.size) <= 0:
        ap.error("--rooms, --messages and --size must be positive")
    if args.quick:
        args.rooms, args.messages = 1000, 20
    result = measure(args.rooms, args.messages, args.size)
    print(f"{result['rooms']:,} rooms x {result['messages_per_room']} messages of "
          f"{result['payload_bytes']} B")
    print(f"reported (nbytes): {result['reported_bytes']:,} B; RSS growth: "
          f"{result['rss_growth_bytes']:,} B; growth / reported: {result['rss_over_reported']}")
    print(f"append: {result['append_us']} us (ring full); "
          f"{result['append_room_without_history_us']} us for a room without history")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
