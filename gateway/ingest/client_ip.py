"""The client's address for ``request_ip``: the peer, or ``X-Forwarded-For`` behind trusted proxies.

Anyone can send an ``X-Forwarded-For`` header, so it is believed only when the peer is one of
``ingest.trusted_proxies``. Each proxy appends the address it received the request from, so the
header is read from the right: the first address that is not a trusted proxy is the client —
entries left of it may be made up by the client itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted_proxies
        )

    def of(self, peer: str | None, forwarded_for: str | None) -> str:
        if not peer:
            return ""
        if not forwarded_for or not self.trusts(peer):
            return peer
        client = peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            if _address(hop) is None:
                break  # not written by a proxy: the last trusted hop is the best we know
            client = hop
            if not self.trusts(hop):
                break
        return client

    def trusts(self, address: str | None) -> bool:
        """Whether ``address`` is one of the trusted proxies (their forwarding headers count)."""
        ip = _address(address or "")
        return ip is not None and any(ip in net for net in self.trusted)


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
