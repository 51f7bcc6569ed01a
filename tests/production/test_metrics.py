"""/metrics scraped with a real HTTP client and parsed with prometheus_client's parser,
after known traffic: exact counts, in one process and under --workers 2."""

from __future__ import annotations

import urllib.request

import pytest

from ..cluster.conftest import Node
from ..cluster.test_workers import children, members_on_each_worker
from ..integration.clients import wait_for, ws_connect

parser = pytest.importorskip("prometheus_client.parser")
pytestmark = pytest.mark.timeout(120)
APP = "tests.production.app:app"


def scrape(node: Node) -> dict[tuple[str, tuple], float]:
    with urllib.request.urlopen(node.url("/metrics", "http"), timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def total(samples: dict, name: str, **labels: str) -> float:
    """Sum of ``name`` over every series whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, v2) in ls for k, v2 in labels.items()))


def test_exact_counts_after_known_traffic(tmp_path):
    with Node(tmp_path / "m.log", {}, app=APP, extra=("--metrics-path", "/metrics")) as node:
        before = scrape(node)
        assert total(before, "fastws_connections") == 0
        with ws_connect(node.url("/ws")) as ws:
            ws.recv()                                   # the greeting
            for i in range(5):
                ws.send(f"m{i}")
                assert ws.recv() == f"m{i}"
            during = scrape(node)
            assert total(during, "fastws_connections") == 1
            assert total(during, "fastws_messages_received_total") == 5
            assert total(during, "fastws_messages_sent_total") == 6
        wait_for(lambda: total(scrape(node), "fastws_closes_total", code="1000") == 1,
                 timeout=10, what="the close counted")
        after = scrape(node)
        assert total(after, "fastws_connections") == 0
        assert total(after, "fastws_upgrades_total", status="101") == 1
        assert total(after, "fastws_messages_received_total") == 5
        assert total(after, "fastws_messages_sent_total") == 6        # data messages only
        assert total(after, "fastws_received_bytes_total") > 5 * 6
        # the scrapes themselves are HTTP requests: 3 answered 200 before this one
        assert total(after, "fastws_http_requests_total", status="200") >= 3
        assert ("fastws_event_loop_lag_seconds", ()) in after
        assert not any(n.startswith("fastws_backplane") for n, _ in after)


def test_one_scrape_returns_every_workers_series(tmp_path):
    extra = ("--metrics-path", "/metrics", "--allow-split-rooms")
    with Node(tmp_path / "w.log", {"FASTWS_BACKPLANE": ""}, workers=2, app="tests.cluster.app:app",
              extra=extra) as node:
        wait_for(lambda: len(children(node.proc.pid)) == 2, timeout=30, what="two workers")
        by_slot = members_on_each_worker(node, "room")
        sent = {"0": 0, "1": 0}
        for slot, members in by_slot.items():
            for ws in members:
                ws.send("hello")                        # unknown verb: received, no answer
                sent[slot] += 1
        expected = {slot: len(members) * 2 + sent[slot] for slot, members in by_slot.items()}
        # (each member sent "j room" and "w" before, and "hello" now)

        def exact() -> bool:
            samples = scrape(node)
            return all(total(samples, "fastws_messages_received_total", worker=slot) == n
                       for slot, n in expected.items()) and \
                total(samples, "fastws_connections") == sum(len(m) for m in by_slot.values())
        wait_for(exact, timeout=15, what=f"both workers' exact counts {expected}")
        for members in by_slot.values():
            for ws in members:
                ws.close()
