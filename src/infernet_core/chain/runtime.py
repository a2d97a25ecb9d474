"""The node's chain side, assembled: RPC client, Coordinator, wallet, processor, listener.

The node starts it in its task group; the listener and the processor then run until the node
stops, each guarded so that no RPC failure, revert or timeout ends the node or its REST
server. Delegated subscriptions posted over REST are verified here, at admission, so a bad
one gets a 400 at once (the reference node drops it silently later).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from anyio.abc import TaskGroup
from eth_utils import is_address, to_checksum_address

from ..config import NodeConfig, WalletConfig
from ..eip712 import delegate_digest, recover_signer
from ..errors import AdmissionError, ChainUnavailable
from ..guardian import Guardian
from ..models import DelegatedSubscriptionRequest
from ..subscriptions import Subscription
from .coordinator import ZERO_ADDRESS, Coordinator
from .listener import SubscriptionListener
from .processor import RunContainers, SubscriptionProcessor
from .rpc import ChainError, connect, retrying
from .wallet import Wallet

__all__ = ("ChainRuntime",)

log = logging.getLogger("infernet_core.chain")


class ChainRuntime:
    """Everything on-chain one node does.

    Args:
        config: The node config (``chain`` must be enabled and valid).
        guardian: Admission rules for on-chain subscriptions.
        run: Runs containers for a subscription's interval.
    """

    def __init__(self, config: NodeConfig, guardian: Guardian, run: RunContainers) -> None:
        chain = config.chain
        wallet_config = chain.wallet or WalletConfig()
        self.w3 = connect(chain.rpc_url)
        self.coordinator = Coordinator(self.w3, config.coordinator)
        self.wallet = Wallet(
            self.w3,
            wallet_config.private_key,
            max_gas_limit=wallet_config.max_gas_limit,
            allowed_sim_errors=wallet_config.allowed_sim_errors,
        )
        period = chain.snapshot_sync.sync_period
        self.processor = SubscriptionProcessor(self.coordinator, self.wallet, guardian, run, period=period)
        self.listener = SubscriptionListener(
            self.coordinator,
            self.processor,
            trail_head_blocks=chain.trail_head_blocks,
            snapshot=chain.snapshot_sync,
            poll_period=period,
        )

    @property
    def address(self) -> str:
        """The node wallet's address."""
        return self.wallet.address

    @property
    def pending_count(self) -> int:
        """Subscription intervals being run or delivered right now."""
        return self.processor.pending_count

    async def start(self, task_group: TaskGroup) -> None:
        """Start the listener and the processor in ``task_group``."""
        task_group.start_soon(self.listener.run, name="chain listener")
        task_group.start_soon(self.processor.run, task_group, name="chain processor")

    async def aclose(self) -> None:
        """Close the RPC client's connections."""
        await self.w3.provider.disconnect()

    async def chain_time(self) -> int:
        """The latest block's timestamp: the clock the Coordinator judges expiry by.

        Raises:
            ChainUnavailable: The RPC cannot be reached.
        """
        block = await self._read(lambda: self.w3.eth.get_block("latest"), "reading the latest block")
        return int(block["timestamp"])

    async def admit_delegated(self, request: DelegatedSubscriptionRequest) -> None:
        """Verify a delegated subscription's signature and signer, then serve it.

        The guardian's rules (containers, expiry, delegate addresses) must already have
        passed.

        Raises:
            AdmissionError: The owner is not an address, the signature is invalid, or it was
                not made by the owner contract's ``signer()``.
            ChainUnavailable: The RPC cannot be reached.
        """
        subscription = _subscription_of(request)
        signature = request.signature
        chain_id = await self._read(self.wallet.chain_id, "reading the chain id")
        digest = delegate_digest(subscription, signature.nonce, signature.expiry, chain_id, self.coordinator.address)
        signer = recover_signer(digest, signature.v, signature.r, signature.s)
        if signer is None:
            raise AdmissionError("Invalid signature", {"owner": subscription.owner, "nonce": signature.nonce})
        expected = await self._read(lambda: self.coordinator.signer_of(subscription.owner), "reading the signer")
        if expected == ZERO_ADDRESS or signer != expected:
            raise AdmissionError(
                "Subscription signer mismatch",
                {"owner": subscription.owner, "nonce": signature.nonce, "signer": signer, "expected": expected},
            )
        self.processor.track_delegated(subscription, signature, request.data)

    async def _read(self, call: Any, what: str) -> Any:
        try:
            return await retrying(call, what, attempts=3)
        except ChainError as exc:
            raise ChainUnavailable(f"Chain unavailable: {exc}") from None


def _subscription_of(request: DelegatedSubscriptionRequest) -> Subscription:
    owner = request.subscription.owner
    if not is_address(owner):
        raise AdmissionError("Invalid owner address", {"owner": owner})
    subscription = Subscription.from_request(request.subscription)
    return msgspec.structs.replace(subscription, owner=to_checksum_address(owner))
