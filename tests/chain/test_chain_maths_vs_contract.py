"""The node's pure maths against the contract's own code, through eth_call on anvil:
``subscription_interval`` vs ``intervalAt``, ``delegate_digest`` vs ``delegateeDigest`` (and
eth-account's encoder), ``recover_signer`` vs what ``createSubscriptionDelegatee`` accepts, and
the kit's REST body of a delegated subscription vs the node's request type.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from hypothesis import example, given, settings
from hypothesis import strategies as st
from support.chain_kit import (
    DEPLOYER_KEY,
    SIGNER_KEY,
    CompiledContract,
    Deployment,
    address_of,
    delegated_request_body,
    delegated_sub,
    deploy_contracts,
    revert_data,
    selector,
    send,
    sign_delegated,
    sub_tuple,
    typed_data_digest,
)
from web3 import Web3

from infernet_core.eip712 import delegate_digest, recover_signer
from infernet_core.models import DelegatedSubscriptionRequest
from infernet_core.subscriptions import Subscription, subscription_interval

pytestmark = pytest.mark.chain

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
UINT32_MAX = 2**32 - 1
PANIC_UNDERFLOW = selector("Panic(uint256)") + abi_encode(["uint256"], [0x11])
FAR_EXPIRY = UINT32_MAX  # createSubscriptionDelegatee checks the signature only before expiry


def uint(bits: int) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=2**bits - 1)


ADDRESSES = st.binary(min_size=20, max_size=20).map(lambda raw: Web3.to_checksum_address(raw))
PRIVATE_KEYS = st.integers(min_value=1, max_value=SECP256K1_N - 1).map(lambda k: "0x" + k.to_bytes(32, "big").hex())
# Anything a REST caller could send: v around 27/28, r and s anywhere (0, high s, beyond n).
RAW_SIGNATURES = st.tuples(
    st.sampled_from([0, 1, 27, 28, 29]),
    st.one_of(st.just(0), uint(256)),
    st.one_of(st.just(0), uint(255), st.integers(SECP256K1_N // 2, 2**256 - 1)),
)


def subscriptions(owner: st.SearchStrategy[str] = ADDRESSES) -> st.SearchStrategy[Subscription]:
    """Subscriptions with every field over its full on-chain range."""
    return st.builds(
        Subscription,
        owner=owner,
        active_at=uint(32),
        period=uint(32),
        frequency=uint(32),
        redundancy=uint(16),
        max_gas_price=uint(48),
        max_gas_limit=uint(32),
        container_id=st.text(max_size=40),
        inputs=st.binary(max_size=80),
    )


def sub_fields(sub: Subscription) -> dict[str, object]:
    """The EIP-712 message's ``sub`` for a Subscription."""
    return {
        "owner": Web3.to_checksum_address(sub.owner),
        "activeAt": sub.active_at,
        "period": sub.period,
        "frequency": sub.frequency,
        "redundancy": sub.redundancy,
        "maxGasPrice": sub.max_gas_price,
        "maxGasLimit": sub.max_gas_limit,
        "containerId": sub.container_id,
        "inputs": sub.inputs,
    }


@pytest.fixture(scope="module")
def contracts_once(w3: Web3, chain_contracts: dict[str, CompiledContract]) -> Deployment:
    """One deployment for the whole module (hypothesis runs many examples per test)."""
    return deploy_contracts(w3, chain_contracts)


@settings(max_examples=40, deadline=None)
@given(active_at=uint(32), period=uint(32), now=st.integers(min_value=0, max_value=2**34))
@example(active_at=0, period=1, now=UINT32_MAX)  # interval 2**32: past any uint32 frequency
@example(active_at=100, period=0, now=99)
@example(active_at=100, period=7, now=99)
@example(active_at=100, period=7, now=107)
def test_subscription_interval_matches_the_contract(
    contracts_once: Deployment, active_at: int, period: int, now: int
) -> None:
    call = contracts_once.coordinator.functions.intervalAt(active_at, period, now)
    try:
        expected = subscription_interval(active_at, period, now)
    except ValueError:
        assert now < active_at
        # The contract has no activation check of its own here (deliveries check it first):
        # a callback is on interval 1 whatever the time, a recurring subscription underflows.
        if period == 0:
            assert call.call() == 1
        else:
            assert revert_data(call) == PANIC_UNDERFLOW
        return
    if expected > UINT32_MAX:
        assert revert_data(call) == selector("SubscriptionCompleted()")
    else:
        assert call.call() == expected


@settings(max_examples=40, deadline=None)
@given(sub=subscriptions(), nonce=uint(32), expiry=uint(32))
def test_delegate_digest_matches_the_contract(
    contracts_once: Deployment, sub: Subscription, nonce: int, expiry: int
) -> None:
    coordinator = contracts_once.coordinator
    fields = sub_fields(sub)
    on_chain = coordinator.functions.delegateeDigest(nonce, expiry, sub_tuple(fields)).call()
    digest = delegate_digest(sub, nonce, expiry, 31337, coordinator.address)
    assert digest == on_chain
    assert digest == typed_data_digest(31337, coordinator.address, fields, nonce, expiry)


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    nonce=uint(32),
    signature=st.one_of(PRIVATE_KEYS, RAW_SIGNATURES),
)
def test_recover_signer_matches_what_the_contract_accepts(
    contracts_once: Deployment, data: st.DataObject, nonce: int, signature: str | tuple[int, int, int]
) -> None:
    """A signature recover_signer rejects is one the contract rejects (InvalidSignature); one it
    accepts recovers, on-chain too, to the same address (made the Consumer's signer first)."""
    d = contracts_once
    sub = data.draw(subscriptions(owner=st.just(d.consumer.address)))
    fields = sub_fields(sub)
    if isinstance(signature, str):  # a private key: a real signature
        v, r, s = sign_delegated(31337, d.coordinator.address, fields, nonce, FAR_EXPIRY, signature)
    else:
        v, r, s = signature
    digest = delegate_digest(sub, nonce, FAR_EXPIRY, 31337, d.coordinator.address)
    recovered = recover_signer(digest, v, r, s)
    if isinstance(signature, str):
        assert recovered == Account.from_key(signature).address
    create = d.coordinator.functions.createSubscriptionDelegatee(
        nonce, FAR_EXPIRY, sub_tuple(fields), v, r.to_bytes(32, "big"), s.to_bytes(32, "big")
    )
    if recovered is None:
        assert revert_data(create) == selector("InvalidSignature()")
        return
    send(d.w3, d.consumer.functions.updateSigner(recovered), DEPLOYER_KEY)
    next_id = d.coordinator.functions.id().call()
    assert create.call() == [next_id, False]


@settings(max_examples=25, deadline=None)
@given(data=st.data(), nonce=uint(32), key=PRIVATE_KEYS)
def test_high_s_twin_recovers_the_same_signer_in_the_node_and_the_contract(
    contracts_once: Deployment, data: st.DataObject, nonce: int, key: str
) -> None:
    """For any valid signature, its high-s twin (v flipped, s' = n - s) is accepted by the
    contract and recovers, in the node, the signer the contract then checks against."""
    d = contracts_once
    sub = data.draw(subscriptions(owner=st.just(d.consumer.address)))
    fields = sub_fields(sub)
    v, r, s = sign_delegated(31337, d.coordinator.address, fields, nonce, FAR_EXPIRY, key)
    twin_v, twin_s = 55 - v, SECP256K1_N - s
    digest = delegate_digest(sub, nonce, FAR_EXPIRY, 31337, d.coordinator.address)
    signer = Account.from_key(key).address
    assert recover_signer(digest, twin_v, r, twin_s) == signer
    send(d.w3, d.consumer.functions.updateSigner(signer), DEPLOYER_KEY)
    create = d.coordinator.functions.createSubscriptionDelegatee(
        nonce, FAR_EXPIRY, sub_tuple(fields), twin_v, r.to_bytes(32, "big"), twin_s.to_bytes(32, "big")
    )
    assert create.call() == [d.coordinator.functions.id().call(), False]
    # A different signer set on the consumer: the twin is refused as a mismatch, not as invalid.
    send(
        d.w3,
        d.consumer.functions.updateSigner(
            address_of(SIGNER_KEY) if signer != address_of(SIGNER_KEY) else d.consumer.address
        ),
        DEPLOYER_KEY,
    )
    assert revert_data(create) == selector("SignerMismatch()")


def test_delegated_request_body_is_what_the_node_verifies(contracts_once: Deployment) -> None:
    """The kit's REST body decodes as the node's request, and the Subscription rebuilt from it
    (``inputs`` as the UTF-8 bytes of the string) has the digest the contract verifies."""
    d = contracts_once
    fields = delegated_sub(d.consumer.address, active_at=1234, period=60, frequency=3, inputs="héllo ✓".encode())
    vrs = sign_delegated(31337, d.coordinator.address, fields, 5, FAR_EXPIRY, SIGNER_KEY)
    body = delegated_request_body(fields, 5, FAR_EXPIRY, vrs, {"x": 1})
    request = msgspec.json.decode(json.dumps(body), type=DelegatedSubscriptionRequest)
    rest = request.subscription
    sub = Subscription.from_request(rest)
    sig = request.signature
    assert (sig.nonce, sig.expiry, (sig.v, sig.r, sig.s), request.data) == (5, FAR_EXPIRY, vrs, {"x": 1})
    digest = delegate_digest(sub, sig.nonce, sig.expiry, 31337, d.coordinator.address)
    assert digest == d.coordinator.functions.delegateeDigest(5, FAR_EXPIRY, sub_tuple(fields)).call()
    assert recover_signer(digest, sig.v, sig.r, sig.s) == address_of(SIGNER_KEY)
