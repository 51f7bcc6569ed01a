"""The JS client (``clients/js``) in headless Chromium, in the recovery
scenario: the feed app also serves a page that imports the client as an ES
module and follows ``/feed/lobby``; Chromium (Debian's, driven by
playwright-core: tests/recovery/browser_client.mjs) loads that page through the
``FaultProxy``, so the page and its WebSocket are same-origin and every byte of
both goes through the proxy. The page logs one JSON line per event; the driver
forwards them, and they are read into ``Observed`` as the Node variant's are.
The proxy cuts the link after message 300 (a reset, or a silent stall the
client must notice by the heartbeat) and lets it back after 700: the page must
get all 1,000 exactly once, in order, with 400 recovered, and must have learnt
of the cut the way it was made (1006 after the RST, 4000 after the heartbeat's
silence).

Also: a page left idle stays connected. A browser answers the server's pings
by itself and cannot see them, so only the ``fastws.heartbeat`` frames keep
the client's watchdog quiet.

Chromium and playwright-core come from tests/browser's fixtures (installed when
missing; without node the test skips, or fails under CI=true)."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest

from fastws import Response
from tests.browser.conftest import BROWSER_DIR, chromium, node  # noqa: F401 (fixtures)
from tests.conftest import serving
from tests.recovery.harness import Observed, feed_app, run_scenario
from tests.recovery.test_js_client import NodeClient

pytestmark = pytest.mark.timeout(1200)     # the first run may install Chromium

HERE = Path(__file__).resolve().parent
CLIENT_JS = HERE.parents[1] / "clients" / "js" / "src" / "index.js"

#: The page: the client in a module script, its events as console.log lines.
PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>fastws-client recovery</title></head>
<body>
<script type="module">
import { Client } from "/fastws-client.js";

const out = (obj) => console.log(JSON.stringify(obj));
const client = new Client(`ws://${location.host}/feed/lobby`, { backoff: { base: 0.05, cap: 0.5 } });
client.on("open", () => out({ event: "open" }));
client.on("message", (data, meta) =>
  out({ event: "message", n: data.n, epoch: meta.epoch, offset: meta.offset }));
client.on("recovered", ({ room, recovered, missed }) =>
  out({ event: "recovered", room, recovered, missed }));
client.on("close", ({ code }) => out({ event: "close", code }));
</script>
</body>
</html>
"""


def page_app():
    """``feed_app()`` plus the page (GET /page) and the client (GET /fastws-client.js)."""
    app = feed_app()

    @app.get("/page")
    def page(ctx):
        return ctx.html(PAGE)

    @app.get("/fastws-client.js")
    def client_module(ctx):
        return Response(CLIENT_JS.read_bytes(), 200, None, "text/javascript; charset=utf-8")

    return app


class BrowserClient(NodeClient):
    """tests/recovery/browser_client.mjs: the page in Chromium, its event lines
    read into ``Observed`` (``NodeClient``'s reader and close)."""

    def __init__(self, node: str, chromium: Path, page_url: str, observed: Observed) -> None:
        self.proc = subprocess.Popen([node, str(HERE / "browser_client.mjs"), page_url,
                                      str(chromium), "15000"],
                                     cwd=BROWSER_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.observed = observed
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()


@pytest.mark.parametrize("cut", ["reset", "stall"])
def test_the_js_client_in_chromium_recovers_exactly_what_it_missed(node, chromium, cut):
    def learnt_of_the_cut(observed: Observed, client: BrowserClient) -> None:
        # How the page learnt of the cut: the RST (1006), or the heartbeat's
        # silence (4000) on a stalled link; then each attempt the proxy
        # refused until the restore closed with 1006.
        said = "".join(line for line in client.lines if '"message"' not in line)[-4000:]
        assert observed.closes[0] == (1006 if cut == "reset" else 4000), said
        assert set(observed.closes[1:]) <= {1006}, said

    run_scenario(lambda proxy, observed: BrowserClient(
        node, chromium, f"http://127.0.0.1:{proxy.port}/page", observed), cut,
        app=page_app(), check=learnt_of_the_cut)


def test_an_idle_page_stays_connected(node, chromium):
    """Nothing published for five heartbeat intervals (the feed app's is 0.5 s;
    the client gives a connection up after two silent ones): one connection,
    never closed, and the heartbeat kept it."""
    with serving(page_app()) as srv:
        observed = Observed()
        client = BrowserClient(node, chromium, f"http://127.0.0.1:{srv.port}/page", observed)
        try:
            observed.wait(lambda: observed.opens == 1, "the page's first connection")
            time.sleep(2.5)         # the absence of a close: nothing to wait for
            with observed.lock:
                assert (observed.opens, observed.closes) == (1, []), "".join(client.lines)
        finally:
            client.close()
