"""The node's chain side, assembled: RPC client, Coordinator, wallet, processor, listener.

The node starts it in its task group. First the configured address is probed
(:mod:`.protocol`): if it is anything but a seed-era (SDK v0.1) Coordinator -- an Infernet v1
Registry, say -- the start fails with one line. If the RPC cannot be reached then, the node
starts anyway and the check is made in the background, before the listener's snapshot; a
mismatch found then is logged as an error and leaves the chain side idle (delegated
subscriptions answer 503 with the line). The listener and the processor then run until the
node stops, each guarded so that no RPC failure, revert or timeout ends the node or its REST
server. Delegated subscriptions posted over REST are verified here, at admission, so a bad
one gets a 400 at once (the reference node drops it silently later).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
from anyio.abc import TaskGroup
from eth_utils import is_address, to_checksum_address

from ..config import NodeConfig, WalletConfig
from ..eip712 import delegate_digest, recover_signer
from ..errors import AdmissionError, ChainUnavailable, ConfigError
from ..guardian import Guardian
from ..models import DelegatedSubscriptionRequest
from ..subscriptions import Subscription
from .coordinator import ZERO_ADDRESS, Coordinator
from .listener import SubscriptionListener
from .processor import RunContainers, SubscriptionProcessor
from .protocol import address_key, probe_protocol, protocol_problem
from .rpc import RPC_ERROR_HOOK, ChainError, connect, retrying
from .wallet import Wallet

if TYPE_CHECKING:
    from ..metrics import NodeMetrics

__all__ = ("OBSERVE_EVERY", "ChainRuntime")

OBSERVE_EVERY = 5.0
"""Seconds between readings of the head, balance and gas price (with metrics on)."""

log = logging.getLogger("infernet_core.chain")


class ChainRuntime:
    """Everything on-chain one node does.

    Args:
        config: The node config (``chain`` must be enabled and valid).
        guardian: Admission rules for on-chain subscriptions.
        run: Runs containers for a subscription's interval.
    """

    def __init__(
        self, config: NodeConfig, guardian: Guardian, run: RunContainers, metrics: NodeMetrics | None = None
    ) -> None:
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
        self._metrics = metrics
        if metrics is not None:
            self.processor.on_delivery = lambda outcome, revert: metrics.deliveries.labels(outcome, revert).inc()
        self._key = address_key(config)
        self._checked = False
        self._problem: str | None = None
        """Why the configured address cannot be served, once the check found it."""

    @property
    def address(self) -> str:
        """The node wallet's address."""
        return self.wallet.address

    @property
    def pending_count(self) -> int:
        """Subscription intervals being run or delivered right now."""
        return self.processor.pending_count

    async def start(self, task_group: TaskGroup) -> None:
        """Check the configured address, then start the listener and the processor in
        ``task_group``.

        When the RPC cannot be reached (3 tries), the check is left to a background task,
        which retries for as long as it takes and starts them only if the address passes.

        Raises:
            ConfigError: The address is not a v0.1 Coordinator (an Infernet v1 Registry, no
                contract...); the message is one line saying what to configure.
        """
        try:
            await self._check(attempts=3)
        except ChainError as exc:
            log.warning(
                "cannot check %s %s now (%s); checking it in the background before following the chain",
                self._key,
                self.coordinator.address,
                exc,
            )
            task_group.start_soon(self._check_then_run, task_group, name="chain address check")
            return
        if self._problem is not None:
            raise ConfigError(self._problem)
        self._run(task_group)

    def _run(self, task_group: TaskGroup) -> None:
        metrics = self._metrics
        hook = None if metrics is None else (lambda kind: metrics.rpc_errors.labels(kind).inc())
        token = RPC_ERROR_HOOK.set(hook)  # the tasks started here count their RPC errors
        try:
            task_group.start_soon(self.listener.run, name="chain listener")
            task_group.start_soon(self.processor.run, task_group, name="chain processor")
            if metrics is not None:
                task_group.start_soon(self._observe, metrics, name="chain metrics")
        finally:
            RPC_ERROR_HOOK.reset(token)

    async def _observe(self, metrics: NodeMetrics) -> None:
        """Every :data:`OBSERVE_EVERY` seconds: the head, the listener's lag, the wallet's
        balance and the gas price, into the metrics (never raises)."""
        eth = self.w3.eth
        while True:
            try:
                head = await eth.block_number
                metrics.head_block.set(head)
                if self.listener.position is not None:
                    metrics.listener_lag.set(max(0, head - self.listener.position))
                metrics.wallet_balance.set(await eth.get_balance(self.wallet.address))
                metrics.gas_price.set(await eth.gas_price)
            except Exception as exc:
                metrics.rpc_errors.labels(type(exc).__name__).inc()
            await anyio.sleep(OBSERVE_EVERY)

    async def _check(self, attempts: int | None) -> None:
        protocol = await probe_protocol(self.w3, self.coordinator.address, attempts=attempts)
        self._problem = protocol_problem(protocol, self.coordinator.address, self._key)
        self._checked = True

    async def _check_then_run(self, task_group: TaskGroup) -> None:
        await self._check(attempts=None)
        if self._problem is not None:
            log.error("%s", self._problem)
            return
        log.info("%s %s is a v0.1 Coordinator: following it", self._key, self.coordinator.address)
        self._run(task_group)

    async def readiness(self, wallet: WalletConfig | None) -> str | None:
        """``None`` when the chain side can serve: the address checked, the snapshot done,
        the RPC answering and the wallet holding at least ``wallet.min_balance`` wei."""
        if self._problem is not None:
            return self._problem
        if not self._checked:
            return "the Coordinator address is not checked yet (the RPC has not answered)"
        if not self.listener.synced.is_set():
            return "the subscription snapshot is not finished"
        balance = await self.w3.eth.get_balance(self.wallet.address)
        floor = wallet.min_balance if wallet is not None else 0
        if balance < floor:
            return f"the wallet holds {balance} wei, below chain.wallet.min_balance ({floor})"
        return None

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
            ChainUnavailable: The RPC cannot be reached, the configured address is not checked
                yet, or it was found not to be a v0.1 Coordinator (the message says so).
        """
        if self._problem is not None:
            raise ChainUnavailable(self._problem)
        if not self._checked:
            address = self.coordinator.address
            raise ChainUnavailable(f"Chain unavailable: {self._key} {address} is not checked yet (no RPC answer)")
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
