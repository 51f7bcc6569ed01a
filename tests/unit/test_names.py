"""Names that do not trap: no submodule shares its name with a public attribute
of its package (``import fastws.metrics; fastws.metrics.Collector`` used to
find a function), and the module paths users were told to import keep working
as re-exports of where the code lives now."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import fastws


def every_module() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(fastws.__path__, "fastws."))


def test_no_submodule_shares_its_name_with_an_attribute_of_its_package():
    wrong = []
    for name in every_module():
        if name.endswith("__main__"):
            continue        # running it is the command; importing it is harmless, but not a name
        module = importlib.import_module(name)
        parent, _, leaf = name.rpartition(".")
        attribute = getattr(importlib.import_module(parent), leaf, module)
        if attribute is not module:
            wrong.append(f"{name} is also {parent}.{leaf} = {attribute!r}")
    assert wrong == []


@pytest.mark.parametrize("name", ["websocket", "metrics", "backplane"])
def test_the_plugin_functions_are_not_modules(name):
    assert callable(getattr(fastws, name)) and not hasattr(getattr(fastws, name), "__path__")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module(f"fastws.{name}")


@pytest.mark.parametrize("old, new", [
    ("fastws.compression", "fastws.deflate.permessage"),
    ("fastws.context", "fastws.http.context"),
    ("fastws.server", "fastws.serve.server"),
])
def test_documented_paths_re_export_every_public_name(old, new):
    before, now = importlib.import_module(old), importlib.import_module(new)
    assert list(before.__all__) == list(now.__all__) and now.__all__
    for name in now.__all__:
        assert getattr(before, name) is getattr(now, name), name


def test_fastws_cluster_re_exports_the_names_it_had_from_where_each_lives():
    # One module held them all (fastws.cluster.relay); each now lives where its
    # job is, the plugin function with the other plugins.
    homes = {"backplane": "fastws.plugins.cluster", "BackplaneOptions": "fastws.cluster.options",
             "BackplanePlugin": "fastws.plugins.cluster", "Cluster": "fastws.cluster.facade",
             "RedisRelay": "fastws.cluster.relay", "ShardedRelay": "fastws.cluster.sharded",
             "make_relay": "fastws.cluster.sharded", "ENVELOPE_VERSION": "fastws.cluster.envelope",
             "HEADER_SIZE": "fastws.cluster.envelope"}
    cluster = importlib.import_module("fastws.cluster")
    assert list(cluster.__all__) == list(homes)
    for name, home in homes.items():
        module = importlib.import_module(home)
        assert name in module.__all__ and getattr(cluster, name) is getattr(module, name), name
    namespace: dict = {}
    exec("from fastws.cluster import *", namespace)
    assert {n for n in namespace if not n.startswith("__")} == set(homes)
    with pytest.raises(AttributeError):
        cluster.no_such_name


def test_the_documented_names_are_there():
    from fastws.cluster import Cluster
    from fastws.compression import DeflateOptions
    from fastws.context import Context, HTTPError, Response
    from fastws.server import Server, run
    assert Server is fastws.Server and Cluster is fastws.Cluster and Context is fastws.Context
    assert HTTPError is fastws.HTTPError and Response is fastws.Response
    from fastws.deflate.permessage import DeflateOptions as where_it_lives
    from fastws.serve.server import run as run_lives
    assert run is run_lives and DeflateOptions is where_it_lives


def test_every_public_exception_is_defined_in_errors():
    import fastws.errors
    elsewhere = []
    for name in every_module():
        if name.endswith("__main__"):
            continue
        module = importlib.import_module(name)
        for attr, value in vars(module).items():
            if (isinstance(value, type) and issubclass(value, BaseException)
                    and value.__module__.startswith("fastws") and not attr.startswith("_")
                    and value.__module__ != "fastws.errors"):
                elsewhere.append(f"{value.__module__}.{value.__qualname__}")
    assert sorted(set(elsewhere)) == []
    assert fastws.ProtocolError is fastws.errors.ProtocolError
    assert fastws.HTTPError is fastws.errors.HTTPError


def test_plugins_set_only_what_the_app_declares():
    from fastws import backplane, create_app, error_handler, metrics, websocket
    app = create_app()
    declared = set(vars(app))
    for plugin in (websocket(), error_handler(), metrics("/metrics"),
                   backplane("redis://127.0.0.1:6379/0")):
        app.use(plugin)
    assert set(vars(app)) == declared
    assert app.backplane is not None and app.metrics_collector is not None


def test_what_serving_reads_of_an_app_is_the_site_contract():
    from fastws import create_app
    from fastws.http.protocol import Site
    app = create_app()
    members = {n for n in vars(Site) if not n.startswith("_")} | set(Site.__annotations__)
    assert {"resolve", "startup_hooks", "backplane", "cluster_handlers"} <= members
    for name in members:
        assert hasattr(app, name), name
