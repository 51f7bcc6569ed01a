"""Proxy headers: who the client is when fastws sits behind a load balancer.

With ``proxy_headers`` on, ``X-Forwarded-For`` / ``X-Forwarded-Proto`` and the
RFC 7239 ``Forwarded`` header are believed only when the connection comes from
an address in ``forwarded_allow_ips`` (default ``127.0.0.1``; ``*`` trusts
every peer, CIDR networks are allowed, ``unix`` trusts peers on a Unix socket). The client is then the rightmost
address of the chain that is not itself a trusted proxy: a client can put
anything at the left of the header, but each trusted hop appends the address
it saw, so the first untrusted address from the right is the last one that a
proxy of ours vouched for. Headers from an untrusted peer are ignored.
``Forwarded`` wins over ``X-Forwarded-*`` when both are present.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

__all__ = ["ProxyTrust"]


def _strip_port(value: str) -> str:
    """``"[2001:db8::1]:4711"`` -> ``"2001:db8::1"``, ``"192.0.2.1:80"`` -> ``"192.0.2.1"``."""
    value = value.strip().strip('"')
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


class ProxyTrust:
    """Which peers may tell us who the client is, and the resolution itself."""

    def __init__(self, allow: str | Iterable[str] = "127.0.0.1") -> None:
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
        forwarded = headers.getall("forwarded") if hasattr(headers, "getall") else []
        if forwarded:
            hops = []           # (for, proto) per element, left to right
            for header in forwarded:
                for element in header.split(","):
                    pairs = {}
                    for pair in element.split(";"):
                        key, sep, value = pair.partition("=")
                        if sep:
                            pairs[key.strip().lower()] = value.strip().strip('"')
                    hops.append((pairs.get("for"), pairs.get("proto")))
            chain = [(_strip_port(f) if f else "unknown", p) for f, p in hops]
        else:
            xff = headers.getall("x-forwarded-for") if hasattr(headers, "getall") else []
            if not xff:
                return peer, None
            addrs = [a.strip() for h in xff for a in h.split(",") if a.strip()]
            protos = [p.strip().lower() for h in headers.getall("x-forwarded-proto")
                      for p in h.split(",") if p.strip()]
            if len(protos) == len(addrs):
                chain = list(zip(addrs, protos))
            else:
                edge = protos[0] if protos else None
                chain = [(a, edge) for a in addrs]
            chain = [(_strip_port(a), p) for a, p in chain]
        if not chain:
            return peer, None
        client, proto = chain[0]
        for host, p in reversed(chain):
            client, proto = host, p
            if not self.trusted(host):
                break
        if proto not in ("http", "https", "ws", "wss"):
            proto = None
        return (client, 0), proto
