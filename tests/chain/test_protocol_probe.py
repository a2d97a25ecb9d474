"""Which protocol a configured address speaks (v1 spec §9), probed on a real anvil with our own
contracts: the seed-era Coordinator, a v1 Registry naming a v1 Coordinator stand-in, the
stand-in alone, the Consumer, accounts without code; then what the node does with the answer
at start, at once or (when the RPC is down at start) in the background.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import msgspec
import pytest
from anyio.abc import SocketStream
from eth_utils import function_signature_to_4byte_selector
from support.chain_kit import (
    NODE_KEYS,
    STRANGER_KEY,
    CompiledContract,
    Deployment,
    V1Deployment,
    address_of,
    deploy_v1_registry,
    unchecked_delegated_body,
)
from support.redis_server import free_port
from web3 import AsyncWeb3, Web3

from infernet_core import ConfigError, Node
from infernet_core.chain import protocol
from infernet_core.chain.protocol import Protocol, probe_protocol, protocol_problem
from infernet_core.chain.rpc import ChainError, connect
from infernet_core.config import parse_config
from infernet_core.errors import ChainUnavailable
from infernet_core.models import DelegatedSubscriptionRequest

pytestmark = [pytest.mark.chain, pytest.mark.anyio]

NO_CODE = Web3.to_checksum_address("0x" + "5e" * 20)
TAIL = (
    "; this node serves the seed-era (SDK v0.1) Coordinator only: set chain.coordinator_address to a v0.1 Coordinator"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def aw3(anvil_url: str) -> AsyncIterator[AsyncWeb3]:
    w3 = connect(anvil_url)
    try:
        yield w3
    finally:
        await w3.provider.disconnect()


@pytest.fixture
def v1(w3: Web3, chain_contracts: dict[str, CompiledContract]) -> V1Deployment:
    return deploy_v1_registry(w3, chain_contracts)


@pytest.mark.parametrize(
    ("name", "signature", "spec"),
    [
        ("_COORDINATOR", "COORDINATOR()", "3b2bcbf1"),
        ("_READER", "READER()", "698eec44"),
        ("_WALLET_FACTORY", "WALLET_FACTORY()", "0e2009f4"),
        ("_GET_SUBSCRIPTION", "getSubscription(uint32)", "a17b920b"),
        ("_SUBSCRIPTIONS", "subscriptions(uint32)", "73fb5c3a"),
        ("_DELIVERY_OVERHEAD_WEI", "DELIVERY_OVERHEAD_WEI()", "90b04c15"),
        ("_COOLDOWN", "cooldown()", "787a08a6"),
        ("_NODE_INFO", "nodeInfo(address)", "23c2e2bc"),
    ],
)
def test_selectors_are_the_specs(name: str, signature: str, spec: str) -> None:
    assert getattr(protocol, name).hex() == spec
    assert function_signature_to_4byte_selector(signature).hex() == spec


def test_the_test_registry_is_the_v1_address_book(w3: Web3, v1: V1Deployment) -> None:
    registry = v1.registry.functions
    assert registry.COORDINATOR().call() == v1.coordinator.address
    assert {registry.INBOX().call(), registry.READER().call(), registry.FEE().call()} == {v1.other.address}
    assert registry.WALLET_FACTORY().call() == v1.other.address
    setters = [item for item in v1.registry.abi if item.get("stateMutability") not in ("view", "pure")]
    assert [item["type"] for item in setters] == ["constructor"]  # no setters, events or fallback
    # The stand-in's getSubscription is the v1 one: 352 bytes inline, all zero.
    answer = w3.eth.call({"to": v1.coordinator.address, "data": "0xa17b920b" + "00" * 32})
    assert bytes(answer) == bytes(352)


# -- the probe ---------------------------------------------------------------------------------


async def test_seed_era_coordinator(aw3: AsyncWeb3, deployment: Deployment) -> None:
    assert await probe_protocol(aw3, deployment.coordinator.address) == Protocol("v0.1-coordinator")


async def test_v1_registry_names_its_coordinator(aw3: AsyncWeb3, v1: V1Deployment) -> None:
    found = await probe_protocol(aw3, v1.registry.address)
    assert found == Protocol("v1-registry", coordinator=v1.coordinator.address)


async def test_v1_coordinator_given_directly(aw3: AsyncWeb3, v1: V1Deployment) -> None:
    assert await probe_protocol(aw3, v1.coordinator.address) == Protocol("v1-coordinator")


async def test_address_case_does_not_matter(aw3: AsyncWeb3, v1: V1Deployment) -> None:
    found = await probe_protocol(aw3, v1.registry.address.lower())
    assert found == Protocol("v1-registry", coordinator=v1.coordinator.address)


@pytest.mark.parametrize("who", ["funded account", "empty address"])
async def test_no_contract(aw3: AsyncWeb3, who: str) -> None:
    address = address_of(STRANGER_KEY) if who == "funded account" else NO_CODE
    assert await probe_protocol(aw3, address) == Protocol("no-contract")


async def test_other_contract_is_unknown(aw3: AsyncWeb3, deployment: Deployment) -> None:
    assert await probe_protocol(aw3, deployment.consumer.address) == Protocol("unknown")


@pytest.mark.parametrize("broken", ["coordinator: no code", "coordinator: v0.1", "reader", "walletFactory"])
async def test_registry_that_fails_confirmation_is_unknown(
    aw3: AsyncWeb3, w3: Web3, chain_contracts: dict[str, CompiledContract], deployment: Deployment, broken: str
) -> None:
    overrides = {
        "coordinator: no code": {"coordinator": NO_CODE},
        "coordinator: v0.1": {"coordinator": deployment.coordinator.address},
        "reader": {"reader": NO_CODE},
        "walletFactory": {"walletFactory": NO_CODE},
    }[broken]
    v1 = deploy_v1_registry(w3, chain_contracts, **overrides)
    assert await probe_protocol(aw3, v1.registry.address) == Protocol("unknown")


async def test_unreachable_rpc_raises_chain_error() -> None:
    w3 = connect(f"http://127.0.0.1:{free_port()}", timeout=2)
    try:
        with pytest.raises(ChainError, match="failed 1 times"):
            await probe_protocol(w3, NO_CODE, attempts=1)
    finally:
        await w3.provider.disconnect()


# -- the operator's line -----------------------------------------------------------------------


def test_problem_lines() -> None:
    registry, coordinator = "0x" + "ab" * 20, "0x" + "cd" * 20
    checksummed = Web3.to_checksum_address(registry)
    key = "chain.registry_address"
    v1_registry = Protocol("v1-registry", coordinator=Web3.to_checksum_address(coordinator))
    assert protocol_problem(Protocol("v0.1-coordinator"), registry, key) is None
    assert protocol_problem(v1_registry, registry, key) == (
        f"config: chain.registry_address {checksummed} is an Infernet v1 Registry"
        f" (Coordinator {Web3.to_checksum_address(coordinator)})" + TAIL
    )
    key = "chain.coordinator_address"
    assert protocol_problem(Protocol("v1-coordinator"), registry, key) == (
        f"config: chain.coordinator_address {checksummed} is an Infernet v1 Coordinator" + TAIL
    )
    assert protocol_problem(Protocol("no-contract"), registry, key) == (
        f"config: chain.coordinator_address {checksummed} has no contract code on this chain"
        " (check chain.rpc_url too)" + TAIL
    )
    assert protocol_problem(Protocol("unknown"), registry, key) == (
        f"config: chain.coordinator_address {checksummed} is a contract that is not an Infernet Coordinator" + TAIL
    )


# -- the node at start -------------------------------------------------------------------------


def node_config(rpc_url: str, key: str, address: str) -> Any:
    return parse_config(
        {
            "manage_containers": False,
            "chain": {
                "enabled": True,
                "rpc_url": rpc_url,
                "trail_head_blocks": 0,
                key: address,
                "wallet": {"private_key": NODE_KEYS[0]},
                "snapshot_sync": {"sync_period": 0.05, "sleep": 0.0},
            },
        }
    )


def registry_line(v1: V1Deployment, key: str = "registry_address") -> str:
    return (
        f"config: chain.{key} {v1.registry.address} is an Infernet v1 Registry"
        f" (Coordinator {v1.coordinator.address})" + TAIL
    )


DELEGATED = msgspec.convert(unchecked_delegated_body(), DelegatedSubscriptionRequest)


@pytest.mark.parametrize("key", ["registry_address", "coordinator_address"])
async def test_node_refuses_a_v1_registry_at_start(anvil_url: str, v1: V1Deployment, key: str) -> None:
    node = Node(node_config(anvil_url, key, v1.registry.address))
    with pytest.raises(ConfigError) as raised:
        async with node:
            pytest.fail("the node started")
    assert raised.value.message == registry_line(v1, key)
    assert not node.running


async def test_registry_address_naming_a_seed_era_coordinator_still_works(
    anvil_url: str, deployment: Deployment
) -> None:
    async with Node(node_config(anvil_url, "registry_address", deployment.coordinator.address)) as node:
        assert node.chain is not None
        with anyio.fail_after(10):
            await node.chain.listener.synced.wait()


async def _pipe(source: SocketStream, sink: SocketStream) -> None:
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
        async for chunk in source:
            await sink.send(chunk)


async def _forward_to(target_port: int, client: SocketStream) -> None:
    async with (
        client,
        await anyio.connect_tcp("127.0.0.1", target_port) as upstream,
        anyio.create_task_group() as pipes,
    ):
        pipes.start_soon(_pipe, client, upstream)
        await _pipe(upstream, client)
        pipes.cancel_scope.cancel()


@pytest.mark.parametrize("target", ["v1 registry", "v0.1 coordinator"])
async def test_check_deferred_while_the_rpc_is_down(
    anvil_url: str, v1: V1Deployment, deployment: Deployment, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The RPC is down at start: the node starts, and checks the address once the RPC is up
    (here: once a forwarder to anvil listens on the configured port)."""
    port, anvil_port = free_port(), int(anvil_url.rsplit(":", 1)[1])
    address = v1.registry.address if target == "v1 registry" else deployment.coordinator.address
    caplog.set_level(logging.INFO, logger="infernet_core.chain")
    async with Node(node_config(f"http://127.0.0.1:{port}", "registry_address", address)) as node:
        chain = node.chain
        assert chain is not None and node.running
        assert any(
            r.levelno == logging.WARNING
            and r.getMessage().startswith(f"cannot check chain.registry_address {address} now")
            for r in caplog.records
        )
        with pytest.raises(ChainUnavailable) as early:
            await chain.admit_delegated(DELEGATED)
        not_checked = f"Chain unavailable: chain.registry_address {address} is not checked yet (no RPC answer)"
        assert early.value.message == not_checked
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, lambda client: _forward_to(anvil_port, client))
            with anyio.fail_after(15):
                if target == "v0.1 coordinator":
                    await chain.listener.synced.wait()
                else:
                    while not any(r.levelno == logging.ERROR for r in caplog.records):
                        await anyio.sleep(0.05)
                    await anyio.sleep(0.5)  # a listener, had it been started, would have synced by now
            if target == "v1 registry":
                errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
                assert errors == [registry_line(v1)]
                assert not chain.listener.synced.is_set() and chain.listener.stats is None
                with pytest.raises(ChainUnavailable) as refused:
                    await chain.admit_delegated(DELEGATED)
                assert refused.value.message == registry_line(v1)
                assert node.running  # the REST side keeps serving
            else:
                assert chain.listener.stats is not None
            await chain.aclose()  # close the pooled connections through the forwarder
            group.cancel_scope.cancel()
