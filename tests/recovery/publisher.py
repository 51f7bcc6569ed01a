"""A publisher in its own process: POSTs numbered messages 1..COUNT to
``/publish/ROOM`` on a fastws server (the route calls ``app.broadcast``), one
HTTP keep-alive connection, each answered 200 before the next. At each count
in PAUSES it prints ``at N`` and waits for a line on stdin before going on;
at the end it prints ``done N``.

    python publisher.py PORT ROOM COUNT [PAUSES]     (PAUSES: 300,700)
"""

from __future__ import annotations

import http.client
import sys


def main() -> None:
    port, room, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    pauses = {int(n) for n in sys.argv[4].split(",")} if len(sys.argv) > 4 and sys.argv[4] else set()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for i in range(1, count + 1):
        conn.request("POST", f"/publish/{room}", body=str(i).encode())
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            print(f"failed {i} {resp.status}", flush=True)
            sys.exit(1)
        if i in pauses:
            print(f"at {i}", flush=True)
            if not sys.stdin.readline():
                return
    print(f"done {count}", flush=True)


if __name__ == "__main__":
    main()
