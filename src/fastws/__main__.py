"""The ``fastws`` command: ``fastws module:app [--host H] [--port P]``."""

from __future__ import annotations

import argparse
import importlib
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
    args = parser.parse_args(argv)
    sys.path.insert(0, "")
    app = load_app(args.app)
    app.run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
