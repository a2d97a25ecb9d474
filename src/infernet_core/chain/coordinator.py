"""The Coordinator and its consumers, as the node reads and calls them.

Reads take a block number so a sweep sees one consistent state; writes are returned as
calldata for the :class:`~infernet_core.chain.wallet.Wallet` to simulate, sign and send.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

import anyio
from eth_abi import decode, encode
from eth_abi.exceptions import DecodingError
from eth_utils import function_signature_to_4byte_selector, keccak, to_checksum_address
from hexbytes import HexBytes
from web3 import AsyncWeb3
from web3.exceptions import BadFunctionCallOutput
from web3.types import BlockIdentifier

from ..delivery import DeliveryPayload
from ..models import Signature
from ..subscriptions import Subscription
from .abi import CONSUMER_ABI, COORDINATOR_ABI
from .rpc import reverted_from

__all__ = ("ZERO_ADDRESS", "Cancelled", "ChainEvent", "Coordinator", "Created", "Fulfilled")

log = logging.getLogger("infernet_core.chain")

ZERO_ADDRESS: Final = "0x0000000000000000000000000000000000000000"
_SUBSCRIPTIONS: Final = "0x" + function_signature_to_4byte_selector("subscriptions(uint32)").hex()
_SUBSCRIPTION_TYPES: Final = ["address", "uint32", "uint32", "uint32", "uint16", "uint48", "uint32", "string", "bytes"]
_CREATED: Final = keccak(text="SubscriptionCreated(uint32)")
_CANCELLED: Final = keccak(text="SubscriptionCancelled(uint32)")
_FULFILLED: Final = keccak(text="SubscriptionFulfilled(uint32,address)")


@dataclass(frozen=True, slots=True)
class Created:
    """``SubscriptionCreated``: a new subscription ``id``."""

    id: int
    block_number: int
    tx_hash: bytes


@dataclass(frozen=True, slots=True)
class Cancelled:
    """``SubscriptionCancelled``: subscription ``id`` is gone."""

    id: int
    block_number: int


@dataclass(frozen=True, slots=True)
class Fulfilled:
    """``SubscriptionFulfilled``: ``node`` delivered for subscription ``id``."""

    id: int
    node: str
    block_number: int


ChainEvent = Created | Cancelled | Fulfilled


def _subscription(subscription_id: int, fields: Sequence[Any]) -> Subscription:
    owner, active_at, period, frequency, redundancy, max_gas_price, max_gas_limit, container_id, inputs = fields
    return Subscription(
        id=subscription_id,
        owner=to_checksum_address(owner),
        active_at=active_at,
        period=period,
        frequency=frequency,
        redundancy=redundancy,
        max_gas_price=max_gas_price,
        max_gas_limit=max_gas_limit,
        container_id=container_id,
        inputs=bytes(inputs),
    )


class _BatchRefused(Exception):
    """The RPC answered a batch request with an error instead of results."""


def _key(types: list[str], values: list[Any]) -> bytes:
    return keccak(encode(types, values))


class Coordinator:
    """One Coordinator contract, reached through ``w3``.

    Args:
        w3: The async web3 client.
        address: The Coordinator's address (any case).
    """

    def __init__(self, w3: AsyncWeb3[Any], address: str) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self._contract = w3.eth.contract(address=self.address, abi=COORDINATOR_ABI)
        self._batching = True
        self._limiter = anyio.CapacityLimiter(32)

    # -- reads -----------------------------------------------------------------------------

    async def next_id(self, block: BlockIdentifier = "latest") -> int:
        """The id the next subscription will get (ids start at 1)."""
        return int(await self._contract.functions.id().call(block_identifier=block))

    async def subscription(self, subscription_id: int, block: BlockIdentifier = "latest") -> Subscription:
        """Subscription ``subscription_id`` (an all-zero one if it never existed or was cancelled)."""
        fields = await self._contract.functions.subscriptions(subscription_id).call(block_identifier=block)
        return _subscription(subscription_id, fields)

    async def subscriptions(self, ids: Sequence[int], block: BlockIdentifier = "latest") -> list[Subscription]:
        """Many subscriptions, in one JSON-RPC batch request (one call each, 32 at a time, if
        the RPC does not do batches)."""
        if self._batching:
            try:
                return await self._subscriptions_batch(ids, block)
            except _BatchRefused as refusal:
                log.info("the RPC refused a batch request (%s); reading one subscription per call", refusal)
                self._batching = False
        results: dict[int, Subscription] = {}

        async def read(subscription_id: int) -> None:
            async with self._limiter:
                results[subscription_id] = await self.subscription(subscription_id, block)

        async with anyio.create_task_group() as group:
            for subscription_id in ids:
                group.start_soon(read, subscription_id)
        return [results[subscription_id] for subscription_id in ids]

    async def _subscriptions_batch(self, ids: Sequence[int], block: BlockIdentifier) -> list[Subscription]:
        # Straight to the provider: web3's per-call formatting and validation cost more CPU
        # than the RPC's answer (about 4 ms a subscription, against 0.1 ms this way).
        block_param = block if isinstance(block, str) else hex(int(block))
        requests = [
            ("eth_call", [{"to": self.address, "data": _SUBSCRIPTIONS + encode(["uint32"], [i]).hex()}, block_param])
            for i in ids
        ]
        responses = await self.w3.provider.make_batch_request(cast(Any, requests))
        if not isinstance(responses, list) or len(responses) != len(ids):
            raise _BatchRefused(str(responses)[:200])
        errors = [r["error"] for r in responses if "result" not in r]
        if errors:
            raise _BatchRefused(str(errors[0])[:200])
        # Answers may come in any order; each carries its request's position as its id.
        ordered = sorted(responses, key=lambda response: int(response["id"]))
        return [
            _subscription(i, decode(_SUBSCRIPTION_TYPES, bytes.fromhex(r["result"].removeprefix("0x"))))
            for i, r in zip(ids, ordered, strict=True)
        ]

    async def redundancy_count(self, subscription_id: int, interval: int, block: BlockIdentifier = "latest") -> int:
        """How many nodes have answered this interval."""
        key = _key(["uint32", "uint32"], [subscription_id, interval])
        return int(await self._contract.functions.redundancyCount(key).call(block_identifier=block))

    async def node_responded(
        self, subscription_id: int, interval: int, node: str, block: BlockIdentifier = "latest"
    ) -> bool:
        """True if ``node`` has delivered this interval."""
        key = _key(["uint32", "uint32", "address"], [subscription_id, interval, node])
        return bool(await self._contract.functions.nodeResponded(key).call(block_identifier=block))

    async def delegate_created_id(self, owner: str, nonce: int, block: BlockIdentifier = "latest") -> int:
        """The id of the subscription created from ``owner``'s delegated ``nonce``; 0 if none."""
        key = _key(["address", "uint32"], [to_checksum_address(owner), nonce])
        return int(await self._contract.functions.delegateCreatedIds(key).call(block_identifier=block))

    async def node_info(self, node: str) -> tuple[int, int]:
        """``(status, cooldown_start)``; status 0 inactive, 1 registered, 2 active."""
        status, cooldown_start = await self._contract.functions.nodeInfo(to_checksum_address(node)).call()
        return int(status), int(cooldown_start)

    async def signer_of(self, owner: str, block: BlockIdentifier = "latest") -> str:
        """The delegated signer a consumer names (``signer()``); the zero address if it names none."""
        consumer = self.w3.eth.contract(address=to_checksum_address(owner), abi=CONSUMER_ABI)
        try:
            return to_checksum_address(await consumer.functions.signer().call(block_identifier=block))
        except Exception as exc:
            # An owner that reverts, is not a contract, or lacks the function names no signer.
            if reverted_from(exc) is None and not isinstance(exc, BadFunctionCallOutput | DecodingError):
                raise
            return ZERO_ADDRESS

    async def container_inputs(self, subscription: Subscription, interval: int, timestamp: int, node: str) -> bytes:
        """The consumer's ``getContainerInputs(...)`` for this interval; empty if it reverts."""
        consumer = self.w3.eth.contract(address=to_checksum_address(subscription.owner), abi=CONSUMER_ABI)
        call = consumer.functions.getContainerInputs(subscription.id, interval, timestamp, node)
        try:
            return bytes(await call.call())
        except Exception as exc:
            if reverted_from(exc) is None and not isinstance(exc, BadFunctionCallOutput | DecodingError):
                raise
            return b""

    async def events(self, from_block: int, to_block: int) -> list[ChainEvent]:
        """Created, Cancelled and Fulfilled events in ``[from_block, to_block]``, in chain order."""
        logs = await self.w3.eth.get_logs(
            {
                "address": self.address,
                "fromBlock": from_block,
                "toBlock": to_block,
                "topics": [[HexBytes(_CREATED), HexBytes(_CANCELLED), HexBytes(_FULFILLED)]],
            }
        )
        events: list[ChainEvent] = []
        for entry in sorted(logs, key=lambda e: (e["blockNumber"], e["logIndex"])):
            topic, subscription_id = bytes(entry["topics"][0]), int.from_bytes(entry["topics"][1], "big")
            if topic == _CREATED:
                events.append(Created(subscription_id, entry["blockNumber"], bytes(entry["transactionHash"])))
            elif topic == _CANCELLED:
                events.append(Cancelled(subscription_id, entry["blockNumber"]))
            else:
                node = to_checksum_address(bytes(entry["topics"][2])[-20:])
                events.append(Fulfilled(subscription_id, node, entry["blockNumber"]))
        return events

    # -- writes (calldata) --------------------------------------------------------------

    def deliver_compute(self, subscription_id: int, interval: int, payload: DeliveryPayload) -> bytes:
        """Calldata of ``deliverCompute``."""
        return self._calldata("deliverCompute", [subscription_id, interval, *payload])

    def deliver_compute_delegatee(
        self, subscription: Subscription, signature: Signature, interval: int, payload: DeliveryPayload
    ) -> bytes:
        """Calldata of ``deliverComputeDelegatee`` (creates the subscription if needed, then delivers)."""
        sub = (
            subscription.owner,
            subscription.active_at,
            subscription.period,
            subscription.frequency,
            subscription.redundancy,
            subscription.max_gas_price,
            subscription.max_gas_limit,
            subscription.container_id,
            subscription.inputs,
        )
        args = [
            signature.nonce,
            signature.expiry,
            sub,
            signature.v,
            signature.r.to_bytes(32, "big"),
            signature.s.to_bytes(32, "big"),
            interval,
            *payload,
        ]
        return self._calldata("deliverComputeDelegatee", args)

    def register_node(self, node: str) -> bytes:
        """Calldata of ``registerNode(node)``."""
        return self._calldata("registerNode", [to_checksum_address(node)])

    def activate_node(self) -> bytes:
        """Calldata of ``activateNode()`` (for the sender)."""
        return self._calldata("activateNode", [])

    def _calldata(self, function: str, args: list[Any]) -> bytes:
        return bytes.fromhex(self._contract.encode_abi(function, args=args).removeprefix("0x"))
