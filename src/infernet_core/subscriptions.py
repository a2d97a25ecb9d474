"""On-chain subscriptions and their interval maths (the seed-era Coordinator's rules).

A subscription asks for ``frequency`` deliveries, one per interval of ``period`` seconds
starting at ``active_at`` (a ``period`` of 0 is a one-off callback), each answered by up to
``redundancy`` nodes. Times are chain time: block timestamps, never the node's clock, so the
node and the contract always agree on which interval is current.

Everything here is pure: the chain adapter reads subscriptions and feeds them in.
"""

from __future__ import annotations

import msgspec

from .models import SubscriptionRequest

__all__ = ("Subscription", "subscription_interval")


def subscription_interval(active_at: int, period: int, now: int) -> int:
    """The interval current at ``now``, by the contract's formula.

    ``1`` for a callback (``period == 0``), else ``(now - active_at) // period + 1``.

    Raises:
        ValueError: ``now`` is before ``active_at`` (the subscription is not active yet).
    """
    if now < active_at:
        raise ValueError(f"subscription is not active until {active_at} (now {now})")
    if period == 0:
        return 1
    return (now - active_at) // period + 1


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    """A Coordinator subscription, field for field (``inputs`` as raw bytes).

    ``id`` is the on-chain id, ``0`` while unknown (a delegated subscription not yet created).
    """

    owner: str
    active_at: int
    period: int
    frequency: int
    redundancy: int
    max_gas_price: int
    max_gas_limit: int
    container_id: str
    inputs: bytes = b""
    id: int = 0

    @classmethod
    def from_request(cls, fields: SubscriptionRequest) -> Subscription:
        """The subscription a REST delegated request describes (``owner`` as given).

        The signed ``inputs`` are the UTF-8 bytes of the REST string, not its hex decoding.
        """
        return cls(
            owner=fields.owner,
            active_at=fields.active_at,
            period=fields.period,
            frequency=fields.frequency,
            redundancy=fields.redundancy,
            max_gas_price=fields.max_gas_price,
            max_gas_limit=fields.max_gas_limit,
            container_id=fields.container_id,
            inputs=fields.inputs.encode(),
        )

    @property
    def containers(self) -> list[str]:
        """The container ids to run, in order (``container_id`` is comma-separated)."""
        return self.container_id.split(",")

    @property
    def exists(self) -> bool:
        """False for an id the Coordinator never used or whose subscription was cancelled."""
        return int(self.owner, 16) != 0

    def is_active(self, now: int) -> bool:
        """True once chain time ``now`` has reached ``active_at`` (the contract's test)."""
        return now >= self.active_at

    def interval(self, now: int) -> int:
        """The interval current at ``now`` (see :func:`subscription_interval`)."""
        return subscription_interval(self.active_at, self.period, now)

    def is_past_last_interval(self, now: int) -> bool:
        """True when every interval the subscription asked for is over."""
        return self.is_active(now) and self.interval(now) > self.frequency

    def fulfilled_interval(self, timestamp: int) -> int:
        """The interval a delivery mined at ``timestamp`` answered (capped at ``frequency``)."""
        return min(self.interval(timestamp), self.frequency)
