"""Admission rules: which jobs this node accepts, from whom.

Pure: a :class:`Guardian` is built once from the configured containers and then answers
questions about requests. Rules are checked in the reference node's order and the first
failure wins; the error strings are the reference's, so existing clients keep working.
An empty allow-list allows everyone. Address comparisons are case-insensitive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from .errors import AdmissionError
from .models import DelegatedSubscriptionRequest, JobRequest
from .subscriptions import Subscription

__all__ = ("ContainerRules", "Guardian", "IPNetwork", "in_networks", "parse_ip", "parse_networks")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str) -> IPAddress | None:
    """Parse a client address; IPv4-mapped IPv6 (``::ffff:1.2.3.4``) becomes plain IPv4.

    Returns ``None`` when ``text`` is not an IP address (a unix socket path, say).
    """
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def parse_networks(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """Parse CIDR strings non-strictly (``10.0.0.5/24`` is fine); a bare address is a /32 or /128."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def in_networks(client: str, networks: tuple[IPNetwork, ...]) -> bool:
    """True if ``client`` is an IP address inside one of ``networks``."""
    address = parse_ip(client)
    return address is not None and any(address in network for network in networks)


@dataclass(frozen=True, slots=True)
class ContainerRules:
    """What the guardian needs to know about one container."""

    id: str
    external: bool = True
    generates_proofs: bool = False
    allowed_ips: tuple[IPNetwork, ...] = ()
    allowed_addresses: frozenset[str] = frozenset()
    allowed_delegate_addresses: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        id: str,
        *,
        external: bool = True,
        generates_proofs: bool = False,
        allowed_ips: Iterable[str] = (),
        allowed_addresses: Iterable[str] = (),
        allowed_delegate_addresses: Iterable[str] = (),
    ) -> ContainerRules:
        """Build rules from config-style values (CIDR strings, addresses in any case)."""
        return cls(
            id=id,
            external=external,
            generates_proofs=generates_proofs,
            allowed_ips=parse_networks(allowed_ips),
            allowed_addresses=frozenset(a.lower() for a in allowed_addresses),
            allowed_delegate_addresses=frozenset(a.lower() for a in allowed_delegate_addresses),
        )

    def allows_ip(self, client: str) -> bool:
        """True if the client address may use this container off-chain."""
        return not self.allowed_ips or in_networks(client, self.allowed_ips)


class Guardian:
    """Checks requests against the configured containers.

    Args:
        containers: The rules of every container the node offers, by id.
    """

    def __init__(self, containers: Mapping[str, ContainerRules]) -> None:
        self._containers = dict(containers)

    def check_job(self, request: JobRequest, client: str) -> None:
        """Admit an off-chain job, or raise.

        Raises:
            AdmissionError: With the reference node's message and params.
        """
        self._check_chain(request.containers, request.requires_proof)
        for container_id in request.containers:
            if not self._containers[container_id].allows_ip(client):
                raise AdmissionError(
                    "Container not allowed for address",
                    {"container": container_id, "address": client},
                )

    def check_delegated(self, request: DelegatedSubscriptionRequest, *, chain_enabled: bool, now: float) -> None:
        """Admit a delegated subscription's containers and owner, or raise.

        Signature and signer checks need the chain and are done by the chain module.

        Raises:
            AdmissionError: With the reference node's message and params.
        """
        subscription = request.subscription
        if not chain_enabled:
            raise AdmissionError("Chain not enabled", {"delegated_subscription": _summary(request)})
        # The contract's rule (a signature is dead from its expiry second on), not the
        # reference node's looser one: a request it would accept could never be created.
        if request.signature.expiry <= int(now):
            raise AdmissionError("Signature expired", {"delegated_subscription": _summary(request)})
        containers = subscription.container_id.split(",")
        self._check_chain(containers, requires_proof=False)
        self._check_owner(containers, subscription.owner, delegated=True)

    def check_subscription(self, subscription: Subscription) -> None:
        """Admit an on-chain subscription's containers and owner, or raise.

        Raises:
            AdmissionError: With the reference node's message and params.
        """
        containers = subscription.containers
        self._check_chain(containers, requires_proof=False)
        self._check_owner(containers, subscription.owner, delegated=False)

    def _check_owner(self, containers: list[str], owner: str, *, delegated: bool) -> None:
        """The owner must be on each container's allow-list (delegated or on-chain)."""
        for container_id in containers:
            rules = self._containers[container_id]
            allowed = rules.allowed_delegate_addresses if delegated else rules.allowed_addresses
            if allowed and owner.lower() not in allowed:
                raise AdmissionError("Container not allowed for address", {"container": container_id, "address": owner})

    def _check_chain(self, containers: list[str], requires_proof: bool) -> None:
        if not containers:
            raise AdmissionError("No containers specified")
        for container_id in containers:
            if container_id not in self._containers:
                raise AdmissionError("Container not supported", {"container": container_id})
        if not self._containers[containers[0]].external:
            raise AdmissionError("First container must be external", {"first_container": containers[0]})
        if requires_proof and not self._containers[containers[-1]].generates_proofs:
            raise AdmissionError("Container does not generate proof", {"container": containers[-1]})


def _summary(request: DelegatedSubscriptionRequest) -> dict[str, Any]:
    """The submitted subscription and signature, for error params (without the job data)."""
    summary: dict[str, Any] = msgspec.to_builtins(
        {"subscription": request.subscription, "signature": request.signature}
    )
    return summary
