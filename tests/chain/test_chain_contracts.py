"""The test contracts on a real anvil: node manager, subscriptions, the delivery checks of spec 8.5
in order, delegated (EIP-712) subscriptions and the consumer's records.

Reverts are read with ``eth_call`` at the latest block (whose timestamp anvil uses for the call,
so boundaries are exact) and compared byte for byte with the expected custom error.
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from support.chain_kit import (
    ANVIL_KEYS,
    DEFAULT_MAX_GAS_LIMIT,
    DEFAULT_MAX_GAS_PRICE,
    DEPLOYER_KEY,
    NODE_KEYS,
    SIGNER_KEY,
    STRANGER_KEY,
    CompiledContract,
    Deployment,
    address_of,
    block_timestamp,
    delegate_key,
    delegated_sub,
    increase_time,
    interval_key,
    mine,
    responded_key,
    revert_data,
    selector,
    send,
    set_next_block_timestamp,
    sign_delegated,
    sub_tuple,
    typed_data_digest,
)
from web3 import Web3
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD
from web3.types import TxReceipt

pytestmark = pytest.mark.chain

# Spec 8.5's table (and 8.4's InvalidSignature), as given in the SDK's comments.
SPEC_SELECTORS = {
    "GasPriceExceeded()": "682bad5a",
    "GasLimitExceeded()": "be9179a6",
    "IntervalMismatch()": "4db310c3",
    "IntervalCompleted()": "2f4ca85b",
    "NodeRespondedAlready()": "88a21e4f",
    "SubscriptionNotFound()": "1a00354f",
    "NotSubscriptionOwner()": "a7fba711",
    "SubscriptionCompleted()": "ae6704a7",
    "SubscriptionNotActive()": "efb74efe",
    "SignerMismatch()": "10c74b03",
    "SignatureExpired()": "0819bdcd",
    "NodeNotActive()": "8741cbb8",
    "NodeNotRegisterable(address,uint8)": "5acfd518",
    "CooldownActive(uint32)": "c84b5bdd",
    "NodeNotActivateable(uint8)": "33daa7f9",
    "InvalidSignature()": "8baa579f",
}
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
NODE_A, NODE_B, NODE_C = (address_of(key) for key in NODE_KEYS)
KEY_A, KEY_B, KEY_C = NODE_KEYS
STRANGER = address_of(STRANGER_KEY)
SIGNER = address_of(SIGNER_KEY)
GWEI = 10**9
TOO_EXPENSIVE = 2 * DEFAULT_MAX_GAS_PRICE  # a gas price above any subscription's default maxGasPrice


def error(signature: str, *args: Any) -> bytes:
    """The revert data of a custom error: its selector, then its ABI-encoded arguments."""
    types = [t for t in signature[signature.index("(") + 1 : -1].split(",") if t]
    return selector(signature) + (abi_encode(types, list(args)) if types else b"")


def abi_error_signatures(compiled: CompiledContract) -> set[str]:
    """``Name(type,...)`` of every custom error in an ABI."""
    return {f"{e['name']}({','.join(i['type'] for i in e['inputs'])})" for e in compiled.abi if e["type"] == "error"}


def created_ids(d: Deployment, receipt: TxReceipt) -> list[int]:
    """Ids of the SubscriptionCreated events of a receipt."""
    return [e["args"]["id"] for e in d.coordinator.events.SubscriptionCreated().process_receipt(receipt, DISCARD)]


def fulfilled(d: Deployment, receipt: TxReceipt) -> list[tuple[int, str]]:
    """(id, node) of the SubscriptionFulfilled events of a receipt."""
    events = d.coordinator.events.SubscriptionFulfilled().process_receipt(receipt, DISCARD)
    return [(e["args"]["id"], e["args"]["node"]) for e in events]


def receipt_time(w3: Web3, receipt: TxReceipt) -> int:
    """The timestamp of the block that mined ``receipt``."""
    return int(w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def at_time(w3: Web3, timestamp: int) -> None:
    """Mine a block at exactly ``timestamp`` (eth_call then runs at that time)."""
    set_next_block_timestamp(w3, timestamp)
    mine(w3)


def request_callback(
    d: Deployment,
    *,
    redundancy: int = 1,
    max_gas_price: int = DEFAULT_MAX_GAS_PRICE,
    max_gas_limit: int = DEFAULT_MAX_GAS_LIMIT,
    inputs: bytes = b"in",
    container_id: str = "echo",
) -> tuple[int, TxReceipt]:
    """A callback subscription (frequency 1, period 0) owned by the Consumer: its id and receipt."""
    fn = d.consumer.functions.requestCallback(container_id, inputs, max_gas_price, max_gas_limit, redundancy)
    receipt = send(d.w3, fn, DEPLOYER_KEY)
    (subscription_id,) = created_ids(d, receipt)
    return subscription_id, receipt


def create_recurring(
    d: Deployment, *, frequency: int, period: int, redundancy: int = 1, max_gas_price: int = DEFAULT_MAX_GAS_PRICE
) -> tuple[int, int]:
    """A recurring subscription owned by the Consumer: its id and activeAt."""
    fn = d.consumer.functions.createRecurring(
        "echo", max_gas_price, DEFAULT_MAX_GAS_LIMIT, frequency, period, redundancy
    )
    (subscription_id,) = created_ids(d, send(d.w3, fn, DEPLOYER_KEY))
    return subscription_id, d.coordinator.functions.subscriptions(subscription_id).call()[1]


def deliver_fn(d: Deployment, subscription_id: int, interval: int, payload: bytes = b"") -> Any:
    """``deliverCompute(id, interval, "in"+payload, "out"+payload, "proof"+payload)``."""
    return d.coordinator.functions.deliverCompute(
        subscription_id, interval, b"in" + payload, b"out" + payload, b"proof" + payload
    )


def delivery_revert(d: Deployment, key: str, subscription_id: int, interval: int, **tx: Any) -> bytes:
    """The revert data of a ``deliverCompute`` eth_call from ``key``'s address."""
    return revert_data(deliver_fn(d, subscription_id, interval), {"from": address_of(key), **tx})


# --- contracts and accounts -------------------------------------------------------------------


@pytest.mark.parametrize(("signature", "expected"), sorted(SPEC_SELECTORS.items()))
def test_error_selectors_match_the_spec_table(
    chain_contracts: dict[str, CompiledContract], signature: str, expected: str
) -> None:
    assert selector(signature).hex() == expected
    assert signature in abi_error_signatures(chain_contracts["EIP712Coordinator"])


def test_consumer_errors_and_anvil_accounts(chain_contracts: dict[str, CompiledContract], w3: Web3) -> None:
    assert "NotCoordinator()" in abi_error_signatures(chain_contracts["Consumer"])
    assert w3.eth.chain_id == 31337
    assert w3.eth.accounts[: len(ANVIL_KEYS)] == [address_of(key) for key in ANVIL_KEYS]


def test_constants_and_eip712_domain(deployment: Deployment) -> None:
    co = deployment.coordinator.functions
    assert co.DELIVERY_OVERHEAD_WEI().call() == 56600
    assert co.DELEGATEE_OVERHEAD_CACHED_WEI().call() == 600
    assert co.DELEGATEE_OVERHEAD_CREATE_WEI().call() == 91200
    assert co.cooldown().call() == 3600
    assert co.id().call() == 1
    assert (co.EIP712_NAME().call(), co.EIP712_VERSION().call()) == ("InfernetCoordinator", "1")
    assert tuple(co.eip712Domain().call()) == (
        b"\x0f",
        "InfernetCoordinator",
        "1",
        31337,
        deployment.coordinator.address,
        bytes(32),
        [],
    )


# --- node manager -----------------------------------------------------------------------------


def test_register_cooldown_activate(deployment: Deployment) -> None:
    w3, co = deployment.w3, deployment.coordinator
    receipt = send(w3, co.functions.registerNode(NODE_A), STRANGER_KEY)  # anyone may register a node
    start = receipt_time(w3, receipt)
    assert tuple(co.functions.nodeInfo(NODE_A).call()) == (1, start)
    (event,) = co.events.NodeRegistered().process_receipt(receipt)
    assert dict(event["args"]) == {"node": NODE_A, "registerer": STRANGER, "cooldownStart": start}
    assert revert_data(co.functions.registerNode(NODE_A), {"from": NODE_A}) == error(
        "NodeNotRegisterable(address,uint8)", NODE_A, 1
    )

    at_time(w3, start + 3599)
    assert revert_data(co.functions.activateNode(), {"from": NODE_A}) == error("CooldownActive(uint32)", start)
    at_time(w3, start + 3600)
    co.functions.activateNode().call({"from": NODE_A})  # exactly at the end of the cooldown: allowed
    receipt = send(w3, co.functions.activateNode(), KEY_A)
    assert tuple(co.functions.nodeInfo(NODE_A).call()) == (2, 0)
    (event,) = co.events.NodeActivated().process_receipt(receipt)
    assert event["args"]["node"] == NODE_A

    assert revert_data(co.functions.activateNode(), {"from": NODE_A}) == error("NodeNotActivateable(uint8)", 2)
    assert revert_data(co.functions.registerNode(NODE_A), {"from": STRANGER}) == error(
        "NodeNotRegisterable(address,uint8)", NODE_A, 2
    )


def test_activate_unregistered_node(deployment: Deployment) -> None:
    co = deployment.coordinator
    assert tuple(co.functions.nodeInfo(STRANGER).call()) == (0, 0)
    assert revert_data(co.functions.activateNode(), {"from": STRANGER}) == error("NodeNotActivateable(uint8)", 0)


def test_deactivate_node(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, _ = request_callback(d)
    receipt = send(d.w3, d.coordinator.functions.deactivateNode(), KEY_A)
    (event,) = d.coordinator.events.NodeDeactivated().process_receipt(receipt)
    assert event["args"]["node"] == NODE_A
    assert tuple(d.coordinator.functions.nodeInfo(NODE_A).call()) == (0, 0)
    assert delivery_revert(d, KEY_A, subscription_id, 1) == error("NodeNotActive()")
    send(d.w3, d.coordinator.functions.registerNode(NODE_A), KEY_A)
    assert d.coordinator.functions.nodeInfo(NODE_A).call()[0] == 1


# --- subscriptions ----------------------------------------------------------------------------


def test_create_callback_subscription(deployment: Deployment) -> None:
    d = deployment
    subscription_id, receipt = request_callback(
        d, redundancy=2, max_gas_price=5 * GWEI, max_gas_limit=400_000, inputs=b"hello", container_id="a,b"
    )
    assert subscription_id == 1
    assert d.coordinator.functions.id().call() == 2
    assert tuple(d.coordinator.functions.subscriptions(1).call()) == (
        d.consumer.address,
        receipt_time(d.w3, receipt),
        0,
        1,
        2,
        5 * GWEI,
        400_000,
        "a,b",
        b"hello",
    )


def test_create_recurring_subscription_is_active_one_period_later(deployment: Deployment) -> None:
    d = deployment
    request_callback(d)
    fn = d.consumer.functions.createRecurring("c", 7 * GWEI, 300_000, 3, 60, 4)
    receipt = send(d.w3, fn, STRANGER_KEY)
    assert created_ids(d, receipt) == [2]
    assert tuple(d.coordinator.functions.subscriptions(2).call()) == (
        d.consumer.address,
        receipt_time(d.w3, receipt) + 60,
        60,
        3,
        4,
        7 * GWEI,
        300_000,
        "c",
        b"",
    )


def test_create_subscription_validates_nothing(deployment: Deployment) -> None:
    co = deployment.coordinator
    receipt = send(deployment.w3, co.functions.createSubscription("", b"", 0, 0, 0, 0, 0), STRANGER_KEY)
    created = receipt_time(deployment.w3, receipt)
    assert tuple(co.functions.subscriptions(1).call()) == (STRANGER, created, 0, 0, 0, 0, 0, "", b"")


def test_cancel_subscription(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, _ = request_callback(d)
    cancel = d.coordinator.functions.cancelSubscription(subscription_id)
    assert revert_data(cancel, {"from": STRANGER}) == error("NotSubscriptionOwner()")
    receipt = send(d.w3, d.consumer.functions.cancel(subscription_id), DEPLOYER_KEY)
    (event,) = d.coordinator.events.SubscriptionCancelled().process_receipt(receipt, DISCARD)
    assert event["args"]["id"] == subscription_id
    assert tuple(d.coordinator.functions.subscriptions(subscription_id).call()) == (
        ZERO_ADDRESS,
        0,
        0,
        0,
        0,
        0,
        0,
        "",
        b"",
    )
    assert revert_data(cancel, {"from": d.consumer.address}) == error("NotSubscriptionOwner()")
    assert delivery_revert(d, KEY_A, subscription_id, 1) == error("SubscriptionNotFound()")


def test_get_subscription_interval(deployment: Deployment) -> None:
    co, now = deployment.coordinator, block_timestamp(deployment.w3)
    interval = co.functions.getSubscriptionInterval
    assert interval(now + 10**6, 0).call() == 1  # a callback is always on interval 1
    assert interval(now, 100).call() == 1
    assert interval(now - 99, 100).call() == 1
    assert interval(now - 100, 100).call() == 2
    assert interval(now - 250, 100).call() == 3
    panic_underflow = selector("Panic(uint256)") + abi_encode(["uint256"], [0x11])
    assert revert_data(interval(now + 1, 100)) == panic_underflow


# --- delivery checks (spec 8.5), in order -------------------------------------------------------


def test_delivery_records_and_emits_fulfilled(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, _ = request_callback(d, redundancy=3)
    receipt = send(d.w3, deliver_fn(d, subscription_id, 1, b"!"), KEY_A)
    assert fulfilled(d, receipt) == [(subscription_id, NODE_A)]
    (log,) = [entry for entry in receipt["logs"] if entry["address"] == d.coordinator.address]
    assert log["topics"] == [
        keccak(text="SubscriptionFulfilled(uint32,address)"),
        subscription_id.to_bytes(32, "big"),
        bytes.fromhex(NODE_A[2:]).rjust(32, b"\0"),
    ]
    assert d.consumer.functions.deliveryCount().call() == 1
    record = (subscription_id, 1, 1, NODE_A, b"in!", b"out!", b"proof!")
    assert tuple(d.consumer.functions.getDelivery(0).call()) == record
    assert tuple(d.consumer.functions.deliveries(0).call()) == record
    co = d.coordinator.functions
    assert co.redundancyCount(interval_key(subscription_id, 1)).call() == 1
    assert co.nodeResponded(responded_key(subscription_id, 1, NODE_A)).call() is True
    assert co.nodeResponded(responded_key(subscription_id, 1, NODE_B)).call() is False


def test_node_not_active_comes_first(active_deployment: Deployment) -> None:
    revert = delivery_revert(active_deployment, STRANGER_KEY, 99, 5, gasPrice=TOO_EXPENSIVE)
    assert revert == error("NodeNotActive()")


def test_check_1_subscription_not_found(active_deployment: Deployment) -> None:
    revert = delivery_revert(active_deployment, KEY_A, 99, 5, gasPrice=TOO_EXPENSIVE)
    assert revert == error("SubscriptionNotFound()")


def test_check_2_subscription_not_active_until_active_at(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, active_at = create_recurring(d, frequency=2, period=1000, max_gas_price=5 * GWEI)
    at_time(d.w3, active_at - 1)
    wrong_everything = {"gasPrice": 6 * GWEI}
    assert delivery_revert(d, KEY_A, subscription_id, 7, **wrong_everything) == error("SubscriptionNotActive()")
    at_time(d.w3, active_at)
    deliver_fn(d, subscription_id, 1).call({"from": NODE_A})  # active from activeAt on, inclusive


def test_check_3_interval_mismatch(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, _ = request_callback(d, max_gas_price=5 * GWEI)
    for interval in (0, 2):
        assert delivery_revert(d, KEY_A, subscription_id, interval, gasPrice=6 * GWEI) == error("IntervalMismatch()")


def test_check_4_subscription_completed(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, active_at = create_recurring(d, frequency=2, period=100, max_gas_price=5 * GWEI)
    at_time(d.w3, active_at + 199)
    deliver_fn(d, subscription_id, 2).call({"from": NODE_A})  # the last interval
    at_time(d.w3, active_at + 200)
    assert delivery_revert(d, KEY_A, subscription_id, 2) == error("IntervalMismatch()")
    assert delivery_revert(d, KEY_A, subscription_id, 3, gasPrice=6 * GWEI) == error("SubscriptionCompleted()")


def test_check_5_gas_price_exceeded(active_deployment: Deployment) -> None:
    d = active_deployment
    max_price = 5 * GWEI
    subscription_id, _ = request_callback(d, max_gas_price=max_price)
    assert delivery_revert(d, KEY_A, subscription_id, 1, gasPrice=max_price + 1) == error("GasPriceExceeded()")
    with pytest.raises(ContractCustomError) as raised:  # sending: web3's gas estimate reverts first
        send(d.w3, deliver_fn(d, subscription_id, 1), KEY_A, gasPrice=max_price + 1)
    assert raised.value.data == "0x" + error("GasPriceExceeded()").hex()
    send(d.w3, deliver_fn(d, subscription_id, 1), KEY_A, gasPrice=max_price)  # at the limit: accepted
    # The interval is now full, but the gas price is checked first.
    assert delivery_revert(d, KEY_B, subscription_id, 1, gasPrice=max_price + 1) == error("GasPriceExceeded()")
    assert delivery_revert(d, KEY_B, subscription_id, 1, gasPrice=max_price) == error("IntervalCompleted()")


def test_checks_6_and_7_redundancy(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, _ = request_callback(d, redundancy=2)
    send(d.w3, deliver_fn(d, subscription_id, 1, b"a"), KEY_A)
    assert delivery_revert(d, KEY_A, subscription_id, 1) == error("NodeRespondedAlready()")
    send(d.w3, deliver_fn(d, subscription_id, 1, b"b"), KEY_B)
    assert d.coordinator.functions.redundancyCount(interval_key(subscription_id, 1)).call() == 2
    assert delivery_revert(d, KEY_C, subscription_id, 1) == error("IntervalCompleted()")
    # Once the interval is full, IntervalCompleted (6) wins over NodeRespondedAlready (7).
    assert delivery_revert(d, KEY_A, subscription_id, 1) == error("IntervalCompleted()")
    records = [tuple(d.consumer.functions.getDelivery(i).call()) for i in range(2)]
    assert records == [
        (subscription_id, 1, 1, NODE_A, b"ina", b"outa", b"proofa"),
        (subscription_id, 1, 2, NODE_B, b"inb", b"outb", b"proofb"),
    ]


def test_check_9_gas_limit_exceeded_undoes_the_counting(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, _ = request_callback(d, max_gas_limit=250_000)
    send(d.w3, d.consumer.functions.setGasBurn(300_000), DEPLOYER_KEY)
    assert delivery_revert(d, KEY_A, subscription_id, 1) == error("GasLimitExceeded()")
    with pytest.raises(RuntimeError, match="reverted"):  # mined (gas given, so no estimate), reverted
        send(d.w3, deliver_fn(d, subscription_id, 1), KEY_A, gas=1_000_000)
    co = d.coordinator.functions
    assert co.redundancyCount(interval_key(subscription_id, 1)).call() == 0
    assert co.nodeResponded(responded_key(subscription_id, 1, NODE_A)).call() is False
    assert d.consumer.functions.deliveryCount().call() == 0

    send(d.w3, d.consumer.functions.setGasBurn(0), DEPLOYER_KEY)
    receipt = send(d.w3, deliver_fn(d, subscription_id, 1), KEY_A)
    assert fulfilled(d, receipt) == [(subscription_id, NODE_A)]
    assert d.consumer.functions.getDelivery(0).call()[2] == 1


def test_recurring_deliveries_follow_the_intervals(active_deployment: Deployment) -> None:
    d = active_deployment
    subscription_id, active_at = create_recurring(d, frequency=3, period=100)
    at_time(d.w3, active_at)
    send(d.w3, deliver_fn(d, subscription_id, 1), KEY_A)
    at_time(d.w3, active_at + 100)
    assert delivery_revert(d, KEY_A, subscription_id, 1) == error("IntervalMismatch()")
    send(d.w3, deliver_fn(d, subscription_id, 2), KEY_A)  # the same node, a new interval
    at_time(d.w3, active_at + 300)
    assert delivery_revert(d, KEY_A, subscription_id, 4) == error("SubscriptionCompleted()")
    assert [tuple(d.consumer.functions.getDelivery(i).call()[:4]) for i in range(2)] == [
        (subscription_id, 1, 1, NODE_A),
        (subscription_id, 2, 1, NODE_A),
    ]


# --- consumer ---------------------------------------------------------------------------------


def test_consumer_accepts_deliveries_only_from_the_coordinator(deployment: Deployment) -> None:
    fn = deployment.consumer.functions.rawReceiveCompute(1, 1, 1, STRANGER, b"", b"", b"")
    assert revert_data(fn, {"from": STRANGER}) == error("NotCoordinator()")


def test_consumer_container_inputs_and_signer(deployment: Deployment) -> None:
    consumer = deployment.consumer.functions
    assert consumer.getContainerInputs(3, 7, 0, NODE_A).call() == abi_encode(["uint32", "uint32"], [3, 7])
    send(deployment.w3, consumer.setContainerInputs(b"fixed"), DEPLOYER_KEY)
    assert consumer.getContainerInputs(3, 7, 0, NODE_A).call() == b"fixed"
    send(deployment.w3, consumer.setContainerInputs(b""), DEPLOYER_KEY)
    assert consumer.getContainerInputs(3, 7, 0, NODE_A).call() == b""
    assert consumer.signer().call() == SIGNER
    send(deployment.w3, consumer.updateSigner(STRANGER), DEPLOYER_KEY)
    assert consumer.signer().call() == STRANGER


# --- delegated subscriptions (spec 8.4) ---------------------------------------------------------


def signed(
    d: Deployment, *, nonce: int = 1, expiry: int | None = None, key: str = SIGNER_KEY, **fields: Any
) -> tuple[dict[str, Any], int, tuple[int, int, int]]:
    """A Consumer-owned delegated subscription (active now unless ``active_at`` is given), signed:
    ``(sub_fields, expiry, (v, r, s))``; ``expiry`` defaults to an hour from now."""
    now = block_timestamp(d.w3)
    fields.setdefault("active_at", now)
    sub = delegated_sub(d.consumer.address, **fields)
    expiry = now + 3600 if expiry is None else expiry
    return sub, expiry, sign_delegated(d.w3.eth.chain_id, d.coordinator.address, sub, nonce, expiry, key)


def create_delegatee_fn(d: Deployment, nonce: int, expiry: int, sub: dict[str, Any], vrs: tuple[int, int, int]) -> Any:
    """``createSubscriptionDelegatee(nonce, expiry, sub, v, r, s)``."""
    v, r, s = vrs
    return d.coordinator.functions.createSubscriptionDelegatee(
        nonce, expiry, sub_tuple(sub), v, r.to_bytes(32, "big"), s.to_bytes(32, "big")
    )


def deliver_delegatee_fn(
    d: Deployment, nonce: int, expiry: int, sub: dict[str, Any], vrs: tuple[int, int, int], interval: int = 1
) -> Any:
    """``deliverComputeDelegatee(nonce, expiry, sub, v, r, s, interval, "in", "out", "proof")``."""
    v, r, s = vrs
    return d.coordinator.functions.deliverComputeDelegatee(
        nonce,
        expiry,
        sub_tuple(sub),
        v,
        r.to_bytes(32, "big"),
        s.to_bytes(32, "big"),
        interval,
        b"in",
        b"out",
        b"proof",
    )


def test_delegatee_digest_is_the_eip712_digest(deployment: Deployment) -> None:
    d = deployment
    sub, expiry, _ = signed(d, nonce=9, inputs="héllo".encode(), container_id="a,b", period=5, frequency=3)
    expected = typed_data_digest(31337, d.coordinator.address, sub, 9, expiry)
    assert d.coordinator.functions.delegateeDigest(9, expiry, sub_tuple(sub)).call() == expected


def test_create_subscription_delegatee(deployment: Deployment) -> None:
    d = deployment
    future = block_timestamp(d.w3) + 500
    sub, expiry, vrs = signed(
        d, nonce=7, active_at=future, period=30, frequency=2, redundancy=3, inputs=b"x", max_gas_limit=321_000
    )
    fn = create_delegatee_fn(d, 7, expiry, sub, vrs)
    assert fn.call({"from": STRANGER}) == [1, False]  # anyone may send it: not only nodes
    receipt = send(d.w3, fn, STRANGER_KEY)
    assert created_ids(d, receipt) == [1]
    co = d.coordinator.functions
    assert tuple(co.subscriptions(1).call()) == sub_tuple(sub)  # stored as given, activeAt included
    assert co.delegateCreatedIds(delegate_key(d.consumer.address, 7)).call() == 1
    assert co.maxSubscriberNonce(d.consumer.address).call() == 7
    assert co.id().call() == 2


def test_delegatee_replay_returns_the_existing_id_without_checks(deployment: Deployment) -> None:
    d = deployment
    sub, expiry, vrs = signed(d, nonce=7)
    send(d.w3, create_delegatee_fn(d, 7, expiry, sub, vrs), STRANGER_KEY)
    other = dict(sub, containerId="other", inputs=b"changed")
    replay = create_delegatee_fn(d, 7, 0, other, (0, 0, 0))  # expired, no signature, other fields
    assert replay.call({"from": STRANGER}) == [1, True]
    assert created_ids(d, send(d.w3, replay, STRANGER_KEY)) == []
    assert d.coordinator.functions.id().call() == 2

    sub3, expiry3, vrs3 = signed(d, nonce=3)  # a lower nonce: a new subscription; the maximum stays
    assert created_ids(d, send(d.w3, create_delegatee_fn(d, 3, expiry3, sub3, vrs3), STRANGER_KEY)) == [2]
    assert d.coordinator.functions.maxSubscriberNonce(d.consumer.address).call() == 7


def test_delegatee_signature_expired(deployment: Deployment) -> None:
    d = deployment
    now = block_timestamp(d.w3)
    sub, expiry, vrs = signed(d, expiry=now)
    assert revert_data(create_delegatee_fn(d, 1, expiry, sub, vrs)) == error("SignatureExpired()")
    # Expiry is checked before the signature.
    assert revert_data(create_delegatee_fn(d, 1, expiry, sub, (0, 0, 0))) == error("SignatureExpired()")
    sub, expiry, vrs = signed(d, expiry=now + 1)
    assert create_delegatee_fn(d, 1, expiry, sub, vrs).call() == [1, False]


def test_delegatee_signer_mismatch(deployment: Deployment) -> None:
    d = deployment
    sub, expiry, vrs = signed(d, key=STRANGER_KEY)
    fn = create_delegatee_fn(d, 1, expiry, sub, vrs)
    assert revert_data(fn) == error("SignerMismatch()")
    good_sub, good_expiry, good_vrs = signed(d)
    tampered = dict(good_sub, inputs=b"tampered")
    assert revert_data(create_delegatee_fn(d, 1, good_expiry, tampered, good_vrs)) == error("SignerMismatch()")
    send(d.w3, d.consumer.functions.updateSigner(STRANGER), DEPLOYER_KEY)
    assert fn.call() == [1, False]


@pytest.mark.parametrize("mutation", ["v=29", "v=0", "v=1", "r=0", "s=0", "s=n"])
def test_delegatee_invalid_signature(deployment: Deployment, mutation: str) -> None:
    d = deployment
    sub, expiry, (v, r, s) = signed(d)
    bad = {
        "v=29": (29, r, s),
        "v=0": (0, r, s),
        "v=1": (v - 27, r, s),
        "r=0": (v, 0, s),
        "s=0": (v, r, 0),
        "s=n": (v, r, SECP256K1_N),
    }[mutation]
    assert revert_data(create_delegatee_fn(d, 1, expiry, sub, bad)) == error("InvalidSignature()")


def test_delegatee_high_s_twin_is_accepted(deployment: Deployment) -> None:
    """As solady's ECDSA.recover in the SDK: the malleable twin recovers the same signer."""
    d = deployment
    sub, expiry, (v, r, s) = signed(d)
    twin = (55 - v, r, SECP256K1_N - s)
    assert twin[2] > SECP256K1_N // 2
    assert create_delegatee_fn(d, 1, expiry, sub, twin).call() == [1, False]


def test_deliver_compute_delegatee_creates_then_delivers(active_deployment: Deployment) -> None:
    d = active_deployment
    sub, expiry, vrs = signed(d, nonce=4, redundancy=2)
    fn = deliver_delegatee_fn(d, 4, expiry, sub, vrs)
    receipt = send(d.w3, fn, KEY_A)
    assert created_ids(d, receipt) == [1]
    assert fulfilled(d, receipt) == [(1, NODE_A)]
    assert d.coordinator.functions.delegateCreatedIds(delegate_key(d.consumer.address, 4)).call() == 1

    receipt = send(d.w3, fn, KEY_B)  # the cached subscription: no second creation
    assert created_ids(d, receipt) == []
    assert fulfilled(d, receipt) == [(1, NODE_B)]
    assert d.coordinator.functions.id().call() == 2
    records = [tuple(d.consumer.functions.getDelivery(i).call()[:4]) for i in range(2)]
    assert records == [(1, 1, 1, NODE_A), (1, 1, 2, NODE_B)]
    assert revert_data(fn, {"from": NODE_C}) == error("IntervalCompleted()")


def test_deliver_compute_delegatee_checks(active_deployment: Deployment) -> None:
    d = active_deployment
    sub, expiry, vrs = signed(d, nonce=2, active_at=block_timestamp(d.w3) + 100)
    fn = deliver_delegatee_fn(d, 2, expiry, sub, vrs)
    assert revert_data(deliver_delegatee_fn(d, 2, 0, sub, (0, 0, 0)), {"from": STRANGER}) == error("NodeNotActive()")
    assert revert_data(deliver_delegatee_fn(d, 2, 0, sub, vrs), {"from": NODE_A}) == error("SignatureExpired()")
    assert revert_data(fn, {"from": NODE_A}) == error("SubscriptionNotActive()")
    with pytest.raises(RuntimeError, match="reverted"):  # mined and reverted: the creation is undone too
        send(d.w3, fn, KEY_A, gas=1_000_000)
    assert d.coordinator.functions.delegateCreatedIds(delegate_key(d.consumer.address, 2)).call() == 0
    assert d.coordinator.functions.id().call() == 1
    increase_time(d.w3, 100)
    assert fulfilled(d, send(d.w3, fn, KEY_A)) == [(1, NODE_A)]
