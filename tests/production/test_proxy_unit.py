"""ProxyTrust: who the client is behind trusted and untrusted proxy chains (values only)."""

from __future__ import annotations

import pytest

from fastws.http.context import Headers
from fastws.ops.proxy import ProxyTrust


def headers(*pairs: tuple[str, str]) -> Headers:
    h = Headers()
    for k, v in pairs:
        h.add(k, v)
    return h


def test_an_untrusted_peer_is_the_client_whatever_it_says():
    trust = ProxyTrust("127.0.0.1")
    peer = ("203.0.113.9", 5555)
    assert trust.resolve(peer, headers(("x-forwarded-for", "1.2.3.4"))) == (peer, None)
    assert trust.resolve(peer, headers(("forwarded", "for=1.2.3.4"))) == (peer, None)


def test_three_hops_and_a_spoofed_leftmost_entry():
    # client 198.51.100.7 -> edge LB 10.0.0.1 -> inner proxy 10.0.0.2 -> us (peer 127.0.0.1);
    # the client forged "6.6.6.6" at the left of its own X-Forwarded-For.
    trust = ProxyTrust("127.0.0.1,10.0.0.0/24")
    h = headers(("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.1"),
                ("x-forwarded-for", "10.0.0.2"), ("x-forwarded-proto", "https"))
    assert trust.resolve(("127.0.0.1", 40000), h) == (("198.51.100.7", 0), "https")


def test_all_hops_trusted_gives_the_leftmost():
    trust = ProxyTrust("*")
    h = headers(("x-forwarded-for", "192.0.2.1, 192.0.2.2"))
    assert trust.resolve(("192.0.2.3", 1), h) == (("192.0.2.1", 0), None)


def test_rfc7239_forwarded_with_ports_ipv6_and_proto():
    trust = ProxyTrust(["127.0.0.1", "10.1.1.1"], header="forwarded")
    h = headers(("forwarded", 'for=6.6.6.6, for="[2001:db8:cafe::17]:4711";proto=https, '
                              'for=10.1.1.1;proto=http'))
    assert trust.resolve(("127.0.0.1", 9), h) == (("2001:db8:cafe::17", 0), "https")
    # Only the family asked for: X-Forwarded-For is ignored here...
    h.add("x-forwarded-for", "9.9.9.9")
    assert trust.resolve(("127.0.0.1", 9), h)[0] == ("2001:db8:cafe::17", 0)


def test_only_the_chosen_family_names_the_client():
    # ...and Forwarded is ignored under the default: nginx writes X-Forwarded-For
    # and passes a client's own Forwarded through.
    trust = ProxyTrust("127.0.0.1")
    h = headers(("forwarded", "for=6.6.6.6;proto=https"), ("x-forwarded-for", "10.9.9.9"))
    assert trust.resolve(("127.0.0.1", 9), h) == (("10.9.9.9", 0), None)
    only_forwarded = headers(("forwarded", "for=6.6.6.6"))
    assert trust.resolve(("127.0.0.1", 9), only_forwarded) == (("127.0.0.1", 9), None)
    with pytest.raises(ValueError, match="forwarded_header"):
        ProxyTrust("127.0.0.1", header="x-real-ip")


@pytest.mark.parametrize("spelling", ["2001:db8::1", "2001:DB8::1", "2001:db8:0::1",
                                      "[2001:db8::1]", "[2001:db8:0:0::1]:443", '"[2001:db8::1]"'])
def test_one_address_has_one_spelling(spelling):
    trust = ProxyTrust("127.0.0.1")
    assert trust.resolve(("127.0.0.1", 9), headers(("x-forwarded-for", spelling)))[0] == \
        ("2001:db8::1", 0)


@pytest.mark.parametrize("bad", ['1.1.1.1" - "GET /admin', "unknown", "_hidden", "evil.example",
                                 "1.1.1.1.1", "[2001:db8::1", ""])
def test_an_entry_that_is_no_address_is_ignored_and_counted(bad):
    trust = ProxyTrust("127.0.0.1")
    h = headers(("x-forwarded-for", f"{bad}"))
    assert trust.resolve(("127.0.0.1", 9), h) == (("127.0.0.1", 9), None)
    forwarded = ProxyTrust("127.0.0.1", header="forwarded")
    h = headers(("forwarded", f'for="{bad}";proto=https'))
    assert forwarded.resolve(("127.0.0.1", 9), h) == (("127.0.0.1", 9), None)
    assert trust.invalid + forwarded.invalid >= 1


def test_a_trusted_peer_with_no_header_is_itself():
    assert ProxyTrust().resolve(("127.0.0.1", 7), headers()) == (("127.0.0.1", 7), None)


def test_bad_allow_list_is_refused():
    with pytest.raises(ValueError, match="not an IP address"):
        ProxyTrust("localhost")
