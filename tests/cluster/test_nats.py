"""The NATS backplane (issue 25) against nats-server processes of the tests'
own: a restart and a link cut by a proxy (resubscribed, the app told, local
delivery untouched, publishes meanwhile dropped and counted), a silent link
found by the PING probe, credentials and tokens never shown, TLS, room names
that are not subject tokens, and what it refuses (a prefix that is not a
subject). Room history on JetStream: ``test_nats_history``. The contract tests (``test_backplane``,
``test_workers``) run on NATS too (the ``backplane_url`` fixture's "nats")."""

from __future__ import annotations

from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed

from fastws import BackplaneError, backplane, create_app, websocket
from fastws.cluster.nats_link import parse_nats_url, subject_token
from tests.conftest import serving
from tests.integration.clients import ws_connect

from .conftest import Node, OwnNats, SilentProxy, free_port
from .test_backplane import eventually, get, member, nodes, nothing_more

pytestmark = pytest.mark.timeout(120)


def test_room_names_map_to_subject_tokens_without_collisions():
    names = ["lobby", "a.b", "a=2Eb", "a b", "*", ">", "", "é", "room-1_x", "=", "a.b.c", "a\r\nb"]
    tokens = [subject_token(n) for n in names]
    assert len(set(tokens)) == len(names), tokens
    for t in tokens:
        assert t and all(c.isalnum() and c.isascii() or c in "_-=" for c in t), t
    assert subject_token("lobby") == "lobby" and subject_token("a.b") == "a=2Eb"


def test_nats_urls_parse_and_never_show_the_secret():
    u = parse_nats_url("nats://alice:s3cr3t@10.0.0.1:4223")
    assert (u.servers, u.user, u.password, u.token) == ((("10.0.0.1", 4223),), "alice", "s3cr3t", None)
    assert "s3cr3t" not in u.safe and u.safe == "nats://alice:***@10.0.0.1:4223"
    t = parse_nats_url("tls://tok3n@a:1,tls://tok3n@b:2")
    assert t.tls and t.token == "tok3n" and "tok3n" not in t.safe
    assert t.servers == (("a", 1), ("b", 2))
    with pytest.raises(ValueError, match="nats:// or tls://"):
        parse_nats_url("redis://x")
    with pytest.raises(ValueError, match="no path"):
        parse_nats_url("nats://x/0")


def test_a_nats_restart_and_a_cut_link_resubscribe_and_tell_the_app(tmp_path, own_nats, prefix):
    proxy = SilentProxy(own_nats.port)
    try:
        with ExitStack() as stack:
            (n0,) = nodes(stack, tmp_path, own_nats.url, prefix, 1)
            (n1,) = nodes(stack, tmp_path / "..", f"nats://127.0.0.1:{proxy.port}", prefix, 1,
                          CLUSTER_PROBE="0.3", CLUSTER_PROBE_TIMEOUT="0.5")
            a, b = member(n0, "odd.room>*é"), member(n1, "odd.room>*é")
            local = member(n0, "odd.room>*é")
            subject = f"{prefix}.r.{subject_token('odd.room>*é')}"
            assert own_nats.subscribers(subject) == 2
            a.send("b odd.room>*é before")
            assert b.recv(timeout=10) == "before" and local.recv(timeout=10) == "before"

            own_nats.stop()
            eventually(lambda: get(n0, "/stats")["events"] == ["lost"], "node 0 told of the loss")
            a.send("b odd.room>*é during")
            assert local.recv(timeout=10) == "during"          # local delivery goes on
            assert get(n0, "/stats")["cluster"]["dropped_outage"] == 1
            assert not get(n0, "/stats")["connected"]
            own_nats.start()
            for n in (n0, n1):
                eventually(lambda: get(n, "/stats")["events"] == ["lost", "restored"],
                           "the node is told NATS is back", 20)
            eventually(lambda: own_nats.subscribers(subject) == 2, "both nodes resubscribed")
            a.send("b odd.room>*é after")
            assert b.recv(timeout=10) == "after" and local.recv(timeout=10) == "after"
            nothing_more(b)          # "during" never crossed

            # A link that stays up but carries nothing: found by the PING probe.
            accepted = proxy.accepted
            proxy.forwarding.clear()
            eventually(lambda: get(n1, "/stats")["events"][-1] == "lost", "the probe noticed", 10)
            proxy.forwarding.set()
            eventually(lambda: get(n1, "/stats")["events"][-1] == "restored", "reconnected", 20)
            assert proxy.accepted > accepted
            eventually(lambda: own_nats.subscribers(subject) == 2, "resubscribed after the cut")
            b.send("b odd.room>*é again")
            assert a.recv(timeout=10) == "again"
            for ws in (a, b, local):
                ws.close()
    finally:
        proxy.close()


def test_credentials_work_and_wrong_ones_are_refused_without_showing_them(tmp_path, prefix):
    users = OwnNats(tmp_path, 'authorization { users = [ { user: "alice", password: "hunter2" } ] }')
    users.start()
    try:
        good = Node(tmp_path / "good.log",
                    {"FASTWS_BACKPLANE": f"nats://alice:hunter2@127.0.0.1:{users.port}",
                     "CLUSTER_PREFIX": prefix})
        with good:
            ws = member(good, "r")
            ws.close()
            assert "hunter2" not in good.log()
        bad = Node(tmp_path / "bad.log",
                   {"FASTWS_BACKPLANE": f"nats://alice:wrong-pw@127.0.0.1:{users.port}"})
        bad.start(wait=False)
        try:
            assert bad.proc.wait(30) != 0
            log = bad.log()
            assert "Authorization Violation" in log and "wrong-pw" not in log, log
            assert f"nats://alice:***@127.0.0.1:{users.port}" in log
        finally:
            bad.kill()
    finally:
        users.stop()
    (tmp_path / "t").mkdir()
    token = OwnNats(tmp_path / "t", 'authorization { token: "s3cr3t-t0ken" }')
    token.start()
    try:
        with Node(tmp_path / "token.log", {"FASTWS_BACKPLANE": f"nats://s3cr3t-t0ken@127.0.0.1:{token.port}",
                                           "CLUSTER_PREFIX": prefix}) as node:
            member(node, "r").close()
            assert "s3cr3t-t0ken" not in node.log()
    finally:
        token.stop()


def test_unreachable_nats_stops_the_start_with_the_url_and_no_password(tmp_path):
    port = free_port()
    node = Node(tmp_path / "node.log", {"FASTWS_BACKPLANE": f"nats://bob:s3cr3t@127.0.0.1:{port}"})
    node.start(wait=False)
    try:
        assert node.proc.wait(30) != 0
        log = node.log()
        assert f"nats://bob:***@127.0.0.1:{port}" in log and "s3cr3t" not in log, log
    finally:
        node.kill()


def test_tls_url_works(tmp_path, prefix):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    secure = OwnNats(tmp_path, 'tls { cert_file: "%s", key_file: "%s" }'
                     % (tmp_path / "cert.pem", tmp_path / "key.pem"))
    secure.start()
    try:
        url = f"tls://127.0.0.1:{secure.port}?tls_ca={tmp_path / 'ca.pem'}"
        with ExitStack() as stack:
            n0, n1 = nodes(stack, tmp_path, url, prefix, 2)
            a, b = member(n0, "r"), member(n1, "r")
            a.send("b r over tls")
            assert b.recv(timeout=10) == "over tls"
            assert secure.subscribers(f"{prefix}.r.r") == 2
            a.close(); b.close()
    finally:
        secure.stop()


def test_what_a_nats_backplane_refuses_is_said_at_start(nats, prefix):
    app = create_app()
    app.use(websocket())
    app.use(backplane(nats.url, prefix="has:colon"))
    with pytest.raises(BackplaneError, match="not a NATS subject"):
        with serving(app):
            pass


def test_long_room_names_are_hashed_into_a_short_token():
    long_ascii, long_escaped = "r" * 5000, "é" * 200
    for name in (long_ascii, long_escaped):
        token = subject_token(name)
        assert token.startswith("=H") and len(token) == 66, token
    assert subject_token(long_ascii) != subject_token(long_ascii + "x")
    assert subject_token("r" * 256) == "r" * 256          # up to 256 it reads as itself


def test_a_refused_publish_keeps_the_link_and_its_pings_in_step(tmp_path, prefix):
    """A permissions violation is a -ERR that leaves the connection open: the
    node keeps working (joins confirmed, messages crossing), and the PONGs
    still answer the PINGs they belong to."""
    conf = ('authorization { users = [ { user: "n", password: "p", permissions: { publish: '
            '{ allow: [">"], deny: ["%s.r.secret"] }, subscribe: { allow: [">"], '
            'deny: ["%s.r.nosub"] } } } ] }' % (prefix, prefix))
    guarded = OwnNats(tmp_path, conf)
    guarded.start()
    try:
        url = f"nats://n:p@127.0.0.1:{guarded.port}"
        with ExitStack() as stack:
            n0, n1 = nodes(stack, tmp_path, url, prefix, 2)
            a, b = member(n0, "secret"), member(n1, "secret")
            a.send("b secret hidden")                 # refused by NATS, -ERR, link stays
            for i in range(3):
                c, d = member(n0, f"open{i}"), member(n1, f"open{i}")   # joins still confirmed
                c.send(f"b open{i} fine{i}")
                assert d.recv(timeout=10) == f"fine{i}"
                c.close(); d.close()
            nothing_more(b)
            # A refused SUB is answered by a PONG too: the join is not said live.
            refused = ws_connect(n0.url("/chat"), open_timeout=10)
            refused.send("j nosub")
            with pytest.raises((TimeoutError, ConnectionClosed)):
                refused.recv(timeout=3)
            assert "refused the subscription" in n0.log()
            stats = get(n0, "/stats")
            assert stats["events"] == [] and stats["cluster"]["reconnects"] == 0
            assert "Permissions Violation" in n0.log() and "p@" not in n0.log()
            a.close(); b.close()
    finally:
        guarded.stop()


def test_a_rooms_answer_larger_than_nats_takes_is_split(tmp_path, prefix):
    small = OwnNats(tmp_path, "max_payload: 4096")
    small.conf.write_text(small.conf.read_text().replace("max_payload: 8MB\n", ""))
    small.start()
    try:
        with ExitStack() as stack:
            n0, n1 = nodes(stack, tmp_path, small.url, prefix, 2)
            # ~6 KB of names, over two sockets (each may be in 64 rooms)
            names = [f"a-rather-long-room-name-to-fill-the-answer-with-{i:04d}" for i in range(100)]
            socks = [ws_connect(n1.url("/chat"), open_timeout=10) for _ in range(2)]
            for i, name in enumerate(names):
                socks[i % 2].send(f"j {name}")
            for i, name in enumerate(names):
                assert socks[i % 2].recv(timeout=10) == f"joined {name}"
            eventually(lambda: len(get(n0, "/nodes")["nodes"]) == 2, "n0 hears n1")
            assert get(n0, "/rooms")["rooms"] == sorted(names)
            assert get(n1, "/stats")["cluster"]["reconnects"] == 0
            for ws in socks:
                ws.close()
    finally:
        small.stop()


def test_a_room_name_without_utf8_is_refused_at_join(nats, prefix):
    app = create_app()
    app.use(websocket(ping_interval=None))
    app.use(backplane(nats.url, prefix=prefix))

    @app.ws("/j")
    def joiner(ws, ctx):
        try:
            ws.join("lone \ud800 surrogate")
        except ValueError as exc:
            ws.send(f"refused: {exc}")

    with serving(app) as srv:
        client = ws_connect(srv.url("/j"))
        answer = client.recv(timeout=10)
        assert answer.startswith("refused:") and "UTF-8" in answer
        client.close()
