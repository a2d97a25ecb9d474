"""The delegated-subscription digest and signer recovery, pure (the cross-checks against
eth-account's generic EIP-712 encoder and the contract itself are in tests/chain)."""

from __future__ import annotations

from eth_account import Account
from hypothesis import given
from hypothesis import strategies as st

from infernet_core.eip712 import DELEGATE_TYPE, delegate_digest, recover_signer
from infernet_core.subscriptions import Subscription

KEY = "0x" + "42" * 32
ACCOUNT = Account.from_key(KEY)
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
PRIVATE_KEYS = st.integers(min_value=1, max_value=N - 1).map(lambda k: k.to_bytes(32, "big"))


def test_type_string_is_the_spec_s() -> None:
    assert DELEGATE_TYPE == (
        "DelegateSubscription(uint32 nonce,uint32 expiry,Subscription sub)"
        "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,uint16 redundancy,"
        "uint48 maxGasPrice,uint32 maxGasLimit,string containerId,bytes inputs)"
    )


@given(key=PRIVATE_KEYS, digest=st.binary(min_size=32, max_size=32))
def test_recovery_round_trip(key: bytes, digest: bytes) -> None:
    account = Account.from_key(key)
    signed = account.unsafe_sign_hash(digest)
    assert recover_signer(digest, signed.v, signed.r, signed.s) == account.address


@given(key=PRIVATE_KEYS, digest=st.binary(min_size=32, max_size=32))
def test_high_s_twin_recovers_the_same_signer(key: bytes, digest: bytes) -> None:
    """The contract (solady ECDSA over ecrecover) accepts either half of s; so does the node."""
    account = Account.from_key(key)
    signed = account.unsafe_sign_hash(digest)
    assert signed.s <= N // 2  # eth-account normalises to low s
    assert recover_signer(digest, 55 - signed.v, signed.r, N - signed.s) == account.address


def test_each_field_changes_the_digest() -> None:
    base = Subscription(
        owner="0x" + "11" * 20,
        active_at=1,
        period=2,
        frequency=3,
        redundancy=4,
        max_gas_price=5,
        max_gas_limit=6,
        container_id="c",
        inputs=b"i",
    )
    digest = delegate_digest(base, 1, 2, 31337, "0x" + "22" * 20)
    variants = [
        delegate_digest(base, 9, 2, 31337, "0x" + "22" * 20),
        delegate_digest(base, 1, 9, 31337, "0x" + "22" * 20),
        delegate_digest(base, 1, 2, 1, "0x" + "22" * 20),
        delegate_digest(base, 1, 2, 31337, "0x" + "33" * 20),
    ]
    for field, value in [
        ("owner", "0x" + "99" * 20),
        ("active_at", 9),
        ("period", 9),
        ("frequency", 9),
        ("redundancy", 9),
        ("max_gas_price", 9),
        ("max_gas_limit", 9),
        ("container_id", "d"),
        ("inputs", b"j"),
    ]:
        changed = Subscription(**{**{f: getattr(base, f) for f in base.__struct_fields__}, field: value})
        variants.append(delegate_digest(changed, 1, 2, 31337, "0x" + "22" * 20))
    assert digest not in variants
    assert len(set(variants)) == len(variants)


def test_invalid_signatures_recover_nothing() -> None:
    digest = b"\x01" * 32
    signed = ACCOUNT.unsafe_sign_hash(digest)
    assert recover_signer(digest, signed.v, signed.r, signed.s) == ACCOUNT.address
    assert recover_signer(digest, 29, signed.r, signed.s) is None  # v must be 27 or 28
    assert recover_signer(digest, 0, signed.r, signed.s) is None
    assert recover_signer(digest, signed.v, 0, signed.s) is None
    assert recover_signer(digest, signed.v, signed.r, 0) is None
    assert recover_signer(digest, signed.v, N, signed.s) is None
    assert recover_signer(digest, signed.v, signed.r, N) is None
    assert recover_signer(digest, signed.v - 27, signed.r, signed.s) is None  # v 0/1 is not taken either


def test_wrong_digest_recovers_someone_else() -> None:
    signed = ACCOUNT.unsafe_sign_hash(b"\x01" * 32)
    assert recover_signer(b"\x02" * 32, signed.v, signed.r, signed.s) not in (None, ACCOUNT.address)
