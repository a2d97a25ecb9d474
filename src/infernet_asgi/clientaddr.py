"""Who is calling: the client address a job is scoped to."""

from __future__ import annotations

import functools

from infernet_core.errors import BadRequest
from infernet_core.guardian import IPNetwork, in_networks, parse_ip

from .types import Scope

__all__ = ("client_address",)


def client_address(scope: Scope, trusted_proxies: tuple[IPNetwork, ...] = ()) -> str:
    """The caller's IP address, normalised (IPv4-mapped IPv6 becomes IPv4).

    When the socket peer is a trusted proxy, the ``X-Forwarded-For`` chain is walked from
    the right and the first address that is not itself a trusted proxy is the client.

    Raises:
        BadRequest: The server gave no client address.
    """
    client = scope.get("client")
    if not client or not client[0]:
        raise BadRequest("Could not get client IP address")
    peer = _normalise(client[0])
    if not trusted_proxies or not in_networks(peer, trusted_proxies):
        return peer
    # Repeated header lines form one comma-separated list, in order (RFC 9110 5.3); the
    # right-most entries are the ones our proxies appended.
    hops = [
        hop.strip()
        for name, value in scope.get("headers", ())
        if name == b"x-forwarded-for"
        for hop in value.decode("latin-1").split(",")
    ]
    for hop in reversed(hops):
        if parse_ip(hop) is None:
            break
        if not in_networks(hop, trusted_proxies):
            return _normalise(hop)
    return peer


@functools.lru_cache(maxsize=4096)
def _normalise(address: str) -> str:
    # Cached: parsing with ipaddress costs ~7 us, and clients repeat.
    parsed = parse_ip(address)
    return str(parsed) if parsed is not None else address
