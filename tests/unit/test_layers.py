"""The house's layering: each module imports only modules below it, and nothing
below the app imports it.

The order below is the house, lowest first (docs/architecture.md describes it);
a new module must be placed in it. The modules of a subpackage sit together, so
the order is also one of packages (``PACKAGES``): the tree shows the layers.
Imports inside ``if TYPE_CHECKING:`` are type hints only and may point anywhere
but at ``fastws.app``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "fastws"

#: Subpackages and the modules at the top of the package, lowest first.
PACKAGES = [
    "_version", "_constants", "_json", "options", "errors",   # leaves every layer reads
    "deflate", "compression",     # permessage-deflate (and its documented old name)
    "ws",                         # the sans-I/O WebSocket core: codec, payload rule, connection rules
    "runtime",                    # on the loop: rooms, flusher, dispatch, the adapter, the WebSocket, the hub
    "ops",                        # proxy headers, access log, metrics
    "cluster",                    # rooms across processes: RESP and NATS links, envelope, relays, app.cluster
    "net",                        # listening and accepting
    "http", "context",            # HTTP/1.1: routing, requests and responses, upgrades
    "asgi",                       # mounted ASGI apps, served through the HTTP side's checks
    "serve", "server",            # a server, run(), workers
    "app",                        # configuration
    "plugins",                    # what apps use: websocket(), error_handler(), metrics(), backplane()
    "client",                     # the fastws.v1 client (it imports nothing of the server)
    "__init__", "__main__", "demo",
]

LAYERS = [
    "_version", "_constants", "_json", "options", "errors",
    "deflate", "deflate.permessage", "compression",
    "ws", "ws._counters", "ws._frame", "ws._payload", "ws._connection",
    "runtime", "runtime.eager", "runtime.handlers", "runtime.kernel", "runtime.history", "runtime._wire", "runtime._rooms",
    "runtime._flusher", "runtime._shared", "runtime._dispatch", "runtime._direct", "runtime._owned", "runtime._adapter",
    "runtime.recovery", "runtime._websocket", "runtime.hub",
    "ops", "ops.proxy", "ops.access", "ops.metrics",
    "cluster.envelope", "cluster.link_base", "cluster.redis_link", "cluster.nats_link",
    "cluster.options", "cluster.history", "cluster.relay_base", "cluster.relay", "cluster.nats_history",
    "cluster.nats_relay",
    "cluster.redis_cluster", "cluster.sharded", "cluster.facade",
    "cluster",
    "net", "net.listener",
    "http", "http.routing", "http.heads", "http.context", "http.handshake", "http.request",
    "http.upgrade", "http.protocol", "context",
    "asgi", "asgi.types", "asgi.http_cycle", "asgi.websocket_cycle", "asgi.mount",
    "serve", "serve.workers", "serve.server", "server",
    "app",
    "plugins.ws", "plugins.errors", "plugins.prometheus", "plugins.cluster", "plugins",
    "client.session", "client",
    "__init__", "__main__", "demo",
]
BELOW_APP = LAYERS[:LAYERS.index("app")]

_PYX_IMPORT = re.compile(r"^\s*(?:from\s+(fastws[\w.]*)\s+c?import|c?import\s+(fastws[\w.]*))", re.M)


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(runtime imports, type-checking-only imports) of fastws modules, as names
    relative to the package."""
    runtime: set[str] = set()
    typing_only: set[str] = set()
    text = path.read_text()
    if path.suffix in (".pyx", ".pxd"):
        for m in _PYX_IMPORT.finditer(text):
            runtime.add(m.group(1) or m.group(2))
    else:
        tree = ast.parse(text)
        guarded = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for inner in ast.walk(node):
                    guarded.add(id(inner))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if name.startswith("fastws"):
                    (typing_only if id(node) in guarded else runtime).add(name)
    known = set(LAYERS)
    def local(names: set[str]) -> set[str]:
        out = set()
        for n in names:
            rel = n.removeprefix("fastws").lstrip(".") or "__init__"
            while rel not in known and "." in rel:
                rel = rel.rsplit(".", 1)[0]          # fastws.x.Name -> x
            if rel in known:
                out.add(rel)
        return out
    return local(runtime), local(typing_only)


def sources() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in SRC.rglob("*"):
        if path.suffix in (".py", ".pyx", ".pxd"):
            found.setdefault(module_name(path), []).append(path)
    return found


def test_every_module_has_its_place_in_the_house():
    missing = sorted(set(sources()) - set(LAYERS))
    assert not missing, f"place these modules in LAYERS (and docs/architecture.md): {missing}"


def test_modules_import_only_modules_below_them():
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for name, paths in sources().items():
        for path in paths:
            runtime, _ = imports(path)
            for dep in runtime - {name}:
                if rank[dep] >= rank[name]:
                    wrong.append(f"{path.relative_to(SRC)} imports {dep}")
    assert not wrong, "upward imports: " + "; ".join(sorted(wrong))


def test_nothing_below_the_app_imports_it():
    wrong = []
    for name, paths in sources().items():
        if name not in BELOW_APP:
            continue
        for path in paths:
            runtime, typing_only = imports(path)
            if "app" in runtime | typing_only:
                wrong.append(str(path.relative_to(SRC)))
    assert not wrong, f"modules below fastws.app that import it: {wrong}"


def package_of(module: str) -> str:
    return module.split(".")[0]


def test_the_order_of_modules_is_an_order_of_packages():
    order: list[str] = []
    for name in LAYERS:
        unit = package_of(name)
        if not order or order[-1] != unit:
            assert unit not in order, f"{unit}'s modules are not together in LAYERS ({name})"
            order.append(unit)
    assert order == PACKAGES


def test_at_most_a_dozen_modules_at_the_top():
    top = [p for p in SRC.iterdir() if p.suffix in (".py", ".pyx") and p.stem != "__init__"]
    assert len(top) <= 12, sorted(p.name for p in top)
