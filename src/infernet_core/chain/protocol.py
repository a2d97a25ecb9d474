"""Which Infernet protocol a configured address speaks (v1 spec §9), found with raw reads.

The node serves the seed-era (SDK v0.1) Coordinator. An Infernet v1 config names a v1
*Registry* under ``chain.registry_address`` instead, and a v1 Coordinator answers some of the
same calls as a v0.1 one (``id()``, ``redundancyCount``, the EIP-712 domain...), so a wrong
address would otherwise go unnoticed. :func:`probe_protocol` tells them apart with ``eth_call``
at the latest block: a revert or a short answer means "no" (no SDK contract has a fallback).
:func:`protocol_problem` turns anything but a v0.1 Coordinator into one line for the operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from eth_abi import decode
from eth_abi.exceptions import DecodingError
from eth_typing import ChecksumAddress
from eth_utils import function_signature_to_4byte_selector, to_checksum_address
from web3 import AsyncWeb3

from ..config import NodeConfig
from .rpc import Reverted, retrying

__all__ = ("Protocol", "ProtocolKind", "address_key", "probe_protocol", "protocol_problem")

ProtocolKind = Literal["v0.1-coordinator", "v1-registry", "v1-coordinator", "no-contract", "unknown"]

_COORDINATOR: Final = function_signature_to_4byte_selector("COORDINATOR()")  # 0x3b2bcbf1
_READER: Final = function_signature_to_4byte_selector("READER()")  # 0x698eec44
_WALLET_FACTORY: Final = function_signature_to_4byte_selector("WALLET_FACTORY()")  # 0x0e2009f4
_GET_SUBSCRIPTION: Final = function_signature_to_4byte_selector("getSubscription(uint32)")  # 0xa17b920b, v1
_SUBSCRIPTIONS: Final = function_signature_to_4byte_selector("subscriptions(uint32)")  # 0x73fb5c3a, v0.1
_DELIVERY_OVERHEAD_WEI: Final = function_signature_to_4byte_selector("DELIVERY_OVERHEAD_WEI()")  # 0x90b04c15, v0.1
_COOLDOWN: Final = function_signature_to_4byte_selector("cooldown()")  # 0x787a08a6, v0.1
_NODE_INFO: Final = function_signature_to_4byte_selector("nodeInfo(address)")  # 0x23c2e2bc, v0.1
_ZERO_WORD: Final = bytes(32)

_V1_SUBSCRIPTION_SIZE: Final = 11 * 32
"""The v1 Subscription is static: 11 words inline, no offset word (v1 spec §2.1)."""
_V01_SUBSCRIPTION_TYPES: Final = (
    *("address", "uint32", "uint32", "uint32", "uint16", "uint48", "uint32"),
    *("string", "bytes"),
)
"""What v0.1's public ``subscriptions(uint32)`` returns: the 9 fields, the last two dynamic."""


@dataclass(frozen=True, slots=True)
class Protocol:
    """What an address turned out to be.

    Attributes:
        kind: ``"v0.1-coordinator"`` (what this node serves), ``"v1-registry"``,
            ``"v1-coordinator"``, ``"no-contract"`` (no code at the address) or ``"unknown"``
            (a contract that is none of these).
        coordinator: For a v1 Registry, the Coordinator it names (checksummed); else ``""``.
    """

    kind: ProtocolKind
    coordinator: str = ""


async def probe_protocol(w3: AsyncWeb3[Any], address: str, *, attempts: int | None = 3) -> Protocol:
    """Find out which protocol the contract at ``address`` speaks (v1 spec §9).

    1. No code: ``no-contract``.
    2. ``COORDINATOR()`` names an address with code that answers ``getSubscription(0)`` with
       exactly 352 bytes, and ``READER()`` and ``WALLET_FACTORY()`` name addresses with code:
       ``v1-registry``.
    3. ``getSubscription(0)`` answers 352 bytes: ``v1-coordinator``.
    4. Any of ``subscriptions(0)`` answering the dynamic 9-field v0.1 tuple,
       ``DELIVERY_OVERHEAD_WEI()`` = 56600, ``cooldown()`` = 3600, or ``nodeInfo(0x0)``
       answering: ``v0.1-coordinator``.
    5. Otherwise ``unknown``.

    Args:
        w3: The async web3 client.
        address: The address to probe (any case).
        attempts: Tries per read on transient RPC failures (``None``: for as long as it takes).

    Raises:
        ChainError: A read kept failing (the RPC is unreachable, say).
    """
    reader = _Reader(w3, attempts)
    contract = to_checksum_address(address)
    if not await reader.has_code(contract):
        return Protocol("no-contract")
    coordinator = await reader.address_at(contract, _COORDINATOR)
    if (
        coordinator is not None
        and await reader.has_code(coordinator)
        and await reader.is_v1_coordinator(coordinator)
        and await reader.names_code(contract, _READER)
        and await reader.names_code(contract, _WALLET_FACTORY)
    ):
        return Protocol("v1-registry", coordinator=coordinator)
    if await reader.is_v1_coordinator(contract):
        return Protocol("v1-coordinator")
    if await reader.is_v01_coordinator(contract):
        return Protocol("v0.1-coordinator")
    return Protocol("unknown")


def protocol_problem(protocol: Protocol, address: str, key: str) -> str | None:
    """The one line to stop on when ``protocol`` is not what this node serves, else ``None``.

    Args:
        protocol: From :func:`probe_protocol`.
        address: The probed address.
        key: The config key it came from (``"chain.registry_address"``).
    """
    found = {
        "v0.1-coordinator": None,
        "v1-registry": f"is an Infernet v1 Registry (Coordinator {protocol.coordinator})",
        "v1-coordinator": "is an Infernet v1 Coordinator",
        "no-contract": "has no contract code on this chain (check chain.rpc_url too)",
        "unknown": "is a contract that is not an Infernet Coordinator",
    }[protocol.kind]
    if found is None:
        return None
    return (
        f"config: {key} {to_checksum_address(address)} {found}; this node serves the seed-era (SDK v0.1)"
        " Coordinator only: set chain.coordinator_address to a v0.1 Coordinator"
    )


def address_key(config: NodeConfig) -> str:
    """The config key the Coordinator address (:attr:`NodeConfig.coordinator`) came from."""
    return "chain.coordinator_address" if config.chain.coordinator_address else "chain.registry_address"


class _Reader:
    """Raw reads at the latest block; a revert is an empty answer."""

    def __init__(self, w3: AsyncWeb3[Any], attempts: int | None) -> None:
        self._w3 = w3
        self._attempts = attempts

    async def call(self, to: ChecksumAddress, data: bytes) -> bytes:
        try:
            result = await retrying(
                lambda: self._w3.eth.call({"to": to, "data": data}, "latest"),
                f"probing {to} (0x{data[:4].hex()})",
                attempts=self._attempts,
            )
        except Reverted:
            return b""
        return bytes(result)

    async def has_code(self, address: ChecksumAddress) -> bool:
        code = await retrying(
            lambda: self._w3.eth.get_code(address, "latest"), f"reading the code at {address}", attempts=self._attempts
        )
        return len(code) > 0

    async def address_at(self, contract: ChecksumAddress, getter: bytes) -> ChecksumAddress | None:
        """The address an ``address`` getter returns, ``None`` if it does not answer one."""
        word = await self.call(contract, getter)
        if len(word) != 32 or word[:12] != bytes(12):
            return None
        return to_checksum_address(word[12:])

    async def names_code(self, contract: ChecksumAddress, getter: bytes) -> bool:
        named = await self.address_at(contract, getter)
        return named is not None and await self.has_code(named)

    async def is_v1_coordinator(self, contract: ChecksumAddress) -> bool:
        return len(await self.call(contract, _GET_SUBSCRIPTION + _ZERO_WORD)) == _V1_SUBSCRIPTION_SIZE

    async def is_v01_coordinator(self, contract: ChecksumAddress) -> bool:
        try:
            decode(_V01_SUBSCRIPTION_TYPES, await self.call(contract, _SUBSCRIPTIONS + _ZERO_WORD))
            return True
        except (DecodingError, OverflowError, ValueError):
            pass
        if await self.call(contract, _DELIVERY_OVERHEAD_WEI) == (56600).to_bytes(32, "big"):
            return True
        if await self.call(contract, _COOLDOWN) == (3600).to_bytes(32, "big"):
            return True
        return len(await self.call(contract, _NODE_INFO + _ZERO_WORD)) >= 64
