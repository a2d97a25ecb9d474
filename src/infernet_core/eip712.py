"""EIP-712 for delegated subscriptions: the digest the Coordinator verifies, and recovery.

Domain ``EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)``
with name ``"InfernetCoordinator"`` and version ``"1"``; primary type
``DelegateSubscription(uint32 nonce,uint32 expiry,Subscription sub)``. The digest must match
the contract's byte for byte, or every delegated delivery reverts; the tests check it against
the contract itself and against eth-account's generic typed-data encoder.

Pure: hashing and signature maths only, no RPC.
"""

from __future__ import annotations

from typing import Final

from eth_abi import encode
from eth_keys import KeyAPI
from eth_keys.exceptions import BadSignature
from eth_utils import keccak, to_checksum_address

from .subscriptions import Subscription

__all__ = (
    "DELEGATE_TYPE",
    "DOMAIN_NAME",
    "DOMAIN_VERSION",
    "SUBSCRIPTION_TYPE",
    "delegate_digest",
    "domain_separator",
    "recover_signer",
    "subscription_hash",
)

DOMAIN_NAME: Final = "InfernetCoordinator"
DOMAIN_VERSION: Final = "1"
SUBSCRIPTION_TYPE: Final = (
    "Subscription(address owner,uint32 activeAt,uint32 period,uint32 frequency,uint16 redundancy,"
    "uint48 maxGasPrice,uint32 maxGasLimit,string containerId,bytes inputs)"
)
# A struct's type string is followed by those of the structs it refers to.
DELEGATE_TYPE: Final = "DelegateSubscription(uint32 nonce,uint32 expiry,Subscription sub)" + SUBSCRIPTION_TYPE

_DOMAIN_TYPEHASH: Final = keccak(
    text="EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_SUBSCRIPTION_TYPEHASH: Final = keccak(text=SUBSCRIPTION_TYPE)
_DELEGATE_TYPEHASH: Final = keccak(text=DELEGATE_TYPE)
# secp256k1's group order: the ecrecover precompile takes 0 < r, s < n.
_SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_keys = KeyAPI()


def domain_separator(chain_id: int, coordinator: str) -> bytes:
    """The EIP-712 domain separator of the Coordinator at ``coordinator`` on ``chain_id``."""
    return keccak(
        encode(
            ["bytes32", "bytes32", "bytes32", "uint256", "address"],
            [
                _DOMAIN_TYPEHASH,
                keccak(text=DOMAIN_NAME),
                keccak(text=DOMAIN_VERSION),
                chain_id,
                to_checksum_address(coordinator),
            ],
        )
    )


def subscription_hash(sub: Subscription) -> bytes:
    """``hashStruct(Subscription)``: dynamic fields (``containerId``, ``inputs``) enter hashed."""
    return keccak(
        encode(
            ["bytes32", "address", "uint32", "uint32", "uint32", "uint16", "uint48", "uint32", "bytes32", "bytes32"],
            [
                _SUBSCRIPTION_TYPEHASH,
                to_checksum_address(sub.owner),
                sub.active_at,
                sub.period,
                sub.frequency,
                sub.redundancy,
                sub.max_gas_price,
                sub.max_gas_limit,
                keccak(text=sub.container_id),
                keccak(sub.inputs),
            ],
        )
    )


def delegate_digest(sub: Subscription, nonce: int, expiry: int, chain_id: int, coordinator: str) -> bytes:
    """The 32-byte digest a delegated subscription's owner signs (``\\x19\\x01 ‖ domain ‖ struct``)."""
    struct_hash = keccak(
        encode(["bytes32", "uint32", "uint32", "bytes32"], [_DELEGATE_TYPEHASH, nonce, expiry, subscription_hash(sub)])
    )
    return keccak(b"\x19\x01" + domain_separator(chain_id, coordinator) + struct_hash)


def recover_signer(digest: bytes, v: int, r: int, s: int) -> str | None:
    """The checksummed address that signed ``digest``, or ``None`` if the signature is invalid.

    Accepts exactly what the Coordinator accepts (solady's ``ECDSA.recover`` over the
    ecrecover precompile): ``v`` 27 or 28 and ``0 < r, s < n``. The high-``s`` twin of a
    signature is not refused: it recovers the same signer, on-chain as here, and a signer
    that does not normalise ``s`` (a KMS or HSM key, some wallets) must be served.
    """
    if v not in (27, 28) or not (0 < r < _SECP256K1_N) or not (0 < s < _SECP256K1_N):
        return None
    try:
        signature = _keys.Signature(vrs=(v - 27, r, s))
        return signature.recover_public_key_from_msg_hash(digest).to_checksum_address()
    except (BadSignature, ValueError):
        return None
