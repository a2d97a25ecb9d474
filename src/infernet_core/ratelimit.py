"""Request rate limits: GCRA (the generic cell rate algorithm), as the reference node has it.

A limit of ``num_requests`` per ``period`` seconds lets a client make one request every
``period / num_requests`` seconds on average, in bursts of up to ``num_requests``. GCRA keeps
one number per bucket, the *theoretical arrival time* (TAT): the moment the bucket would be
empty again if requests kept arriving at the average rate. A request at ``now`` is allowed
while the TAT is at most ``period - period / num_requests`` ahead of ``now``, and pushes the
TAT one interval further.

:func:`decide` is the pure step; :class:`MemoryRateLimiter` keeps the TATs in process memory
(one node), and the Redis store offers one that holds them in Redis, so the limit holds
across every replica (``infernet_core.stores.redis.ratelimit``).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ("Decision", "MemoryRateLimiter", "RateLimit", "RateLimiter", "decide")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``num_requests`` per ``period`` seconds, in bursts of up to ``num_requests``."""

    num_requests: int
    period: float

    def __post_init__(self) -> None:
        if self.num_requests < 1:
            raise ValueError("num_requests must be at least 1")
        if self.period <= 0:
            raise ValueError("period must be positive")

    @property
    def interval(self) -> float:
        """Seconds one request adds to the bucket's TAT."""
        return self.period / self.num_requests

    @property
    def tolerance(self) -> float:
        """How far ahead of now the TAT may be for a request to be allowed."""
        return self.period - self.interval


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one request, with what the ``RateLimit-*`` headers say.

    Attributes:
        allowed: Whether the request may proceed.
        limit: ``num_requests``.
        remaining: Requests the client could still make at once, after this one.
        reset: Seconds until the bucket is full again.
        retry_after: Seconds until a refused request would be allowed (0 when allowed).
    """

    allowed: bool
    limit: int
    remaining: int
    reset: float
    retry_after: float

    def headers(self) -> list[tuple[bytes, bytes]]:
        """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (whole seconds, rounded up)."""
        return [
            (b"ratelimit-limit", str(self.limit).encode()),
            (b"ratelimit-remaining", str(self.remaining).encode()),
            (b"ratelimit-reset", str(math.ceil(self.reset)).encode()),
        ]

    @property
    def retry_after_seconds(self) -> int:
        """:attr:`retry_after` as a ``Retry-After`` header has it: whole seconds, at least 1."""
        return max(1, math.ceil(self.retry_after))


def decide(tat: float | None, now: float, limit: RateLimit) -> tuple[Decision, float | None]:
    """One request at ``now`` against a bucket whose TAT is ``tat`` (``None``: a new bucket).

    Returns:
        The decision, and the bucket's new TAT (``None`` when unchanged: a refusal).
    """
    interval, tolerance = limit.interval, limit.tolerance
    start = now if tat is None else max(tat, now)
    ahead = start - now
    if ahead > tolerance + 1e-9:  # (float slack: exactly at the tolerance is allowed)
        retry = ahead - tolerance
        return Decision(False, limit.num_requests, 0, ahead, retry), None
    new_tat = start + interval
    used = new_tat - now
    remaining = max(0, math.floor((limit.period - used) / interval + 1e-9))
    return Decision(True, limit.num_requests, remaining, used, 0.0), new_tat


class RateLimiter(ABC):
    """Decides requests of a bucket (an endpoint and a client address) against one limit."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit

    @abstractmethod
    async def check(self, bucket: str) -> Decision:
        """Count one request in ``bucket``; say whether it is allowed.

        Raises:
            StoreUnavailable: The limiter's shared state cannot be reached.
        """

    async def open(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Connect; called once when the node starts."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release the limiter's resources."""


class MemoryRateLimiter(RateLimiter):
    """TATs in process memory: the limit holds for this node.

    At most ``max_buckets`` buckets are kept (the least recently used beyond that are
    dropped, which can only let a request through early, never refuse one wrongly), and a
    bucket whose TAT has passed is the same as no bucket at all.
    """

    def __init__(
        self, limit: RateLimit, *, max_buckets: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__(limit)
        self._tats: OrderedDict[str, float] = OrderedDict()
        self._max_buckets = max_buckets
        self._clock = clock

    async def check(self, bucket: str) -> Decision:
        return self.check_now(bucket)

    def check_now(self, bucket: str) -> Decision:
        """:meth:`check`, synchronously."""
        now = self._clock()
        tats = self._tats
        decision, new_tat = decide(tats.get(bucket), now, self.limit)
        if new_tat is not None:
            tats[bucket] = new_tat
            tats.move_to_end(bucket)
            while len(tats) > self._max_buckets:
                tats.popitem(last=False)
        return decision
