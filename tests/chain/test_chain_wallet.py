"""The node's wallet and chain runtime pieces against a real anvil: simulation before sending,
``allowed_sim_errors``, the gas-price guard, nonces under concurrency and after another
sender used the key, and the listener's ``trail_head_blocks`` and ``starting_sub_id``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
from support.chain_kit import DEPLOYER_KEY, NODE_KEYS, Deployment, address_of, mine, send
from web3 import Web3

from infernet_core import LocalContainer, Node
from infernet_core.chain.coordinator import Coordinator
from infernet_core.chain.rpc import Reverted, connect
from infernet_core.chain.wallet import GasPriceTooHigh, Wallet
from infernet_core.config import parse_config
from infernet_core.delivery import DeliveryPayload

pytestmark = [pytest.mark.chain, pytest.mark.anyio]

KEY = NODE_KEYS[0]
EMPTY = DeliveryPayload(b"", b"", b"")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def chain(anvil_url: str, active_deployment: Deployment) -> AsyncIterator[tuple[Wallet, Coordinator]]:
    w3 = connect(anvil_url)
    try:
        yield Wallet(w3, KEY, max_gas_limit=500_000), Coordinator(w3, active_deployment.coordinator.address)
    finally:
        await w3.provider.disconnect()


def nonce(deployment: Deployment) -> int:
    return int(deployment.w3.eth.get_transaction_count(address_of(KEY)))


async def test_a_reverting_delivery_is_not_sent(
    chain: tuple[Wallet, Coordinator], active_deployment: Deployment
) -> None:
    wallet, coordinator = chain
    before = nonce(active_deployment)
    with pytest.raises(Reverted) as info:
        await wallet.transact(coordinator.address, coordinator.deliver_compute(99, 1, EMPTY), gas_limit=300_000)
    assert info.value.name == "SubscriptionNotFound"
    assert nonce(active_deployment) == before


async def test_allowed_simulation_errors_are_sent_with_the_full_gas_limit(
    anvil_url: str, active_deployment: Deployment
) -> None:
    w3 = connect(anvil_url)
    try:
        wallet = Wallet(w3, KEY, max_gas_limit=400_000, allowed_sim_errors=["subscriptionnotfound"])
        coordinator = Coordinator(w3, active_deployment.coordinator.address)
        tx_hash = await wallet.transact(
            coordinator.address, coordinator.deliver_compute(99, 1, EMPTY), gas_limit=300_000
        )
        receipt = await wallet.wait(tx_hash)
    finally:
        await w3.provider.disconnect()
    assert receipt["status"] == 0  # sent although it reverts: the operator said so
    assert active_deployment.w3.eth.get_transaction(tx_hash)["gas"] == 400_000


async def test_gas_price_above_the_maximum_is_refused(
    chain: tuple[Wallet, Coordinator], active_deployment: Deployment
) -> None:
    wallet, coordinator = chain
    before = nonce(active_deployment)
    with pytest.raises(GasPriceTooHigh, match="above the subscription's 1"):
        await wallet.transact(
            coordinator.address, coordinator.register_node(address_of(KEY)), gas_limit=100_000, max_gas_price=1
        )
    assert nonce(active_deployment) == before


async def test_concurrent_sends_get_consecutive_nonces(
    chain: tuple[Wallet, Coordinator], active_deployment: Deployment
) -> None:
    wallet, coordinator = chain
    hashes: list[bytes] = []
    before = nonce(active_deployment)

    async def register(node: str) -> None:
        hashes.append(await wallet.transact(coordinator.address, coordinator.register_node(node), gas_limit=100_000))

    fresh = [f"0x{index:040x}" for index in range(1, 13)]
    async with anyio.create_task_group() as group:
        for node in fresh:
            group.start_soon(register, node)
    receipts = [await wallet.wait(tx_hash) for tx_hash in hashes]
    assert all(receipt["status"] == 1 for receipt in receipts)
    nonces = sorted(active_deployment.w3.eth.get_transaction(h)["nonce"] for h in hashes)
    assert nonces == list(range(before, before + len(fresh)))


async def test_nonce_is_reloaded_after_another_sender_used_the_key(
    chain: tuple[Wallet, Coordinator], active_deployment: Deployment
) -> None:
    wallet, coordinator = chain
    first = await wallet.transact(coordinator.address, coordinator.register_node("0x" + "a1" * 20), gas_limit=100_000)
    await wallet.wait(first)
    # Someone else sends from the node's key: the wallet's local nonce is now stale.
    other = Web3.to_checksum_address("0x" + "a2" * 20)
    send(active_deployment.w3, active_deployment.coordinator.functions.registerNode(other), KEY)
    second = await wallet.transact(coordinator.address, coordinator.register_node("0x" + "a3" * 20), gas_limit=100_000)
    assert (await wallet.wait(second))["status"] == 1
    assert active_deployment.coordinator.functions.nodeInfo(Web3.to_checksum_address("0x" + "a3" * 20)).call()[0] == 1


# -- the listener's knobs ------------------------------------------------------------------


def node_config(anvil_url: str, deployment: Deployment, **chain: Any) -> Any:
    return parse_config(
        {
            "manage_containers": False,
            "chain": {
                "enabled": True,
                "rpc_url": anvil_url,
                "coordinator_address": deployment.coordinator.address,
                "wallet": {"private_key": KEY},
                "snapshot_sync": {"sync_period": 0.05, "sleep": 0.0, "batch_size": 2},
                **chain,
            },
        }
    )


async def echo(payload: Any) -> Any:
    return payload.data


def create_recurring(deployment: Deployment) -> None:
    call = deployment.consumer.functions.createRecurring("echo", 10**12, 1_000_000, 3, 86_400, 1)
    send(deployment.w3, call, DEPLOYER_KEY)


async def test_snapshot_starts_at_starting_sub_id(anvil_url: str, active_deployment: Deployment) -> None:
    for _ in range(5):
        create_recurring(active_deployment)
    config = node_config(anvil_url, active_deployment, trail_head_blocks=0, snapshot_sync={"starting_sub_id": 3})
    async with Node(config, containers=[LocalContainer("echo", echo)]) as node:
        assert node.chain is not None
        with anyio.fail_after(10):
            await node.chain.listener.synced.wait()
        stats = node.chain.listener.stats
        assert stats is not None and (stats.subscriptions, stats.tracked) == (3, 3)
        assert sorted(node.chain.processor.subscriptions) == [3, 4, 5]


async def test_listener_stays_trail_head_blocks_behind(anvil_url: str, active_deployment: Deployment) -> None:
    config = node_config(anvil_url, active_deployment, trail_head_blocks=2)
    async with Node(config, containers=[LocalContainer("echo", echo)]) as node:
        assert node.chain is not None
        with anyio.fail_after(10):
            await node.chain.listener.synced.wait()
        create_recurring(active_deployment)  # mined in block B
        mine(active_deployment.w3)  # head B + 1: B is only one block deep
        await anyio.sleep(0.5)
        assert node.chain.processor.subscriptions == {}
        mine(active_deployment.w3)  # head B + 2: now it is seen
        with anyio.fail_after(10):
            while not node.chain.processor.subscriptions:
                await anyio.sleep(0.05)
        assert list(node.chain.processor.subscriptions) == [1]
