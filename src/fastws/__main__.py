"""The ``fastws`` command: ``fastws module:app [options]``; ``fastws --help`` lists them.

Names follow uvicorn's where uvicorn has the setting. Every flag can also come
from the environment as ``FASTWS_`` + the flag's name in capitals with ``_``
for ``-`` (``--ws-max-message-size`` is ``FASTWS_WS_MAX_MESSAGE_SIZE``; switches take 1/0,
true/false); a flag on the command line wins. A bad value, from either, is an
error naming the flag (or variable) and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import json
import logging
import logging.config
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Callable

from fastws.options import DEFAULT_BACKLOG

__all__ = ["main", "load_app", "build_parser"]

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def load_app(spec: str, factory: bool = False):
    """Import ``module:attribute`` (attribute defaults to ``app``); with
    ``factory``, call it to get the app. What cannot be served stops the
    command with a short message that says what was found and what to write
    (SystemExit, status 1), not an importlib traceback."""
    import fastws.app
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        raise SystemExit(f"fastws: {spec!r} is a file path; name the module and its app "
                         f"instead: {_module_for(module_name, attr)}")
    fastws.app.cli_importing = f"{module_name}:{attr}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or module_name.startswith(f"{exc.name}."):
            raise SystemExit(f"fastws: cannot import {module_name!r}: {exc} (the command looks "
                             f"in the current directory, {os.getcwd()}, and the installed "
                             "packages; a module in a package is dotted: examples.chat:app)") from None
        raise SystemExit(_import_failure(spec, exc)) from None
    except Exception as exc:
        raise SystemExit(_import_failure(spec, exc)) from None
    finally:
        fastws.app.cli_importing = None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        apps = [name for name, value in vars(module).items() if isinstance(value, fastws.app.App)]
        found = (f"; it has {'an App' if len(apps) == 1 else 'Apps'} named "
                 f"{', '.join(apps)}: fastws {module_name}:{apps[0]}") if apps else ""
        raise SystemExit(f"fastws: module {module_name!r} has no attribute {attr!r}{found}") from None
    if factory:
        if not callable(obj) or isinstance(obj, fastws.app.App):
            raise SystemExit(f"fastws: --factory: {module_name}:{attr} is "
                             f"{_what(obj)}, not a function that returns the app; "
                             "drop --factory")
        fastws.app.cli_importing = f"{module_name}:{attr}"
        try:
            obj = obj()
        except Exception as exc:
            raise SystemExit(_import_failure(f"{module_name}:{attr}()", exc)) from None
        finally:
            fastws.app.cli_importing = None
        if not isinstance(obj, fastws.app.App):
            raise SystemExit(f"fastws: --factory: {module_name}:{attr}() returned {_what(obj)}, "
                             "not a fastws App (create_app())")
        return obj
    if not isinstance(obj, fastws.app.App):
        raise SystemExit(f"fastws: {module_name}:{attr} is {_what(obj)}, not a fastws App"
                         f"{_suggestion(module_name, attr, obj)}")
    return obj


def _module_for(path: str, attr: str) -> str:
    """The command that serves the file ``path``: from here as a dotted module
    when it is below this directory, else after a cd into its directory."""
    norm = os.path.normpath(path)
    stem = norm[:-3] if norm.endswith(".py") else norm
    if os.path.isabs(norm) or norm.startswith(".."):
        return f"cd {os.path.dirname(stem) or '.'} && fastws {os.path.basename(stem)}:{attr}"
    return f"fastws {stem.replace(os.sep, '.')}:{attr}"


def _what(obj: Any) -> str:
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        return f"a function ({obj.__qualname__})"
    if inspect.ismodule(obj):
        return f"a module ({obj.__name__})"
    if inspect.isclass(obj):
        return f"a class ({obj.__qualname__})"
    return f"{type(obj).__module__}.{type(obj).__qualname__}" if obj is not None else "None"


def _suggestion(module_name: str, attr: str, obj: Any) -> str:
    if inspect.ismodule(obj):
        return f"; to serve the app in it: fastws {obj.__name__}:app"
    if callable(obj) and not inspect.isclass(obj) and (
            inspect.isfunction(obj) or inspect.ismethod(obj)):
        try:
            takes_none = not any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                                 for p in inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            takes_none = False
        if takes_none:
            return f"; if it returns the app, add --factory: fastws {module_name}:{attr} --factory"
    if type(obj).__module__.split(".")[0] in ("fastapi", "starlette") or (
            callable(obj) and not inspect.isfunction(obj) and hasattr(obj, "router")):
        return ("; to serve an ASGI app, mount it on a fastws app: "
                f"app = create_app(); app.mount('/', {attr}) (see the FastAPI guide)")
    return ": build one with create_app()"


def _import_failure(spec: str, exc: BaseException) -> str:
    """What importing the app's module raised, told briefly: where the app's
    own code went wrong and the message, without importlib's frames (and
    without fastws's, when fastws refused a call: the message is the point)."""
    if isinstance(exc, SyntaxError):
        text = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
        return f"fastws: cannot load {spec}:\n{text}"
    frames = traceback.extract_tb(exc.__traceback__)
    package = Path(__file__).resolve().parent

    def ours(frame: traceback.FrameSummary) -> bool:
        if frame.filename.startswith("<frozen importlib") or \
                os.path.dirname(frame.filename) == os.path.dirname(importlib.__file__):
            return True
        # Compiled modules name themselves relative to the build ("src/fastws/http/context.py").
        parts = Path(frame.filename).parts
        if "fastws" not in parts[:-1]:
            return False
        inside = parts[len(parts) - parts[::-1].index("fastws"):]
        return (package.joinpath(*inside)).is_file()

    user = [f for f in frames if not ours(f)]
    if not user:
        return f"fastws: cannot load {spec}: {type(exc).__name__}: {exc}"
    if ours(frames[-1]):
        # fastws refused a call the module made: its message names the fix.
        at = user[-1]
        line = f"\n    {at.line}" if at.line else ""
        return (f"fastws: cannot load {spec}: {os.path.relpath(at.filename)}, line "
                f"{at.lineno}:{line}\n{type(exc).__name__}: {exc}")
    shown = "".join(traceback.format_list(user))
    text = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
    return f"fastws: cannot load {spec}; importing it raised:\n{shown}{text}"


# ---------------------------------------------------------------- value parsers

def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _int_or_none(text: str) -> int | None:
    return None if text.lower() in ("none", "off") else int(text)


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in ("none", "off") else float(text)


def _pair_or_none(text: str) -> tuple[float, int] | None:
    if text.lower() in ("none", "off"):
        return None
    rate, sep, burst = text.partition(",")
    if not sep:
        raise ValueError("want RATE,BURST (e.g. 20,40) or none")
    return float(rate), int(burst)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError("want 1/0, true/false, yes/no or on/off")


#: --ws-* flags: (flag, WebSocketOptions field, parser, help); each is --ws- and the
#: option's own name.
WS_FLAGS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--ws-max-message-size", "max_message_size", _int_or_none,
     "largest message in bytes (default 1 MiB; none: no limit)"),
    ("--ws-ping-interval", "ping_interval", _float_or_none, "seconds of client silence before a ping (default 20; none: off)"),
    ("--ws-idle-timeout", "idle_timeout", float, "seconds a pinged client has to answer (default 20)"),
    ("--ws-max-backpressure", "max_backpressure", int, "bytes queued per socket before the backpressure policy (default 1 MiB)"),
    ("--ws-backpressure", "backpressure", str, "close | skip (default close)"),
    ("--ws-slow-consumer-timeout", "slow_consumer_timeout", float, "seconds (default 5)"),
    ("--ws-min-drain-rate", "min_drain_rate", int, "bytes/s (default 16384)"),
    ("--ws-close-timeout", "close_timeout", float, "seconds (default 10)"),
    ("--ws-discard-budget", "discard_budget", _int_or_none, "bytes (default max(16 MiB, 16 x max size))"),
    ("--ws-handshake-timeout", "handshake_timeout", float, "seconds (default 10)"),
    ("--ws-rate-limit", "rate_limit", _pair_or_none, "RATE,BURST messages per connection (default none)"),
    ("--ws-rate-limit-policy", "rate_limit_policy", str, "close | drop (default close)"),
    ("--ws-max-connections", "max_connections", _int_or_none, "open WebSockets (default none)"),
    ("--ws-max-connections-per-ip", "max_connections_per_ip", _int_or_none, "per client address (default none)"),
    ("--ws-max-upgrades-per-ip", "max_upgrades_per_ip", _pair_or_none, "RATE,BURST per client address (default none)"),
    ("--ws-max-room-name", "max_room_name", int, "characters (default 256)"),
    ("--ws-max-rooms-per-socket", "max_rooms_per_socket", int, "(default 64)"),
    ("--ws-drain-window", "drain_window", float, "seconds a shutdown spreads its closes over (default 1)"),
    ("--ws-allowed-origins", "allowed_origins", _csv,
     "comma-separated Origin values, or * for any (default: the request's own host only)"),
    ("--ws-subprotocols", "subprotocols", _csv, "comma-separated, in preference order"),
    ("--ws-compression", "compression", _bool, "permessage-deflate on (1) or off (0) (default off)"),
    ("--ws-json-events", "json_events", _bool, "route JSON {type: ...} messages to handlers (default 1)"),
    ("--ws-history-size", "history_size", int, "messages each room keeps for app.history (default 0: none)"),
    ("--ws-history-ttl", "history_ttl", float, "seconds a room message is kept (default 300)"),
    ("--ws-history-max-bytes", "history_max_bytes", int, "memory for all rooms' history (default 256 MiB)"),
]


#: Older spellings, kept working: uvicorn's names for the first two.
WS_ALIASES = {"--ws-max-message-size": "--ws-max-size", "--ws-idle-timeout": "--ws-ping-timeout"}


class _Parser(argparse.ArgumentParser):
    """Errors name the flag, in one line, with exit status 2 (argparse's own)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n(fastws --help lists every flag)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``fastws`` argument parser (also what the README documents)."""
    from fastws import __version__
    p = _Parser(prog="fastws", description="Serve a fastws app.",
                epilog="Every flag also reads FASTWS_<FLAG> from the environment "
                       "(e.g. FASTWS_PORT, FASTWS_WS_MAX_MESSAGE_SIZE).")
    p.add_argument("app", nargs="?", help="the app, as module:attribute (e.g. chat:app)")
    p.add_argument("--version", action="version", version=f"fastws {__version__}")
    p.add_argument("--factory", action="store_true", default=None,
                   help="the app is a function returning the app")
    g = p.add_argument_group("where to listen")
    g.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    g.add_argument("--port", type=int, help="port to bind (default 3000; 0: any free port)")
    g.add_argument("--uds", help="listen on this Unix socket instead")
    g.add_argument("--fd", type=int, help="serve the listening socket inherited as this descriptor")
    g.add_argument("--backlog", type=_positive_int, help=f"listen queue (default {DEFAULT_BACKLOG})")
    g = p.add_argument_group("processes")
    g.add_argument("--workers", type=_positive_int, help="worker processes on the one port (default 1)")
    g.add_argument("--reload", action="store_true", default=None,
                   help="restart when a .py file under --reload-dir changes (development; needs watchfiles)")
    g.add_argument("--reload-dir", action="append", dest="reload_dirs",
                   help="directory to watch (repeatable; default the current directory)")
    g.add_argument("--backplane", metavar="URL",
                   help="backplane URL that makes rooms span processes and machines: redis://, several redis:// "
                        "comma-separated (sharded), redis+cluster://, or nats://")
    g.add_argument("--allow-split-rooms", action="store_true", default=None,
                   help="allow --workers without a backplane (rooms stay per process)")
    g = p.add_argument_group("logging")
    g.add_argument("--log-level", choices=LOG_LEVELS, help="(default info)")
    g.add_argument("--log-config", metavar="FILE", help="logging dictConfig, JSON or YAML")
    g.add_argument("--log-format", choices=("text", "json"), help="(default text)")
    g.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=None,
                   help="a line per request, upgrade and WebSocket close (default off)")
    g.add_argument("--redact-query", type=_csv, metavar="NAMES",
                   help="query parameters masked in access lines (default: token, access_token, "
                        "password, secret, api_key, ...; see fastws.ops.access.REDACT)")
    g = p.add_argument_group("TLS")
    g.add_argument("--ssl-certfile")
    g.add_argument("--ssl-keyfile")
    g.add_argument("--ssl-keyfile-password")
    g.add_argument("--ssl-ca-certs", help="CA file to verify client certificates with")
    g = p.add_argument_group("behind a proxy")
    g.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=None,
                   help="believe the --forwarded-header family from --forwarded-allow-ips")
    g.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="comma-separated addresses or networks of trusted proxies, * for any "
                        "(default 127.0.0.1)")
    g.add_argument("--forwarded-header", choices=["x-forwarded-for", "forwarded"],
                   type=str.lower,
                   help="which header names the client: x-forwarded-for (with "
                        "X-Forwarded-Proto; the default) or forwarded (RFC 7239); the other "
                        "is ignored")
    g.add_argument("--metrics-path", metavar="PATH",
                   help="serve Prometheus metrics at PATH, e.g. /metrics (needs prometheus_client)")
    g.add_argument("--max-http-connections-per-ip", metavar="N", type=int,
                   help="open HTTP (not WebSocket) connections one client address may hold; "
                        "the first request of one more gets 429 (default no limit)")
    g.add_argument("--max-request-memory", metavar="BYTES", type=int,
                   help="bytes of HTTP request bodies all connections may hold at once; past "
                        "it 503 (default 67108864, 64 MiB)")
    g.add_argument("--health-path", metavar="PATH",
                   help="answer GET PATH with 200 while serving, 503 while draining (default off)")
    g = p.add_argument_group("WebSocket limits (websocket(...) options; override the app's)")
    for flag, _field, _parse, text in WS_FLAGS:
        alias = WS_ALIASES.get(flag)
        if alias:
            g.add_argument(flag, alias, help=f"{text} (also {alias})", default=None)
        else:
            g.add_argument(flag, help=text, default=None)
    return p


_DEFAULTS: dict[str, Any] = {"host": "127.0.0.1", "port": 3000, "backlog": DEFAULT_BACKLOG, "workers": 1,
                             "log_level": "info", "log_format": "text", "access_log": False,
                             "proxy_headers": False, "factory": False, "reload": False,
                             "allow_split_rooms": False}


def _env_names(action: argparse.Action) -> list[str]:
    """The variables a flag reads: FASTWS_ and each of its spellings."""
    if action.dest == "reload_dirs":
        return ["FASTWS_RELOAD_DIRS"]
    return ["FASTWS_" + o.lstrip("-").replace("-", "_").upper()
            for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")]


def _from_env(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill what the command line left unset from FASTWS_* variables; where a
    value came from one, ``args.sources`` maps its dest to the variable, so an
    error names what the user wrote."""
    ws_dests = {flag.lstrip("-").replace("-", "_") for flag, _f, _p, _t in WS_FLAGS}
    args.sources = {}
    for action in parser._actions:
        dest = action.dest
        if dest in ("help", "version", "app") or getattr(args, dest, None) is not None:
            continue
        found = next(((env, os.environ[env]) for env in _env_names(action)
                      if os.environ.get(env)), None)
        if found is None:
            continue
        env, raw = found
        try:
            if isinstance(action, (argparse._StoreTrueAction, argparse.BooleanOptionalAction)):
                value: Any = _bool(raw)
            elif dest == "reload_dirs":
                value = _csv(raw)
            elif action.type is not None:
                value = action.type(raw)
            else:
                value = raw
            if action.choices is not None and value not in action.choices:
                raise ValueError(f"choose from {', '.join(map(str, action.choices))}")
        except ValueError as exc:
            parser.error(f"{env}={raw!r}: {exc}")
        if dest in ws_dests:
            value = raw             # parsed with the --ws- rules below
        setattr(args, dest, value)
        args.sources[dest] = env


def _named(args: argparse.Namespace, flag: str) -> str:
    """How to name the setting behind ``flag`` in an error: the variable it came
    from, or the flag."""
    dest = flag.lstrip("-").replace("-", "_")
    env = getattr(args, "sources", {}).get(dest)
    return env if env else f"argument {_as_typed(args, flag)}"


def _as_typed(args: argparse.Namespace, flag: str) -> str:
    """``flag``, or its old spelling if that is what the command line used."""
    alias = WS_ALIASES.get(flag)
    typed = getattr(args, "argv", ())
    if alias and any(a == alias or a.startswith(alias + "=") for a in typed):
        return alias
    return flag


def _ws_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for flag, field, parse, _text in WS_FLAGS:
        raw = getattr(args, flag.lstrip("-").replace("-", "_"))
        if raw is None:
            continue
        try:
            out[field] = parse(raw)
        except ValueError as exc:
            env = args.sources.get(flag.lstrip("-").replace("-", "_"))
            parser.error(f"{env}={raw!r}: {exc}" if env else
                         f"argument {_as_typed(args, flag)}: invalid value {raw!r}: {exc}")
    return out


def _configure_logging(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    level = "DEBUG" if args.log_level == "trace" else args.log_level.upper()
    if args.log_config:
        try:
            with open(args.log_config) as f:
                text = f.read()
            if args.log_config.endswith((".yaml", ".yml")):
                try:
                    import yaml
                except ImportError:
                    parser.error("--log-config: a YAML file needs PyYAML (pip install pyyaml)")
                config = yaml.safe_load(text)
            else:
                config = json.loads(text)
            if isinstance(config, dict):
                # fastws's loggers exist by now (imported): keep them unless told.
                config.setdefault("disable_existing_loggers", False)
            logging.config.dictConfig(config)
        except (OSError, ValueError, TypeError, AttributeError, ImportError) as exc:
            parser.error(f"argument --log-config: {exc}")
        return
    handler = logging.StreamHandler()
    if args.log_format == "json":
        from fastws.ops.access import JsonFormatter
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def _ssl_context(parser: argparse.ArgumentParser, args: argparse.Namespace):
    if not args.ssl_certfile:
        if args.ssl_keyfile or args.ssl_ca_certs:
            parser.error("--ssl-keyfile and --ssl-ca-certs need --ssl-certfile")
        return None
    import ssl
    for flag, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile),
                       ("--ssl-ca-certs", args.ssl_ca_certs)):
        if path is None:
            continue
        try:
            with open(path, "rb") as f:
                head = f.read(1 << 20)
        except OSError as exc:
            parser.error(f"{_named(args, flag)}: cannot read {path}: {exc.strerror or exc}")
        if flag == "--ssl-certfile" and b"-----BEGIN CERTIFICATE-----" not in head:
            parser.error(f"{_named(args, flag)}: {path} holds no PEM certificate "
                         "(-----BEGIN CERTIFICATE-----)")
    key_path = args.ssl_keyfile or args.ssl_certfile
    with open(key_path, "rb") as f:
        key = f.read(1 << 20)
    if b"PRIVATE KEY-----" not in key:
        if args.ssl_keyfile:
            parser.error(f"{_named(args, '--ssl-keyfile')}: {key_path} holds no PEM private key "
                         "(-----BEGIN ... PRIVATE KEY-----)")
        parser.error(f"{_named(args, '--ssl-certfile')}: {key_path} holds the certificate but "
                     "not its private key; name the key file with --ssl-keyfile KEY.pem")
    encrypted = b"ENCRYPTED" in key
    if encrypted and not args.ssl_keyfile_password:
        parser.error(f"{_named(args, '--ssl-keyfile')}: the key in {key_path} is encrypted; "
                     "give its password with --ssl-keyfile-password (or FASTWS_SSL_KEYFILE_PASSWORD)")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(args.ssl_certfile, args.ssl_keyfile, password=args.ssl_keyfile_password)
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or ""
        if "MISMATCH" in reason:
            parser.error(f"{_named(args, '--ssl-keyfile')}: the key in {key_path} is not the key "
                         f"of the certificate in {args.ssl_certfile}")
        if encrypted and "MISMATCH" not in reason:
            # OpenSSL says only "PEM lib" for a wrong password.
            parser.error(f"{_named(args, '--ssl-keyfile-password')}: it does not decrypt the key "
                         f"in {key_path}")
        parser.error(f"argument --ssl-certfile/--ssl-keyfile: cannot load {args.ssl_certfile}"
                     f"{' and ' + args.ssl_keyfile if args.ssl_keyfile else ''}: "
                     f"{reason or exc} (are both PEM files?)")
    except OSError as exc:
        parser.error(f"argument --ssl-certfile/--ssl-keyfile: cannot load: {exc}")
    if args.ssl_ca_certs:
        try:
            ctx.load_verify_locations(args.ssl_ca_certs)
        except (OSError, ssl.SSLError) as exc:
            parser.error(f"{_named(args, '--ssl-ca-certs')}: cannot load CA certificates from "
                         f"{args.ssl_ca_certs}: {getattr(exc, 'reason', None) or exc}")
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and serve the named app until SIGINT/SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    _from_env(parser, args)
    if args.app is None:
        args.app = os.environ.get("FASTWS_APP")
        if not args.app:
            parser.error("the app is required (module:attribute), or FASTWS_APP")
    for key, value in _DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    ws = _ws_overrides(parser, args)
    _configure_logging(parser, args)
    tls = _ssl_context(parser, args)
    if args.uds and args.fd is not None:
        parser.error("--uds and --fd cannot be combined")
    sys.path.insert(0, "")
    app = load_app(args.app, factory=args.factory)
    if ws:
        from fastws.options import WebSocketOptions
        base = app.ws_options or WebSocketOptions()
        try:
            app.ws_options = dataclasses.replace(base, **ws)
        except (ValueError, TypeError) as exc:
            flag = next((f for f, field, _p, _t in WS_FLAGS if field in str(exc)), None)
            parser.error(f"{_named(args, flag) if flag else 'argument --ws-*'}: {exc}")
    if args.metrics_path and app.metrics_collector is None:
        from fastws.plugins import metrics
        try:
            app.use(metrics(args.metrics_path))
        except (ValueError, ImportError) as exc:
            parser.error(f"argument --metrics-path: {exc}")
    if args.backplane and app.backplane is None:
        from fastws.plugins import backplane
        try:
            app.use(backplane(args.backplane))
        except (ValueError, ImportError) as exc:
            parser.error(f"argument --backplane: {exc}")
    from fastws.serve.server import RUN_ARGUMENTS, ArgumentError, Server, check_arguments, server_option_names
    run_options = dict(
        host=args.host, port=args.port, ssl=tls, backlog=args.backlog,
        workers=args.workers, allow_split_rooms=args.allow_split_rooms, uds=args.uds,
        fd=args.fd, reload=args.reload, reload_dirs=args.reload_dirs,
        proxy_headers=args.proxy_headers, forwarded_allow_ips=args.forwarded_allow_ips,
        forwarded_header=args.forwarded_header,
        **{k: v for k, v in (("max_request_memory", args.max_request_memory),
                             ("max_http_connections_per_ip",
                              args.max_http_connections_per_ip)) if v is not None},
        access_log=args.access_log, health_path=args.health_path,
        redact_query=args.redact_query)
    try:
        run_options = check_arguments("", run_options, RUN_ARGUMENTS + server_option_names())
        Server(app, **{k: v for k, v in run_options.items() if k in server_option_names()})
    except ArgumentError as exc:
        parser.error(f"{_named(args, '--' + exc.keyword.replace('_', '-'))}: {exc}")
    except (TypeError, ValueError) as exc:
        flag = next((a.option_strings[0] for a in sorted(parser._actions, key=lambda a: -len(a.dest))
                     if a.option_strings and a.dest != "help" and a.dest in str(exc)), None)
        parser.error(f"{_named(args, flag) + ': ' if flag else ''}{exc}")
    app.run(**run_options)
    return 0


if __name__ == "__main__":
    sys.exit(main())
