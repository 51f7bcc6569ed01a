"""The ``fastws`` command: ``fastws module:app [--host H] [--port P] [--workers N]
[--backplane URL]``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

__all__ = ["main", "load_app"]


def load_app(spec: str):
    """Import ``module:attribute`` (attribute defaults to ``app``)."""
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr or "app")
    except AttributeError:
        raise SystemExit(f"fastws: module {module_name!r} has no attribute {attr or 'app'!r}") from None


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve the named app until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(prog="fastws", description="Serve a fastws app.")
    parser.add_argument("app", help="the app to serve, as module:attribute (e.g. chat:app)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port to bind (default 3000)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes on the one port (default 1; more need a backplane)")
    parser.add_argument("--backplane", default=os.environ.get("FASTWS_BACKPLANE"), metavar="URL",
                        help="Redis URL of the backplane that makes rooms span processes and "
                             "machines (default: $FASTWS_BACKPLANE)")
    parser.add_argument("--allow-split-rooms", action="store_true",
                        help="allow --workers without a backplane (rooms stay per process)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    sys.path.insert(0, "")
    app = load_app(args.app)
    if args.backplane and getattr(app, "backplane", None) is None:
        from fastws.cluster import backplane
        try:
            app.use(backplane(args.backplane))
        except (ValueError, ImportError) as exc:
            parser.error(str(exc))
    app.run(host=args.host, port=args.port, workers=args.workers,
            allow_split_rooms=args.allow_split_rooms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
