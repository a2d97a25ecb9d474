"""The slice of the seed-era Coordinator and consumer ABIs the node uses.

Written out by hand from the interface (not generated from any build), so the node depends on
the interface, not on one deployment of it. Custom errors are listed so that reverts decode to
their names.
"""

from __future__ import annotations

from typing import Any, Final

from eth_utils import function_signature_to_4byte_selector

__all__ = ("CONSUMER_ABI", "COORDINATOR_ABI", "ERROR_SELECTORS")

_SUBSCRIPTION_COMPONENTS: Final = [
    {"name": "owner", "type": "address"},
    {"name": "activeAt", "type": "uint32"},
    {"name": "period", "type": "uint32"},
    {"name": "frequency", "type": "uint32"},
    {"name": "redundancy", "type": "uint16"},
    {"name": "maxGasPrice", "type": "uint48"},
    {"name": "maxGasLimit", "type": "uint32"},
    {"name": "containerId", "type": "string"},
    {"name": "inputs", "type": "bytes"},
]


def _param(name: str, type_: str) -> dict[str, Any]:
    if type_ == "Subscription":
        return {"name": name, "type": "tuple", "components": _SUBSCRIPTION_COMPONENTS}
    return {"name": name, "type": type_}


def _function(name: str, inputs: str, outputs: str = "", mutability: str = "view") -> dict[str, Any]:
    """An ABI function entry from ``"type name, type name"`` lists."""
    return {
        "type": "function",
        "name": name,
        "inputs": [_param(*reversed(arg.split())) for arg in inputs.split(",") if arg.strip()],
        "outputs": [_param(*reversed(arg.split())) for arg in outputs.split(",") if arg.strip()],
        "stateMutability": mutability,
    }


def _event(name: str, *fields: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "type": "event",
        "name": name,
        "anonymous": False,
        "inputs": [{"name": n, "type": t, "indexed": indexed} for n, t, indexed in fields],
    }


_SUB_FIELDS: Final = (
    "address owner, uint32 activeAt, uint32 period, uint32 frequency, uint16 redundancy,"
    " uint48 maxGasPrice, uint32 maxGasLimit, string containerId, bytes inputs"
)
_DELIVERY: Final = "uint32 deliveryInterval, bytes input, bytes output, bytes proof"

# Error signatures, by name. The node acts on some of them (see the processor).
_ERRORS: Final = (
    "GasPriceExceeded()",
    "GasLimitExceeded()",
    "IntervalMismatch()",
    "IntervalCompleted()",
    "NodeRespondedAlready()",
    "SubscriptionNotFound()",
    "NotSubscriptionOwner()",
    "SubscriptionCompleted()",
    "SubscriptionNotActive()",
    "SignerMismatch()",
    "SignatureExpired()",
    "InvalidSignature()",
    "NodeNotActive()",
    "NodeNotRegisterable(address,uint8)",
    "CooldownActive(uint32)",
    "NodeNotActivateable(uint8)",
)

ERROR_SELECTORS: Final = {
    function_signature_to_4byte_selector(signature): signature.split("(")[0] for signature in _ERRORS
}
"""4-byte selector -> error name."""

COORDINATOR_ABI: Final = [
    _function("id", "", "uint32 id"),
    _function("subscriptions", "uint32 id", _SUB_FIELDS),
    _function("redundancyCount", "bytes32 key", "uint16 count"),
    _function("nodeResponded", "bytes32 key", "bool responded"),
    _function("delegateCreatedIds", "bytes32 key", "uint32 id"),
    _function("nodeInfo", "address node", "uint8 status, uint32 cooldownStart"),
    _function("registerNode", "address node", "", "nonpayable"),
    _function("activateNode", "", "", "nonpayable"),
    _function("deliverCompute", f"uint32 subscriptionId, {_DELIVERY}", "", "nonpayable"),
    _function(
        "deliverComputeDelegatee",
        f"uint32 nonce, uint32 expiry, Subscription sub, uint8 v, bytes32 r, bytes32 s, {_DELIVERY}",
        "",
        "nonpayable",
    ),
    _event("SubscriptionCreated", ("id", "uint32", True)),
    _event("SubscriptionCancelled", ("id", "uint32", True)),
    _event("SubscriptionFulfilled", ("id", "uint32", True), ("node", "address", True)),
]

CONSUMER_ABI: Final = [
    _function("signer", "", "address signer"),
    _function(
        "getContainerInputs", "uint32 subscriptionId, uint32 interval, uint32 timestamp, address caller", "bytes inputs"
    ),
]
