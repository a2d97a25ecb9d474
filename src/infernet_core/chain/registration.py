"""Node identity on the Coordinator: register the wallet, then activate it after the cooldown.

A node must be active before the Coordinator accepts its deliveries. Registration (anyone
may register any address) starts a cooldown (3600 s on the seed-era Coordinator); after it
the node itself activates. Both are one transaction from the node's wallet, with gas
``min(100000, max_gas_limit)``, sent only after the configured address is found to be a
seed-era (SDK v0.1) Coordinator (:mod:`.protocol`).
"""

from __future__ import annotations

import enum
from typing import Final

from eth_abi import decode

from ..config import NodeConfig, WalletConfig
from ..errors import ConfigError
from .coordinator import Coordinator
from .protocol import address_key, probe_protocol, protocol_problem
from .rpc import ChainError, Reverted, connect
from .wallet import Wallet

__all__ = ("NodeStatus", "RegistrationError", "activate_node", "register_node")

_GAS: Final = 100_000
COOLDOWN: Final = 3600


class NodeStatus(enum.IntEnum):
    """A node's standing with the Coordinator."""

    INACTIVE = 0
    REGISTERED = 1
    ACTIVE = 2


class RegistrationError(Exception):
    """Registration or activation was refused; the message says why."""


async def register_node(config: NodeConfig) -> str:
    """Register the configured wallet as a node; return what happened, in a sentence.

    Raises:
        ConfigError: The configured address is not a v0.1 Coordinator (one line says what it is).
        RegistrationError: The Coordinator refused (already registered or active).
        ChainError: The transaction could not be sent or was not mined.
    """
    wallet, coordinator = _connect(config)
    try:
        await _check_protocol(config, coordinator)
        status, _ = await coordinator.node_info(wallet.address)
        if status != NodeStatus.INACTIVE:
            raise RegistrationError(f"node {wallet.address} is already {NodeStatus(status).name.lower()}")
        await _transact(wallet, coordinator, coordinator.register_node(wallet.address))
        _, cooldown_start = await coordinator.node_info(wallet.address)
        return (
            f"registered node {wallet.address}; activate it (infernet-node activate) once the cooldown"
            f" ends at chain time {cooldown_start + COOLDOWN}"
        )
    finally:
        await coordinator.w3.provider.disconnect()


async def activate_node(config: NodeConfig) -> str:
    """Activate the configured (registered) wallet; return what happened, in a sentence.

    Raises:
        ConfigError: The configured address is not a v0.1 Coordinator (one line says what it is).
        RegistrationError: Not registered, or the cooldown is still running.
        ChainError: The transaction could not be sent or was not mined.
    """
    wallet, coordinator = _connect(config)
    try:
        await _check_protocol(config, coordinator)
        status, _ = await coordinator.node_info(wallet.address)
        if status == NodeStatus.ACTIVE:
            return f"node {wallet.address} is already active"
        if status == NodeStatus.INACTIVE:
            raise RegistrationError(f"node {wallet.address} is not registered: run infernet-node register first")
        try:
            await _transact(wallet, coordinator, coordinator.activate_node())
        except Reverted as revert:
            if revert.name == "CooldownActive":
                (cooldown_start,) = decode(["uint32"], revert.data[4:])
                raise RegistrationError(
                    f"cooldown still running: node {wallet.address} can be activated from chain time"
                    f" {cooldown_start + COOLDOWN}"
                ) from None
            raise RegistrationError(f"activation refused: {revert.name}") from None
        return f"activated node {wallet.address}"
    finally:
        await coordinator.w3.provider.disconnect()


def _connect(config: NodeConfig) -> tuple[Wallet, Coordinator]:
    wallet_config = config.chain.wallet or WalletConfig()
    w3 = connect(config.chain.rpc_url)
    wallet = Wallet(w3, wallet_config.private_key, max_gas_limit=wallet_config.max_gas_limit)
    return wallet, Coordinator(w3, config.coordinator)


async def _check_protocol(config: NodeConfig, coordinator: Coordinator) -> None:
    protocol = await probe_protocol(coordinator.w3, coordinator.address)
    problem = protocol_problem(protocol, coordinator.address, address_key(config))
    if problem is not None:
        raise ConfigError(problem)


async def _transact(wallet: Wallet, coordinator: Coordinator, calldata: bytes) -> None:
    tx_hash = await wallet.transact(coordinator.address, calldata, gas_limit=_GAS)
    receipt = await wallet.wait(tx_hash)
    if receipt["status"] != 1:
        raise ChainError(f"transaction 0x{tx_hash.hex()} reverted")
