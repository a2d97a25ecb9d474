"""End to end on a real chain: the real ``infernet-node`` command, a real anvil with our own
Coordinator and Consumer, and real container services, all on loopback.

Chain time is moved with ``evm_increaseTime`` + ``evm_mine`` where intervals need it; the
node reads time from blocks, never from its own clock, so it follows.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    ServiceProcess,
    client,
    free_port,
    node_command,
    running_node,
    start_node,
    start_services,
    submit,
    subprocess_env,
    wait_done,
    write_config,
)
from eth_abi import decode, encode
from support.chain_kit import (
    DEPLOYER_KEY,
    NODE_KEYS,
    SIGNER_KEY,
    STRANGER_KEY,
    CompiledContract,
    Deployment,
    V1Deployment,
    address_of,
    block_timestamp,
    delegate_key,
    delegated_request_body,
    delegated_sub,
    deploy_v1_registry,
    increase_time,
    send,
    sign_delegated,
    unchecked_delegated_body,
)
from web3 import Web3

pytestmark = [pytest.mark.e2e, pytest.mark.chain, pytest.mark.timeout(90)]

HIGH_GAS_PRICE = 10**12
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
GAS_LIMIT = 1_000_000
SETTLE = 1.0
"""Seconds to watch for deliveries that must not happen (10 node sweeps)."""


def chain_config(
    anvil_url: str, deployment: Deployment, service: ServiceProcess, key: str = NODE_KEYS[0], **chain: Any
) -> dict[str, Any]:
    """A node config serving container ``echo`` (the service) on the deployment's Coordinator."""
    return {
        "manage_containers": False,
        "containers": [{"id": "echo", "url": service.url}],
        "chain": {
            "enabled": True,
            "rpc_url": anvil_url,
            "trail_head_blocks": 0,
            "coordinator_address": deployment.coordinator.address,
            "wallet": {"private_key": key, "max_gas_limit": 2_000_000},
            "snapshot_sync": {"sync_period": 0.1, "sleep": 0.0},
            **chain,
        },
    }


def deliveries(deployment: Deployment) -> list[dict[str, Any]]:
    """What the consumer has received, in order."""
    consumer = deployment.consumer
    rows = [consumer.functions.getDelivery(i).call() for i in range(consumer.functions.deliveryCount().call())]
    names = ("subscription_id", "interval", "redundancy", "node", "input", "output", "proof")
    return [dict(zip(names, row, strict=True)) for row in rows]


def eventually(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} not reached within {timeout}s"
        time.sleep(0.05)


def wait_deliveries(deployment: Deployment, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    eventually(lambda: len(deliveries(deployment)) >= count, timeout, f"{count} deliveries")
    return deliveries(deployment)


def container_output(delivery: dict[str, Any]) -> Any:
    """The container's JSON output, from a delivery's ``abi.encode(string)`` output."""
    (text,) = decode(["string"], delivery["output"])
    return json.loads(text)


def request_callback(
    deployment: Deployment, inputs: bytes, *, redundancy: int = 1, max_gas_price: int = HIGH_GAS_PRICE
):
    call = deployment.consumer.functions.requestCallback("echo", inputs, max_gas_price, GAS_LIMIT, redundancy)
    return send(deployment.w3, call, DEPLOYER_KEY)


def create_recurring(deployment: Deployment, frequency: int, period: int, redundancy: int = 1) -> int:
    call = deployment.consumer.functions.createRecurring(
        "echo", HIGH_GAS_PRICE, GAS_LIMIT, frequency, period, redundancy
    )
    send(deployment.w3, call, DEPLOYER_KEY)
    return int(deployment.coordinator.functions.id().call()) - 1


# -- on-chain subscriptions ------------------------------------------------------------------


def test_callback_subscription_delivered_once(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)) as node:
        with client(base_url=node.base_url) as http:
            info = http.get("/info").json()
        assert info["chain"] == {"enabled": True, "address": address_of(NODE_KEYS[0])}
        request_callback(deployment, b"hello")
        (delivery,) = wait_deliveries(deployment, 1)
        time.sleep(SETTLE)
        assert len(deliveries(deployment)) == 1
    assert delivery["subscription_id"] == 1
    assert delivery["interval"] == 1
    assert delivery["redundancy"] == 1
    assert delivery["node"] == address_of(NODE_KEYS[0])
    assert delivery["input"] == b"" and delivery["proof"] == b""
    output = container_output(delivery)
    # On-chain input reaches the container as bare hex, source and destination on-chain (0).
    assert output["echo"] == b"hello".hex()
    assert (output["source"], output["destination"]) == (0, 0)


def test_recurring_subscription_delivered_exactly_frequency_times(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)):
        subscription_id = create_recurring(deployment, frequency=3, period=60)
        time.sleep(SETTLE)
        assert deliveries(deployment) == []  # active only from creation + period
        for interval in (1, 2, 3):
            increase_time(deployment.w3, 60)
            wait_deliveries(deployment, interval)
        increase_time(deployment.w3, 60)
        increase_time(deployment.w3, 60)
        time.sleep(SETTLE)
        received = deliveries(deployment)
    assert [(d["subscription_id"], d["interval"]) for d in received] == [(subscription_id, i) for i in (1, 2, 3)]
    # Empty subscription inputs: the container got the consumer's getContainerInputs(id, interval).
    for delivery in received:
        expected = encode(["uint32", "uint32"], [subscription_id, delivery["interval"]]).hex()
        assert container_output(delivery)["echo"] == expected


def test_redundancy_two_is_answered_by_two_nodes(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_node(tmp_path / "a", chain_config(anvil_url, deployment, echo_service, NODE_KEYS[0])),
        running_node(tmp_path / "b", chain_config(anvil_url, deployment, echo_service, NODE_KEYS[1])),
    ):
        request_callback(deployment, b"twice", redundancy=2)
        received = wait_deliveries(deployment, 2)
        time.sleep(SETTLE)
        assert len(deliveries(deployment)) == 2
    assert {d["node"] for d in received} == {address_of(NODE_KEYS[0]), address_of(NODE_KEYS[1])}
    assert sorted(d["redundancy"] for d in received) == [1, 2]
    assert {d["interval"] for d in received} == {1}


def test_cancellation_stops_delivery(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)):
        subscription_id = create_recurring(deployment, frequency=3, period=60)
        increase_time(deployment.w3, 60)
        wait_deliveries(deployment, 1)
        send(deployment.w3, deployment.consumer.functions.cancel(subscription_id), DEPLOYER_KEY)
        increase_time(deployment.w3, 60)
        time.sleep(SETTLE)
        increase_time(deployment.w3, 60)
        time.sleep(SETTLE)
        assert [d["interval"] for d in deliveries(deployment)] == [1]


def test_gas_price_above_max_is_not_sent(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    node_address = address_of(NODE_KEYS[0])
    nonce_before = deployment.w3.eth.get_transaction_count(node_address)
    calls_before = len(echo_service.calls())
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)) as node:
        request_callback(deployment, b"cheap", max_gas_price=1)  # anvil's gas price is ~1 gwei
        time.sleep(SETTLE * 2)
        assert deliveries(deployment) == []
        # Nothing sent (the nonce did not move), and no container ran for a delivery that
        # could not be paid for.
        assert deployment.w3.eth.get_transaction_count(node_address) == nonce_before
        assert len(echo_service.calls()) == calls_before
    assert "gas price" in node.output()


def test_restart_midway_delivers_nothing_twice(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    config = chain_config(anvil_url, deployment, echo_service)
    subscription_id = create_recurring(deployment, frequency=3, period=60)
    with running_node(tmp_path, config):
        increase_time(deployment.w3, 60)
        wait_deliveries(deployment, 1)
    # A restarted node (graceful stop) must not answer interval 1 again...
    node = start_node(tmp_path, config)
    try:
        time.sleep(SETTLE)
        assert len(deliveries(deployment)) == 1
        increase_time(deployment.w3, 60)
        wait_deliveries(deployment, 2)
    finally:
        node.proc.send_signal(signal.SIGKILL)  # ...nor after dying without a goodbye
        node.stop()
    with running_node(tmp_path, config):
        time.sleep(SETTLE)
        assert len(deliveries(deployment)) == 2
        increase_time(deployment.w3, 60)
        wait_deliveries(deployment, 3)
        increase_time(deployment.w3, 60)
        time.sleep(SETTLE)
        received = deliveries(deployment)
    assert [(d["subscription_id"], d["interval"]) for d in received] == [(subscription_id, i) for i in (1, 2, 3)]


# -- delegated subscriptions -------------------------------------------------------------------


def signed_body(
    w3: Web3, deployment: Deployment, *, signer_key: str = SIGNER_KEY, expiry_in: int = 600, nonce: int = 1, **sub: Any
) -> dict[str, Any]:
    now = block_timestamp(w3)
    fields = delegated_sub(deployment.consumer.address, active_at=now, **sub)
    expiry = now + expiry_in
    signature = sign_delegated(w3.eth.chain_id, deployment.coordinator.address, fields, nonce, expiry, signer_key)
    return delegated_request_body(fields, nonce, expiry, signature, data={"prompt": "delegated"})


def test_delegated_subscription_created_then_served_as_ordinary(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment, w3 = active_deployment, active_deployment.w3
    body = signed_body(w3, deployment, period=60, frequency=2)
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)) as node:
        with client(base_url=node.base_url) as http:
            response = http.post("/api/jobs", json=body)
        assert (response.status_code, response.json()) == (200, {})
        first = wait_deliveries(deployment, 1)[0]
        created = deployment.coordinator.functions.delegateCreatedIds(delegate_key(deployment.consumer.address, 1))
        subscription_id = created.call()
        assert subscription_id == 1
        # Interval 1 ran on the REST data (source off-chain), delivered to the new subscription.
        assert (first["subscription_id"], first["interval"]) == (1, 1)
        assert container_output(first)["echo"] == {"prompt": "delegated"}
        assert container_output(first)["source"] == 1
        # Interval 2: an ordinary subscription now, fed by getContainerInputs (source on-chain).
        increase_time(w3, 60)
        second = wait_deliveries(deployment, 2)[1]
        increase_time(w3, 60)
        time.sleep(SETTLE)
        assert len(deliveries(deployment)) == 2
    assert (second["subscription_id"], second["interval"]) == (1, 2)
    assert container_output(second)["echo"] == encode(["uint32", "uint32"], [1, 2]).hex()
    assert container_output(second)["source"] == 0


def test_delegated_subscription_signed_with_high_s_is_served_and_delivered_as_given(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    """A signer that does not normalise s (a KMS key, some wallets): the Coordinator accepts the
    high-s twin, so the node must too, and it sends the signature exactly as it was given."""
    deployment, w3 = active_deployment, active_deployment.w3
    body = signed_body(w3, deployment)
    signature = body["signature"]
    signature["v"], signature["s"] = 55 - signature["v"], SECP256K1_N - signature["s"]
    assert signature["s"] > SECP256K1_N // 2
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)) as node:
        with client(base_url=node.base_url) as http:
            response = http.post("/api/jobs", json=body)
        assert (response.status_code, response.json()) == (200, {})
        [delivery] = wait_deliveries(deployment, 1)
    assert container_output(delivery)["echo"] == {"prompt": "delegated"}
    receipt_block = w3.eth.get_block("latest", full_transactions=True)
    sent = [tx for tx in receipt_block["transactions"] if tx["to"] == deployment.coordinator.address]
    function, args = deployment.coordinator.decode_function_input(sent[-1]["input"])
    assert function.fn_name == "deliverComputeDelegatee"
    assert (args["v"], int.from_bytes(args["r"], "big"), int.from_bytes(args["s"], "big")) == (
        signature["v"],
        signature["r"],
        signature["s"],
    )


def test_bad_delegated_subscriptions_are_rejected_with_400(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment, w3 = active_deployment, active_deployment.w3
    expired = signed_body(w3, deployment, expiry_in=0)
    forged = signed_body(w3, deployment, nonce=2)
    forged["signature"]["r"] = 12345  # not a point of any signature: recovery fails
    mismatch = signed_body(w3, deployment, nonce=3, signer_key=STRANGER_KEY)
    tampered = signed_body(w3, deployment, nonce=4)
    tampered["subscription"]["frequency"] = 5  # signed for 1: recovers to some other address
    unknown = signed_body(w3, deployment, nonce=5, container_id="nope")
    with running_node(tmp_path, chain_config(anvil_url, deployment, echo_service)) as node:
        with client(base_url=node.base_url) as http:
            answers = {
                name: http.post("/api/jobs", json=body)
                for name, body in {
                    "expired": expired,
                    "forged": forged,
                    "mismatch": mismatch,
                    "tampered": tampered,
                    "unknown": unknown,
                }.items()
            }
            batch = http.post("/api/jobs/batch", json=[mismatch, signed_body(w3, deployment, nonce=6), unknown])
        wait_deliveries(deployment, 1)
        time.sleep(SETTLE)
        received = deliveries(deployment)
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 400)
    assert answers["expired"].json()["error"] == "Signature expired"
    assert answers["forged"].json()["error"] == "Invalid signature"
    assert answers["mismatch"].json()["error"] == "Subscription signer mismatch"
    assert answers["mismatch"].json()["params"]["signer"] == address_of(STRANGER_KEY)
    assert answers["mismatch"].json()["params"]["expected"] == address_of(SIGNER_KEY)
    assert answers["tampered"].json()["error"] == "Subscription signer mismatch"
    assert answers["unknown"].json() == {"error": "Container not supported", "params": {"container": "nope"}}
    # Batch: each entry judged on its own; only the good one was created and delivered.
    entries = batch.json()
    assert batch.status_code == 200
    assert entries[0]["error"] == "Subscription signer mismatch"
    assert entries[1] == {}
    assert entries[2]["error"] == "Container not supported"
    assert [(d["subscription_id"], d["interval"]) for d in received] == [(1, 1)]


# -- identity and resilience -----------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*node_command(), *args], capture_output=True, text=True, timeout=60, env=subprocess_env(), check=False
    )


def test_register_then_activate_after_the_cooldown(
    tmp_path: Path, anvil_url: str, deployment: Deployment, echo_service: ServiceProcess
) -> None:
    key = NODE_KEYS[2]
    config = write_config(tmp_path, chain_config(anvil_url, deployment, echo_service, key))
    registered = run_cli("register", "--config", str(config))
    assert registered.returncode == 0, registered.stderr
    assert f"registered node {address_of(key)}" in registered.stdout
    assert deployment.coordinator.functions.nodeInfo(address_of(key)).call()[0] == 1
    early = run_cli("activate", "--config", str(config))
    assert early.returncode == 1
    assert "cooldown still running" in early.stderr
    again = run_cli("register", "--config", str(config))
    assert (again.returncode, "already registered" in again.stderr) == (1, True)
    increase_time(deployment.w3, 3600)
    activated = run_cli("activate", "--config", str(config))
    assert activated.returncode == 0, activated.stderr
    assert activated.stdout.strip() == f"activated node {address_of(key)}"
    assert deployment.coordinator.functions.nodeInfo(address_of(key)).call()[0] == 2


def test_unreachable_rpc_never_stops_the_node(tmp_path: Path, echo_service: ServiceProcess) -> None:
    dead_rpc = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = {
        "manage_containers": False,
        "containers": [{"id": "echo", "url": echo_service.url}],
        "chain": {
            "enabled": True,
            "rpc_url": dead_rpc,
            "trail_head_blocks": 0,
            "coordinator_address": "0x" + "12" * 20,
            "wallet": {"private_key": NODE_KEYS[0]},
        },
    }
    with running_node(tmp_path, config) as node, client(base_url=node.base_url) as http:
        job_id = submit(http, ["echo"], {"still": "serving"})
        assert wait_done(http, job_id)["status"] == "success"
        info = http.get("/info").json()
        assert info["chain"] == {"enabled": True, "address": address_of(NODE_KEYS[0])}
        response = http.post("/api/jobs", json=unchecked_delegated_body())
        assert response.status_code == 503
        assert response.json()["error"].startswith("Chain unavailable")
        time.sleep(1.0)
        assert http.get("/health").json() == {"status": "healthy"}
    assert "chain poll failed" in node.output() or "retrying" in node.output()


def test_failing_container_is_given_up_after_three_attempts(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment
) -> None:
    deployment = active_deployment
    services = start_services({"bad": "fail500"})
    bad = services["bad"]
    try:
        config = chain_config(anvil_url, deployment, bad)
        with running_node(tmp_path, config) as node, client(base_url=node.base_url) as http:
            request_callback(deployment, b"doomed")
            eventually(lambda: len(bad.calls()) >= 3, what="three attempts")
            time.sleep(SETTLE)
            assert len(bad.calls()) == 3  # bounded: no tight retry loop
            assert deliveries(deployment) == []
            assert http.get("/info").json()["pending"]["onchain"] == 0
        assert "giving up on subscription 1 interval 1 after 3 failures" in node.output()
    finally:
        bad.kill()


# -- the configured address is probed at start -------------------------------------------------

V1_TAIL = (
    "; this node serves the seed-era (SDK v0.1) Coordinator only: set chain.coordinator_address to a v0.1 Coordinator"
)


@pytest.fixture
def v1(w3: Web3, chain_contracts: dict[str, CompiledContract]) -> V1Deployment:
    return deploy_v1_registry(w3, chain_contracts)


def addressed(config: dict[str, Any], key: str, address: str) -> dict[str, Any]:
    """``config`` with its chain section naming ``address`` under ``key`` only."""
    chain = {name: value for name, value in config["chain"].items() if name != "coordinator_address"}
    return {**config, "chain": {**chain, key: address}}


def stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("key", "target"),
    [
        ("registry_address", "registry"),
        ("coordinator_address", "registry"),
        ("coordinator_address", "v1 coordinator"),
    ],
)
def test_a_v1_address_stops_the_node_with_one_line(
    tmp_path: Path,
    anvil_url: str,
    deployment: Deployment,
    v1: V1Deployment,
    echo_service: ServiceProcess,
    key: str,
    target: str,
) -> None:
    address = v1.registry.address if target == "registry" else v1.coordinator.address
    config = write_config(tmp_path, addressed(chain_config(anvil_url, deployment, echo_service), key, address))
    port = str(free_port())
    result = run_cli("--config", str(config), "--host", "127.0.0.1", "--port", port, "--log-level", "WARNING")
    found = (
        f"an Infernet v1 Registry (Coordinator {v1.coordinator.address})"
        if target == "registry"
        else "an Infernet v1 Coordinator"
    )
    assert (result.returncode, result.stdout) == (2, "")
    assert stderr_lines(result) == [f"infernet-node: config: chain.{key} {address} is {found}{V1_TAIL}"]


def test_registry_address_naming_a_v01_coordinator_still_serves(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    deployment = active_deployment
    config = addressed(
        chain_config(anvil_url, deployment, echo_service), "registry_address", deployment.coordinator.address
    )
    with running_node(tmp_path, config) as node:
        request_callback(deployment, b"alias")
        (delivery,) = wait_deliveries(deployment, 1)
    assert (delivery["subscription_id"], delivery["node"]) == (1, address_of(NODE_KEYS[0]))
    assert container_output(delivery)["echo"] == b"alias".hex()
    assert "is an Infernet v1" not in node.output()


@pytest.mark.parametrize("command", ["register", "activate"])
def test_register_against_a_v1_registry_exits_2_with_one_line(
    tmp_path: Path, anvil_url: str, deployment: Deployment, v1: V1Deployment, echo_service: ServiceProcess, command: str
) -> None:
    key = NODE_KEYS[2]
    nonce = deployment.w3.eth.get_transaction_count(address_of(key))
    config = chain_config(anvil_url, deployment, echo_service, key)
    path = write_config(tmp_path, addressed(config, "registry_address", v1.registry.address))
    result = run_cli(command, "--config", str(path), "--log-level", "WARNING")
    assert (result.returncode, result.stdout) == (2, "")
    assert stderr_lines(result) == [
        f"infernet-node: config: chain.registry_address {v1.registry.address} is an Infernet v1 Registry"
        f" (Coordinator {v1.coordinator.address}){V1_TAIL}"
    ]
    assert deployment.w3.eth.get_transaction_count(address_of(key)) == nonce  # nothing was sent
