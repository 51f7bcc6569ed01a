"""The documentation site (mkdocs.yml, docs/) against the code it describes.

These run in the default set and need neither mkdocs nor a build of the site:
they read mkdocs.yml, the Markdown pages, the options, the command's parser and
the stubs, and render the benchmark page's generated sections, the home page's
headline and README.md's "How fast" with the hook that the build uses
(docs/hooks/charts.py). `mkdocs build --strict` in .ci/run checks the rest:
links, anchors to the API, docstrings griffe reads.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import inspect
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterable

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SRC = ROOT / "src" / "fastws"


# ---------------------------------------------------------------- helpers

def load_mkdocs_config() -> dict:
    """mkdocs.yml as plain data; mkdocs' own tags (``!relative``, ``!ENV``)
    become their arguments, which is all these tests need."""
    yaml = pytest.importorskip("yaml")

    class Loader(yaml.SafeLoader):
        pass

    def any_tag(loader: Any, _suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_mapping(node)

    Loader.add_multi_constructor("!", any_tag)
    Loader.add_multi_constructor("tag:yaml.org,2002:python/", any_tag)
    return yaml.load((ROOT / "mkdocs.yml").read_text(), Loader=Loader)


def nav_pages(nav: Any) -> list[str]:
    """Every Markdown path in a mkdocs nav, in order (external links skipped)."""
    out: list[str] = []
    if isinstance(nav, str):
        if not re.match(r"^[a-z]+://", nav):
            out.append(nav)
    elif isinstance(nav, list):
        for item in nav:
            out += nav_pages(item)
    elif isinstance(nav, dict):
        for value in nav.values():
            out += nav_pages(value)
    return out


def missing_names(names: Iterable[str], text: str, fmt: str = "`{}`") -> list[str]:
    """The names that ``text`` never mentions as ``fmt`` (code spans by default)."""
    return [n for n in names if fmt.format(n) not in text]


def doc_pages() -> list[Path]:
    """Every Markdown page of the site (the hook's folder is no page)."""
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts)


def cli_flags() -> list[str]:
    """Every long option of the ``fastws`` command, from its own parser."""
    from fastws.__main__ import build_parser
    return [o for a in build_parser()._actions for o in a.option_strings
            if o.startswith("--") and o != "--help"]


_SIGNATURE = re.compile(r"^[\w.]+\(.*\)( -> .+)?$")


def runtime_doc(obj: Any) -> str | None:
    """A compiled object's docstring without the signature line that Cython's
    ``embedsignature`` puts first; None for none, or for the ``name: type``
    line Cython writes for a ``cdef public`` attribute."""
    doc = getattr(obj, "__doc__", None)
    if not doc:
        return None
    doc = inspect.cleandoc(doc)
    first, _, rest = doc.partition("\n\n")
    if _SIGNATURE.match(first):
        doc = rest.strip()
    if re.fullmatch(r"\w+: \w+", doc):
        return None
    return doc or None


def stub_docs(path: Path, class_name: str) -> dict[str, str]:
    """Docstrings of a stub's class and of its members ("" for the class)."""
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == class_name)
    out = {}
    if ast.get_docstring(cls):
        out[""] = ast.get_docstring(cls)
    body = cls.body
    for i, node in enumerate(body):
        if isinstance(node, ast.FunctionDef):
            doc = ast.get_docstring(node)
            is_setter = any(isinstance(d, ast.Attribute) and d.attr == "setter"
                            for d in node.decorator_list)
            if doc and not is_setter:
                out[node.name] = doc
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and i + 1 < len(body) and isinstance(body[i + 1], ast.Expr) \
                and isinstance(body[i + 1].value, ast.Constant) \
                and isinstance(body[i + 1].value.value, str):
            out[node.target.id] = inspect.cleandoc(body[i + 1].value.value)
    return out


_TYPED_FIGURE = re.compile(r"\d[\d,.]* ?(?:µs|KiB|msg/s)")


def typed_figures(text: str) -> list[str]:
    """Benchmark figures written into ``text`` by hand (``2.06 µs``, ``4 KiB``)."""
    return _TYPED_FIGURE.findall(text)


def load_hook() -> Any:
    """docs/hooks/charts.py, as mkdocs loads it: from its file."""
    spec = importlib.util.spec_from_file_location("_fastws_docs_charts", DOCS / "hooks" / "charts.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- the tests

def test_every_nav_page_exists_and_every_page_is_in_the_nav():
    config = load_mkdocs_config()
    pages = nav_pages(config["nav"])
    assert "guides/limits.md" in pages and "reference/index.md" in pages
    missing = [p for p in pages if not (DOCS / p).is_file()]
    assert missing == [], f"in mkdocs.yml's nav but not in docs/: {missing}"
    assert len(pages) == len(set(pages)), "a page is in the nav twice"
    orphans = [p.relative_to(DOCS).as_posix() for p in doc_pages()
               if p.relative_to(DOCS).as_posix() not in pages]
    assert orphans == [], f"pages missing from mkdocs.yml's nav: {orphans}"


def test_the_hook_and_the_stubs_are_where_mkdocs_yml_says():
    config = load_mkdocs_config()
    assert [(ROOT / h).is_file() for h in config["hooks"]] == [True] * len(config["hooks"])
    python = next(p["mkdocstrings"] for p in config["plugins"]
                  if isinstance(p, dict) and "mkdocstrings" in p)["handlers"]["python"]
    assert python["paths"] == ["src"]
    # Read from the stubs, never imported: the same reference built or not.
    assert python["options"]["allow_inspection"] is False


def test_the_limits_guide_names_every_websocket_option():
    from fastws.options import WebSocketOptions
    names = [f.name for f in dataclasses.fields(WebSocketOptions)]
    assert "max_message_size" in names and "rate_limit_policy" in names
    missing = missing_names(names, (DOCS / "guides" / "limits.md").read_text())
    assert missing == [], f"websocket() options not in docs/guides/limits.md: {missing}"


def test_the_docs_name_every_command_line_flag():
    flags = cli_flags()
    assert "--workers" in flags and "--ws-max-size" in flags and "--no-access-log" in flags
    cli = (DOCS / "reference" / "cli.md").read_text()
    missing = missing_names(flags, cli)
    assert missing == [], f"flags of `fastws` not in docs/reference/cli.md: {missing}"


def test_the_reference_renders_every_public_name():
    import fastws
    shown = []
    for page in (DOCS / "reference").glob("*.md"):
        for path in re.findall(r"^::: ([\w.]+)$", page.read_text(), re.M):
            module_name, _, attr = path.rpartition(".")
            shown.append(getattr(importlib.import_module(module_name), attr))
    public = [n for n in fastws.__all__ if not n.startswith("__")]
    assert "WebSocket" in public and "websocket" in public
    # By identity: `::: fastws.websocket` would be the submodule, not the plugin.
    missing = [n for n in public if not any(getattr(fastws, n) is obj for obj in shown)]
    assert missing == [], f"public names with no ::: entry in docs/reference/: {missing}"


@pytest.mark.parametrize("stub, class_name, module", [
    ("runtime/_websocket.pyi", "WebSocket", "fastws.runtime._websocket"),
    ("runtime/_adapter.pyi", "Adapter", "fastws.runtime._adapter"),
    ("runtime/_dispatch.pyi", "Dispatcher", "fastws.runtime._dispatch"),
    ("ws/_connection.pyi", "Connection", "fastws.ws._connection"),
])
def test_stub_docstrings_are_those_of_the_compiled_code(stub, class_name, module):
    # The reference reads the .pyi; the words must be the .pyx's, or they drift.
    documented = stub_docs(SRC / stub, class_name)
    assert documented, f"{stub}: {class_name} has no docstrings"
    runtime = getattr(importlib.import_module(module), class_name)
    differ = []
    for name, doc in documented.items():
        actual = runtime_doc(runtime if name == "" else inspect.getattr_static(runtime, name))
        if actual is not None and actual != doc:
            differ.append(f"{class_name}.{name or '__doc__'}:\n  stub: {doc!r}\n  code: {actual!r}")
    assert differ == [], "update the stub's docstring to the .pyx's:\n" + "\n".join(differ)


def test_the_benchmark_page_renders_from_the_committed_results():
    hook = load_hook()
    page = (DOCS / hook.PAGE).read_text()
    names = hook.PLACEHOLDER.findall(page)
    assert set(names) == set(hook.SECTIONS), "every section placed once, and only known ones"
    text, charts = hook.render_page(page, ROOT)
    assert not hook.PLACEHOLDER.search(text)
    assert charts, "the committed results make at least one chart"
    for name, svg in charts.items():
        root = ET.fromstring(svg)
        assert root.tag == "{http://www.w3.org/2000/svg}svg", name
        assert f"]({hook.CHART_DIR}/{name})" in text, f"chart {name} is made but not shown"
    # Each generated section says when, on what and how it was measured.
    assert text.count("- Command, from the repository root: `python bench/") >= 5
    assert text.count("- Machine: ") >= 5
    assert "`python bench/compare.py`" in text       # the bare command of the peer comparison
    with pytest.raises(ValueError, match="unknown placeholder"):
        hook.render_page("<!-- bench:no-such-section -->\n", ROOT)


def test_the_home_page_quotes_the_peer_comparison_of_the_benchmark_page():
    hook = load_hook()
    page = (DOCS / hook.INDEX).read_text()
    assert hook.PLACEHOLDER.findall(page) == list(hook.INDEX_SECTIONS)
    # Typed figures are what drifted from the results; the hook writes them all.
    assert typed_figures(page) == [], f"{hook.INDEX} quotes figures by hand"
    text, charts = hook.render_page(page, ROOT, hook.INDEX_SECTIONS, hook.INDEX)
    assert not hook.PLACEHOLDER.search(text) and charts == {}
    headline = hook.headline(ROOT)
    assert headline.result.rel == hook.newest(ROOT, "compare", hook._is_peer_comparison).rel
    assert headline.index in text and f"({headline.result.when:%Y-%m-%d})" in text
    assert typed_figures(headline.index), "the home page quotes fastws's figures"
    # The benchmark page shows the same run.
    bench_page, _ = hook.render_page((DOCS / hook.PAGE).read_text(), ROOT)
    assert f"- Data: `{headline.result.rel}`" in bench_page


def test_readme_quotes_the_newest_peer_comparison():
    hook = load_hook()
    readme = (ROOT / "README.md").read_text()
    assert hook.readme_stale(readme, ROOT) == [], \
        f"README.md quotes other figures than the newest results: run {hook.README_COMMAND}"
    headline = hook.headline(ROOT)
    assert headline.table in readme and f"`{headline.result.rel}`" in readme


def test_the_readme_check_can_fail():
    hook = load_hook()
    readme = (ROOT / "README.md").read_text()
    row = next(line for line in hook.headline(ROOT).table.splitlines()
               if line.startswith("| **fastws"))
    # One digit of fastws's last figure, changed: the drift the check is for.
    changed = re.sub(r"\d(?=\*\* \|$)", lambda m: str((int(m.group()) + 1) % 10), row)
    assert changed != row and row in readme
    assert hook.readme_stale(readme.replace(row, changed), ROOT) == ["how-fast"]
    assert hook.rewrite_readme(readme.replace(row, changed), ROOT) == readme
    with pytest.raises(ValueError, match="lacks the generated block"):
        hook.rewrite_readme(readme.replace("<!-- /readme:how-fast -->", ""), ROOT)
    with pytest.raises(ValueError, match="unknown block"):
        hook.rewrite_readme(
            readme + "<!-- readme:no-such-block -->\n<!-- /readme:no-such-block -->\n", ROOT)


def test_the_checks_can_fail():
    # Guards against checks that would pass on anything.
    assert missing_names(["max_message_size", "no_such_option"], "`max_message_size`") == \
        ["no_such_option"]
    assert nav_pages([{"A": "a.md"}, {"B": [{"C": "b/c.md"}, "https://example.com/"]}]) == \
        ["a.md", "b/c.md"]
    assert runtime_doc(type("T", (), {"__doc__": "T.f(self, x) -> bool\n\nSend x."})) == "Send x."
    assert runtime_doc(type("T", (), {"__doc__": "ctx: object"})) is None
    assert typed_figures("spent 2.06 µs, 1,036 µs p99, about 4 KiB, 639,678 msg/s") == \
        ["2.06 µs", "1,036 µs", "4 KiB", "639,678 msg/s"]
    assert typed_figures("<!-- bench:headline -->\n[Benchmarks](benchmarks.md)") == []


def architecture_tree() -> list[str]:
    """The source files docs/architecture.md's tree names, as paths under src/fastws
    (``x.pyx/.pxd`` names both), in the page's order."""
    page = (DOCS / "architecture.md").read_text()
    block = re.search(r"^```\nsrc/fastws/\n(.*?)^```", page, re.M | re.S).group(1)
    named, dirs = [], []
    for line in block.splitlines():
        m = re.match(r"^( +)(\S+)", line)
        if not m or not re.search(r"[./]", m.group(2)):
            continue                        # a continued description
        depth = len(m.group(1)) // 2 - 1
        name = m.group(2)
        dirs = dirs[:depth]
        if name.endswith("/"):
            dirs.append(name.rstrip("/"))
            named.append("/".join(dirs) + "/")
            continue
        stem, _, exts = name.partition(".")
        for ext in exts.split("/."):
            named.append("/".join([*dirs, f"{stem}.{ext}"]))
    return named


def test_the_architecture_tree_names_every_source_file_and_no_other():
    named = architecture_tree()
    files = sorted(p.relative_to(SRC).as_posix() for p in SRC.rglob("*")
                   if p.suffix in (".py", ".pyx", ".pxd", ".h")
                   and not (p.name == "__init__.py" and p.parent != SRC))
    assert sorted(n for n in named if not n.endswith("/")) == files
    missing_dirs = [n for n in named if n.endswith("/") and not (SRC / n).is_dir()]
    assert missing_dirs == []


def test_the_architecture_tree_is_in_the_layer_order():
    from tests.unit.test_layers import PACKAGES
    top = []
    for name in architecture_tree():
        unit = name.split("/")[0].split(".")[0]
        if unit != "_bytes" and (not top or top[-1] != unit):
            top.append(unit)
    assert top == PACKAGES


_SOURCE_PATH = re.compile(r"(?<![\w./])((?:tests/)?(?:[\w]+/)*\w+\.(?:pyx|pxd|py|h))\b")
_NAMED_IN = re.compile(r"`((?:[\w]+/)*\w+\.(?:pyx|pxd|py|h))` \(([^)]*)\)")
_DOTTED = re.compile(r"\b([A-Za-z_]\w*)\.([A-Za-z_]\w*)\b")


def _source(path: str) -> Path:
    return ROOT / path if path.startswith("tests/") else SRC / path


def test_every_file_the_architecture_page_names_exists():
    # Paths outside the tree (which the tests above check): from src/fastws, or tests/.
    page = re.sub(r"^```\nsrc/fastws/\n.*?^```", "", (DOCS / "architecture.md").read_text(),
                  flags=re.M | re.S)
    missing = sorted({p for p in _SOURCE_PATH.findall(page) if not _source(p).exists()})
    assert missing == []


def test_the_names_the_architecture_page_gives_a_file_are_in_it():
    # "`http/upgrade.py` (`refusal`, `switch`)" in prose and tables, and in the two
    # flow diagrams a line "Class.method   path/to/file": each name is in that file.
    page = (DOCS / "architecture.md").read_text()
    wrong = []
    for path, inside in _NAMED_IN.findall(page):
        text = _source(path).read_text()
        for name in re.findall(r"`([\w.]+)`", inside):
            if not re.search(rf"\b{re.escape(name.split('.')[-1])}\b", text):
                wrong.append(f"{name} in {path}")
    flows = page[page.index("## The two paths"):page.index("## The layers, lowest first")]
    for line in flows.splitlines():
        paths = _SOURCE_PATH.findall(line)
        if len(paths) != 1 or not line.startswith((" ", "w", "s")):
            continue
        head = line.split(paths[0])[0]
        text = _source(paths[0]).read_text()
        for cls, attr in _DOTTED.findall(head):
            for name in (cls, attr):
                if name not in ("ws", "app") and not re.search(rf"\b{name}\b", text):
                    wrong.append(f"{cls}.{attr} in {paths[0]}")
    assert wrong == []
