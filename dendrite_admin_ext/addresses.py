"""Client addresses: one normal form for matching, recording and rate limiting.

An IPv4-mapped IPv6 address (``::ffff:203.0.113.9``, what a dual-stack socket reports
for an IPv4 peer) *is* the IPv4 address (SPEC §2): it matches ``trusted_proxies``
written as IPv4 networks, is recorded for whois and the audit trail as
``203.0.113.9``, and shares the IPv4 address's rate-limit bucket.  Other IPv6
addresses take their compressed form (``2001:db8::1``), so one address has one key.
Everything that reads a client address goes through :func:`client_ip`; anything that
is not an IP address (a Unix-socket peer) is kept as it is.
"""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

__all__ = [
    "IPAddress",
    "IPNetwork",
    "client_ip",
    "normalize_address",
    "normalize_network",
    "parse_ip",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# The IPv4-mapped block, ::ffff:0:0/96 (RFC 4291 §2.5.5.2).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


@functools.lru_cache(maxsize=4096)
def parse_ip(value: str) -> IPAddress | None:
    """The address in ``value`` — bare, ``v4:port`` or ``[v6]:port``, as proxies write
    ``X-Forwarded-For`` — IPv4-mapped addresses as IPv4; None if it is not one.
    Cached: a server sees the same few addresses (its proxies, its clients) again and
    again."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[v6]:port"
        value = value[1:value.index("]")]
    elif value.count(":") == 1:  # "v4:port"
        value = value.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def normalize_address(value: str) -> str:
    """The normal text form of an address; ``value`` unchanged if it is not one.
    Plain IPv4 text (the common case) is returned without parsing."""
    if ":" not in value and "[" not in value:
        return value
    ip = parse_ip(value)
    return value if ip is None else str(ip)


def normalize_network(network: IPNetwork) -> IPNetwork:
    """A network inside ``::ffff:0:0/96`` as the IPv4 network it maps (so a proxy
    configured either way is matched either way); any other network unchanged."""
    if (isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96
            and network.subnet_of(_MAPPED)):
        mapped = network.network_address.ipv4_mapped
        assert mapped is not None
        return ipaddress.IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def client_ip(request: web.Request) -> str:
    """The client's address in normal form ("" when unknown): ``request.remote`` as the
    host (or, standalone, the trusted-proxy middleware) set it."""
    return normalize_address(request.remote or "")
