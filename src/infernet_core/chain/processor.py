"""The subscription processor: answers each tracked subscription once per interval.

Every ``period`` seconds (or at once, when the listener or REST hands it something new) it
reads chain time from the latest block and, for every tracked subscription, works out the
current interval. A slot -- one subscription's one interval -- is started when:

* the subscription is active and not past its last interval (a subscription past its last
  interval is dropped: nothing is ever delivered after it);
* no run of that slot is in flight, and fewer than ``max_attempts`` runs of it failed
  (a container error, a failed transaction, an unexpected revert each count one; an RPC
  that keeps failing counts none: the slot just waits for a later sweep);
* the interval is not complete (``redundancy`` answers) and this node has not answered it --
  both checked on-chain too (``redundancyCount``, ``nodeResponded``), so a restarted node
  does not answer again and no container runs for an interval others have filled.

A slot runs in its own task: inputs (the subscription's, else the consumer's
``getContainerInputs``), the containers, then ``deliverCompute`` through the wallet, which
simulates first. Reverts that carry news update the state instead of counting as failures
(``NodeRespondedAlready``, ``IntervalCompleted``, ``SubscriptionCompleted``, ...).

Delegated subscriptions (signed off-chain, admitted over REST) are slots keyed by
``(owner, nonce)`` until their first delivery creates them on-chain; from then on they are
ordinary subscriptions.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import anyio
from anyio.abc import TaskGroup

from ..backoff import CHAIN_POLL
from ..delivery import container_input, delivery_payload
from ..errors import AdmissionError
from ..guardian import Guardian
from ..jobs import Job, JobState
from ..models import Signature, Source
from ..subscriptions import Subscription
from .coordinator import Coordinator
from .rpc import ChainError, Reverted, retrying
from .wallet import GasPriceTooHigh, Wallet

__all__ = ("DelegatedEntry", "RunContainers", "SubscriptionProcessor")

log = logging.getLogger("infernet_core.chain.processor")

T = TypeVar("T")

RunContainers = Callable[[Sequence[str], Any, Source], Awaitable[Job]]
"""Runs containers (ids, first input, its source) with destination on-chain; returns the job."""

SlotKey = tuple[int | tuple[str, int], int]
"""``(subscription id or (owner, nonce), interval)``."""

# Reverts that mean "this slot needs nothing more from us" / "try again next tick".
_ALREADY_ANSWERED = {"NodeRespondedAlready"}
_INTERVAL_FULL = {"IntervalCompleted"}
_SUBSCRIPTION_OVER = {"SubscriptionCompleted", "SubscriptionNotFound"}
_TIMING = {"IntervalMismatch", "SubscriptionNotActive"}
_SIGNATURE_DEAD = {"SignatureExpired", "SignerMismatch", "InvalidSignature"}


@dataclass(frozen=True, slots=True)
class DelegatedEntry:
    """A delegated subscription waiting for its first delivery (which creates it on-chain)."""

    subscription: Subscription
    signature: Signature
    data: Any


class SubscriptionProcessor:
    """Tracks subscriptions and delivers their intervals.

    Args:
        coordinator: The Coordinator adapter.
        wallet: Sends the deliveries.
        guardian: Decides which on-chain subscriptions this node serves.
        run: Runs containers for a slot.
        period: Seconds between sweeps.
        max_attempts: Failed runs after which a slot is given up.
        receipt_timeout: Seconds to wait for a delivery to be mined.
    """

    def __init__(
        self,
        coordinator: Coordinator,
        wallet: Wallet,
        guardian: Guardian,
        run: RunContainers,
        *,
        period: float = 0.5,
        max_attempts: int = 3,
        receipt_timeout: float = 120.0,
    ) -> None:
        self._coordinator = coordinator
        self._wallet = wallet
        self._guardian = guardian
        self._run = run
        self._period = period
        self._max_attempts = max_attempts
        self._receipt_timeout = receipt_timeout
        self.subscriptions: dict[int, Subscription] = {}
        self.delegated: dict[tuple[str, int], DelegatedEntry] = {}
        self._in_flight: set[SlotKey] = set()
        self._failures: dict[SlotKey, int] = {}
        self._answered: set[tuple[int, int]] = set()
        self._responses: dict[SlotKey, int] = {}
        self._wake = anyio.Event()
        self.on_delivery: Callable[[str, str], None] | None = None
        """Told each delivery's outcome (delivered, reverted, failed, priced_out) and revert
        name (metrics)."""

    @property
    def pending_count(self) -> int:
        """Slots being run or delivered right now."""
        return len(self._in_flight)

    # -- what the listener and REST hand in ------------------------------------------

    def track(self, subscription: Subscription, *, responses: dict[int, int] | None = None) -> bool:
        """Serve ``subscription`` if the guardian admits it; True if it is now tracked.

        Args:
            responses: Known answer counts by interval (the snapshot reads the last one's).
        """
        if not subscription.exists:
            return False
        for interval, count in (responses or {}).items():
            self._responses[(subscription.id, interval)] = count
        if self._complete(subscription, subscription.frequency):
            log.debug("subscription %d is complete; not tracked", subscription.id)
            return False
        try:
            self._guardian.check_subscription(subscription)
        except AdmissionError as rejection:
            log.info("subscription %d not served: %s %s", subscription.id, rejection.message, rejection.params or "")
            return False
        self.subscriptions[subscription.id] = subscription
        self._wake.set()
        return True

    def cancel(self, subscription_id: int) -> None:
        """Stop serving a cancelled subscription."""
        if self.subscriptions.pop(subscription_id, None) is not None:
            log.info("subscription %d cancelled", subscription_id)
            self._forget(subscription_id)

    def fulfilled(self, subscription_id: int, node: str, timestamp: int) -> None:
        """Count a ``SubscriptionFulfilled`` (mined at chain time ``timestamp``)."""
        subscription = self.subscriptions.get(subscription_id)
        if subscription is None:
            return
        interval = subscription.fulfilled_interval(timestamp)
        key = (subscription_id, interval)
        self._responses[key] = self._responses.get(key, 0) + 1
        if node == self._wallet.address:
            self._answered.add(key)
        if interval == subscription.frequency and self._complete(subscription, interval):
            self.subscriptions.pop(subscription_id, None)
            self._forget(subscription_id)
            log.info("subscription %d complete", subscription_id)

    def track_delegated(self, subscription: Subscription, signature: Signature, data: Any) -> None:
        """Serve a delegated subscription (already verified) until it exists on-chain.

        Submitting the same ``(owner, nonce)`` again replaces the entry.
        """
        self.delegated[(subscription.owner, signature.nonce)] = DelegatedEntry(subscription, signature, data)
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------

    async def run(self, task_group: TaskGroup) -> None:
        """Sweep for ever (until cancelled); a failed sweep is logged and the next one runs."""
        failures = 0
        while True:
            self._wake = anyio.Event()
            try:
                await self._sweep(task_group)
                failures = 0
            except Exception as exc:
                failures += 1
                log.warning("subscription sweep failed (%d in a row): %s", failures, exc)
            with anyio.move_on_after(CHAIN_POLL.after(failures) if failures else self._period):
                await self._wake.wait()

    async def _sweep(self, task_group: TaskGroup) -> None:
        block = await retrying(lambda: self._coordinator.w3.eth.get_block("latest"), "reading the latest block")
        now = int(block["timestamp"])
        for subscription in list(self.subscriptions.values()):
            if not subscription.is_active(now):
                continue
            interval = subscription.interval(now)
            if interval > subscription.frequency:
                log.info("subscription %d is past its last interval; dropped", subscription.id)
                self.subscriptions.pop(subscription.id, None)
                self._forget(subscription.id)
                continue
            slot: SlotKey = (subscription.id, interval)
            if self._ready(slot) and not self._complete(subscription, interval):
                self._in_flight.add(slot)
                task_group.start_soon(self._run_slot, slot, partial(self._serve, subscription, interval, now))
        for key, entry in list(self.delegated.items()):
            subscription = entry.subscription
            if not subscription.is_active(now):
                continue
            interval = subscription.interval(now)
            if interval > subscription.frequency:
                self.delegated.pop(key, None)
                continue
            slot = (key, interval)
            if self._ready(slot):
                self._in_flight.add(slot)
                task_group.start_soon(self._run_slot, slot, partial(self._serve_delegated, key, entry, interval))

    def _ready(self, slot: SlotKey) -> bool:
        return (
            slot not in self._in_flight
            and slot not in self._answered
            and self._failures.get(slot, 0) < self._max_attempts
        )

    def _complete(self, subscription: Subscription, interval: int) -> bool:
        return self._responses.get((subscription.id, interval), 0) >= subscription.redundancy

    # -- one slot ------------------------------------------------------------------------

    async def _run_slot(self, slot: SlotKey, serve: Callable[[], Awaitable[None]]) -> None:
        """Run one slot's task; whatever it raises is logged, and never ends the processor."""
        try:
            await serve()
        except Reverted as revert:
            self._failed(slot, f"unexpected revert: {revert.name}")
        except ChainError as exc:
            # The RPC kept failing: not the slot's fault, so no failure is counted; the next
            # sweep tries again.
            log.warning("subscription %s interval %d waits for the RPC: %s", *slot, exc)
        except Exception as exc:
            self._failed(slot, f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            self._in_flight.discard(slot)

    async def _serve(self, subscription: Subscription, interval: int, now: int) -> None:
        slot = (subscription.id, interval)
        node = self._wallet.address
        coordinator = self._coordinator
        if await _read(lambda: coordinator.node_responded(subscription.id, interval, node), "reading nodeResponded"):
            self._answered.add(slot)
            return
        count = await _read(lambda: coordinator.redundancy_count(subscription.id, interval), "reading redundancyCount")
        if count >= subscription.redundancy:
            self._responses[slot] = count
            return
        if await self._priced_out(subscription):
            return
        inputs = subscription.inputs or await _read(
            lambda: coordinator.container_inputs(subscription, interval, now, node), "reading getContainerInputs"
        )
        output = await self._containers(slot, subscription, container_input(inputs), Source.ONCHAIN)
        if output is None:
            return
        calldata = coordinator.deliver_compute(subscription.id, interval, delivery_payload(output))
        if await self._deliver(slot, subscription, calldata):
            self._answered.add(slot)
            log.info(
                "delivered subscription %d interval %d",
                subscription.id,
                interval,
                extra={"subscription_id": subscription.id},
            )

    async def _serve_delegated(self, key: tuple[str, int], entry: DelegatedEntry, interval: int) -> None:
        slot = (key, interval)
        subscription = entry.subscription
        existing = await self._created_id(key)
        if existing:
            # Created already (by us or another node): from now on it is an ordinary one.
            self.delegated.pop(key, None)
            await self._track_created(existing)
            return
        if await self._priced_out(subscription):
            return
        output = await self._containers(slot, subscription, entry.data, Source.OFFCHAIN)
        if output is None:
            return
        calldata = self._coordinator.deliver_compute_delegatee(
            subscription, entry.signature, interval, delivery_payload(output)
        )
        if await self._deliver(slot, subscription, calldata):
            self.delegated.pop(key, None)
            created = await self._created_id(key)
            self._answered.add((created, interval))
            log.info("delivered delegated subscription %s nonce %d as id %d", key[0], key[1], created)
            await self._track_created(created)

    async def _created_id(self, key: tuple[str, int]) -> int:
        return await _read(lambda: self._coordinator.delegate_created_id(*key), "reading delegateCreatedIds")

    async def _track_created(self, subscription_id: int) -> None:
        self.track(await _read(lambda: self._coordinator.subscription(subscription_id), "reading a subscription"))

    async def _priced_out(self, subscription: Subscription) -> bool:
        """True (and nothing run) while gas costs more than the subscription pays; the slot
        is tried again on a later sweep, without counting as a failure."""
        gas_price = await _read(lambda: self._coordinator.w3.eth.gas_price, "reading the gas price")
        if gas_price <= subscription.max_gas_price:
            return False
        log.info(
            "gas price %d wei is above subscription %s's max %d; waiting",
            gas_price,
            subscription.id or subscription.owner,
            subscription.max_gas_price,
        )
        return True

    async def _containers(self, slot: SlotKey, subscription: Subscription, data: Any, source: Source) -> Any | None:
        """The containers' final output, or ``None`` (failure counted) if they failed."""
        job = await self._run(subscription.containers, data, source)
        if job.state is not JobState.SUCCEEDED or not job.outputs:
            reason = job.error.error if job.error is not None else "no output"
            self._failed(slot, f"containers failed: {reason}")
            return None
        return job.outputs[-1].output

    async def _deliver(self, slot: SlotKey, subscription: Subscription, calldata: bytes) -> bool:
        """Send a delivery and wait for it; True once it is mined successfully."""
        try:
            tx_hash = await self._wallet.transact(
                self._coordinator.address,
                calldata,
                gas_limit=subscription.max_gas_limit,
                max_gas_price=subscription.max_gas_price,
            )
        except GasPriceTooHigh as exc:
            log.info("not sent: %s", exc)
            self._count_delivery("priced_out", "")
            return False
        except Reverted as revert:
            self._count_delivery("reverted", revert.name)
            self._on_revert(slot, revert)
            return False
        except ChainError as exc:
            self._count_delivery("failed", "")
            self._failed(slot, str(exc))
            return False
        receipt = await self._wallet.wait(tx_hash, timeout=self._receipt_timeout)
        if receipt["status"] != 1:
            self._count_delivery("reverted", "")
            self._failed(slot, f"transaction 0x{tx_hash.hex()} reverted")
            return False
        self._count_delivery("delivered", "")
        return True

    def _count_delivery(self, outcome: str, revert: str) -> None:
        if self.on_delivery is not None:
            self.on_delivery(outcome, revert)

    def _on_revert(self, slot: SlotKey, revert: Reverted) -> None:
        key, interval = slot
        if revert.name in _ALREADY_ANSWERED and isinstance(key, int):
            self._answered.add((key, interval))
        elif revert.name in _INTERVAL_FULL and isinstance(key, int) and key in self.subscriptions:
            self._responses[(key, interval)] = self.subscriptions[key].redundancy
        elif revert.name in _SUBSCRIPTION_OVER and isinstance(key, int):
            self.subscriptions.pop(key, None)
            self._forget(key)
        elif revert.name in _SIGNATURE_DEAD and not isinstance(key, int):
            log.warning("delegated subscription %s dropped: %s", key, revert.name)
            self.delegated.pop(key, None)
        elif revert.name in _TIMING:
            log.debug("slot %s: %s; retried on the next sweep", slot, revert.name)
        else:
            self._failed(slot, f"delivery would revert: {revert.name}")

    def _failed(self, slot: SlotKey, reason: str) -> None:
        count = self._failures.get(slot, 0) + 1
        self._failures[slot] = count
        if count >= self._max_attempts:
            log.error("giving up on subscription %s interval %d after %d failures: %s", *slot, count, reason)
        else:
            log.warning("subscription %s interval %d failed (%d/%d): %s", *slot, count, self._max_attempts, reason)

    def _forget(self, subscription_id: int) -> None:
        """Drop per-interval bookkeeping of a subscription no longer served."""
        for table in (self._failures, self._responses):
            for slot in [slot for slot in table if slot[0] == subscription_id]:
                del table[slot]
        self._answered = {slot for slot in self._answered if slot[0] != subscription_id}


async def _read(call: Callable[[], Awaitable[T]], what: str) -> T:
    """A read for one slot: a few tries with backoff, then :class:`ChainError`."""
    return await retrying(call, what, attempts=3)
