"""Proxy headers: who the client is when fastws sits behind a load balancer.

With ``proxy_headers`` on, one header family is believed, the one the operator
names (``forwarded_header``): ``X-Forwarded-For`` with ``X-Forwarded-Proto``
(the default, what nginx and most load balancers write) or the RFC 7239
``Forwarded`` header. The other family is ignored: a client's own ``Forwarded``
passed through by a proxy that writes ``X-Forwarded-For`` must not name the
client. Headers are believed only when the connection comes from an address in
``forwarded_allow_ips`` (default ``127.0.0.1``; ``*`` trusts every peer, CIDR
networks are allowed, ``unix`` trusts peers on a Unix socket). The client is then
the rightmost address of the chain that is not itself a trusted proxy: a client
can put anything at the left of the header, but each trusted hop appends the
address it saw, so the first untrusted address from the right is the last one
that a proxy of ours vouched for. Headers from an untrusted peer are ignored.

Every address is checked to be one (IPv4, or IPv6 with or without brackets, a
port or a zone) and written in one canonical form, so ``2001:DB8::1`` and
``2001:db8:0::1`` are one client for per-address limits, and nothing but an
address reaches a log line. A header whose chosen entry is not an address (an
RFC 7239 obfuscated name, ``unknown``, or anything else) is ignored as a whole
(the peer is the client) and counted in ``ProxyTrust.invalid``.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

__all__ = ["ProxyTrust", "canonical_address", "HEADER_FAMILIES"]

#: What ``forwarded_header`` may name.
HEADER_FAMILIES = ("x-forwarded-for", "forwarded")


def canonical_address(value: str) -> str | None:
    """The address in ``value`` (a header's entry: ``"192.0.2.1:80"``,
    ``[2001:db8::1]:4711``, ``fe80::1%eth0``, quoted or not) in canonical form,
    or None when it is not an IP address."""
    value = value.strip().strip('"').strip()
    if value.startswith("["):
        end = value.find("]")
        rest = value[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        value = value[1:end]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]          # IPv4 with a port
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


class ProxyTrust:
    """Which peers may tell us who the client is, and the resolution itself."""

    def __init__(self, allow: str | Iterable[str] = "127.0.0.1",
                 header: str = "x-forwarded-for") -> None:
        header = header.strip().lower()
        if header not in HEADER_FAMILIES:
            raise ValueError(f"forwarded_header: {header!r} is not one of "
                             f"{', '.join(HEADER_FAMILIES)}")
        self.header = header
        #: Headers from a trusted peer ignored because the entry they named was
        #: not an address.
        self.invalid = 0
        items = [a.strip() for a in (allow.split(",") if isinstance(allow, str) else allow)]
        items = [a for a in items if a]
        self.everyone = "*" in items
        self._hosts: set[str] = set()
        self._nets: list[Any] = []
        for item in items:
            if item in ("*", "unix"):
                continue
            try:
                if "/" in item:
                    self._nets.append(ipaddress.ip_network(item, strict=False))
                else:
                    self._hosts.add(str(ipaddress.ip_address(item)))
            except ValueError:
                raise ValueError(f"forwarded_allow_ips: {item!r} is not an IP address or "
                                 f"network") from None
        self.allow = items

    def trusted(self, host: str) -> bool:
        """Whether ``host`` is one of our proxies."""
        if self.everyone:
            return True
        if host in self._hosts:
            return True
        if not self._nets:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self._nets)

    def resolve(self, peer: Any, headers: Any) -> tuple[Any, str | None]:
        """(client address, scheme or None) for a request from ``peer`` with
        ``headers``; the peer itself when it is not trusted or says nothing."""
        if isinstance(peer, tuple) and peer:
            if not self.trusted(peer[0]):
                return peer, None
        elif not (self.everyone or "unix" in self.allow):
            # A Unix socket (the peer has no address): trusted when the list says "unix".
            return peer, None
        chain: list[tuple[str | None, str | None]]     # (address or None, proto), left to right
        if self.header == "forwarded":
            chain = []
            for header in headers.getall("forwarded"):
                for element in header.split(","):
                    pairs = {}
                    for pair in element.split(";"):
                        key, sep, value = pair.partition("=")
                        if sep:
                            pairs[key.strip().lower()] = value.strip().strip('"')
                    chain.append((canonical_address(pairs.get("for") or ""),
                                  (pairs.get("proto") or "").lower() or None))
        else:
            addrs = [a for h in headers.getall("x-forwarded-for") for a in h.split(",") if a.strip()]
            if not addrs:
                return peer, None
            protos = [p.strip().lower() for h in headers.getall("x-forwarded-proto")
                      for p in h.split(",") if p.strip()]
            edge = protos[0] if protos else None
            chain = [(canonical_address(a), protos[i] if len(protos) == len(addrs) else edge)
                     for i, a in enumerate(addrs)]
        if not chain:
            return peer, None
        client, proto = chain[0]
        for host, p in reversed(chain):
            client, proto = host, p
            if host is None or not self.trusted(host):
                break
        if client is None:
            # The entry that would name the client is no address: believe none
            # of it (the peer, our proxy, is the client) and count it.
            self.invalid += 1
            return peer, None
        if proto not in ("http", "https", "ws", "wss"):
            proto = None
        return (client, 0), proto
