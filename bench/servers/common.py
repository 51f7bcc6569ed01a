"""Shared start-up for the Python peer servers: port from argv, descriptor limit."""
from __future__ import annotations

import os
import resource
import sys

HOST = "127.0.0.1"

#: BENCH_COMPRESSION=1 in the environment turns permessage-deflate on, with the
#: server's own defaults (bench/compare.py --modes fanout-deflate sets it).
COMPRESSION = os.environ.get("BENCH_COMPRESSION") == "1"


def port_from_argv() -> int:
    """Return the TCP port given as the first command-line argument."""
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} PORT")
    return int(sys.argv[1])


def raise_nofile_limit() -> None:
    """Lift the soft descriptor limit to the hard one: a 10k-connection run needs it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
