"""The subscription listener: what exists on-chain at start, then what changes.

1. **Snapshot**: at ``head = latest − trail_head_blocks`` read ``id()`` (the next unused
   id) and every subscription from ``max(1, starting_sub_id)`` up to it, ``batch_size`` at a
   time (one JSON-RPC batch request per batch, ``sleep`` seconds between batches, so a
   rate-limited RPC is not flooded). A subscription on its last interval also gets that
   interval's answer count read, so finished ones are not picked up again.
2. **Follow**: poll for ``SubscriptionCreated`` / ``Cancelled`` / ``Fulfilled`` logs in
   ranges of at most ``max_range`` blocks, staying ``trail_head_blocks`` behind the head.
   A range's reads are all made before any of its events is applied, so a range that fails
   half-way is simply read again, and nothing is counted twice.

No RPC failure stops it: every read retries with backoff, for as long as it takes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import anyio

from ..backoff import CHAIN_POLL
from ..config import SnapshotSyncConfig
from ..subscriptions import Subscription
from .coordinator import Cancelled, Coordinator, Created
from .processor import SubscriptionProcessor
from .rpc import retrying

__all__ = ("SnapshotStats", "SubscriptionListener")

log = logging.getLogger("infernet_core.chain.listener")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SnapshotStats:
    """What the start-up snapshot read."""

    head: int
    subscriptions: int
    tracked: int
    seconds: float


class SubscriptionListener:
    """Feeds the processor with the chain's subscriptions.

    Args:
        coordinator: The Coordinator adapter.
        processor: Receives subscriptions and events.
        trail_head_blocks: Blocks to stay behind the head (reorg safety).
        snapshot: Batch size, pause and first id of the start-up snapshot.
        poll_period: Seconds between polls once caught up.
        max_range: Most blocks one log query covers.
    """

    def __init__(
        self,
        coordinator: Coordinator,
        processor: SubscriptionProcessor,
        *,
        trail_head_blocks: int,
        snapshot: SnapshotSyncConfig,
        poll_period: float,
        max_range: int = 100,
    ) -> None:
        self._coordinator = coordinator
        self._processor = processor
        self._trail = trail_head_blocks
        self._snapshot_config = snapshot
        self._poll_period = poll_period
        self._max_range = max_range
        self._timestamps: dict[int, int] = {}
        self.synced = anyio.Event()
        """Set once the snapshot is done and the listener follows new blocks."""
        self.stats: SnapshotStats | None = None
        self.position: int | None = None
        """The last block read (snapshot or logs), once there is one."""

    async def run(self) -> None:
        """Snapshot, then follow the chain for ever (until cancelled)."""
        last = self.position = await self._snapshot()
        self.synced.set()
        failures = 0
        while True:
            try:
                last = self.position = await self._poll(last)
                failures = 0
            except Exception as exc:
                failures += 1
                delay = CHAIN_POLL.after(failures)
                log.warning("chain poll failed (%d in a row), retrying in %.1fs: %s", failures, delay, exc)
                await anyio.sleep(delay)

    # -- snapshot ------------------------------------------------------------------------

    async def _snapshot(self) -> int:
        started = time.perf_counter()
        head = await self._head()
        block = await _read(lambda: self._coordinator.w3.eth.get_block(head), f"reading block {head}")
        now = int(block["timestamp"])
        next_id = await _read(lambda: self._coordinator.next_id(head), "reading the next subscription id")
        config = self._snapshot_config
        first = max(1, config.starting_sub_id)
        tracked = 0
        for start in range(first, next_id, config.batch_size):
            if start > first:
                await anyio.sleep(config.sleep)
            batch = range(start, min(start + config.batch_size, next_id))
            subscriptions = await _read(
                partial(self._coordinator.subscriptions, batch, head),
                f"reading subscriptions {batch.start}-{batch.stop - 1}",
            )
            for subscription in subscriptions:
                if subscription.exists and not subscription.is_past_last_interval(now):
                    responses = await self._last_interval_answers(subscription, head, now)
                    tracked += self._processor.track(subscription, responses=responses)
        self.stats = SnapshotStats(
            head=head, subscriptions=max(next_id - first, 0), tracked=tracked, seconds=time.perf_counter() - started
        )
        log.info(
            "snapshot at block %d: %d subscriptions read, %d served, in %.2fs",
            head,
            self.stats.subscriptions,
            tracked,
            self.stats.seconds,
        )
        return head

    async def _last_interval_answers(self, subscription: Subscription, block: int, now: int) -> dict[int, int]:
        """``{frequency: answers}`` when the subscription is on its last interval, else ``{}``."""
        if not subscription.exists or not subscription.is_active(now):
            return {}
        if subscription.interval(now) != subscription.frequency:
            return {}
        count = await _read(
            lambda: self._coordinator.redundancy_count(subscription.id, subscription.frequency, block),
            f"reading subscription {subscription.id}'s answers",
        )
        return {subscription.frequency: count}

    # -- follow ----------------------------------------------------------------------------

    async def _poll(self, last: int) -> int:
        head = await self._head()
        if last >= head:
            await anyio.sleep(self._poll_period)
            return last
        end = min(head, last + self._max_range)
        events = await self._coordinator.events(last + 1, end)
        # Read everything first, then apply: a failure above leaves the processor untouched.
        updates: list[Callable[[], object]] = []
        for event in events:
            if isinstance(event, Created):
                subscription = await self._coordinator.subscription(event.id, event.block_number)
                now = await self._timestamp(event.block_number)
                responses = await self._last_interval_answers(subscription, event.block_number, now)
                updates.append(partial(self._processor.track, subscription, responses=responses))
            elif isinstance(event, Cancelled):
                updates.append(partial(self._processor.cancel, event.id))
            else:
                now = await self._timestamp(event.block_number)
                updates.append(partial(self._processor.fulfilled, event.id, event.node, now))
        for update in updates:
            update()
        return end

    async def _head(self) -> int:
        latest = await _read(lambda: self._coordinator.w3.eth.block_number, "reading the block number")
        return max(int(latest) - self._trail, 0)

    async def _timestamp(self, block_number: int) -> int:
        if block_number not in self._timestamps:
            if len(self._timestamps) > 1024:
                self._timestamps.clear()
            block = await self._coordinator.w3.eth.get_block(block_number)
            self._timestamps[block_number] = int(block["timestamp"])
        return self._timestamps[block_number]


async def _read(call: Callable[[], Awaitable[T]], what: str) -> T:
    """Read until it works: the listener has nothing better to do than wait for the RPC."""
    return await retrying(call, what, attempts=None, backoff=CHAIN_POLL)
