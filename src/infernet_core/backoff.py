"""How long to wait before trying again: one exponential backoff, with named policies.

Every retry loop of the node (RPC reads, the chain listener and processor, storing a result
while the store is down) takes its delays from a :class:`Backoff`, so they all grow the
same way and are capped; what each loop does between tries stays its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ("CHAIN_POLL", "RPC_CALL", "STORE_WRITE", "Backoff")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays of ``first``, then ``factor`` times the last, never more than ``limit`` seconds."""

    first: float
    limit: float
    factor: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.first <= self.limit:
            raise ValueError("a backoff needs 0 < first <= limit")
        if self.factor < 1:
            raise ValueError("a backoff's factor must be at least 1")

    def after(self, failures: int) -> float:
        """The delay after ``failures`` failures in a row (at least one)."""
        if failures < 1:
            raise ValueError("failures must be at least 1")
        # Capped before it can overflow: the exponent stops mattering once the limit is hit.
        delay = self.first
        for _ in range(failures - 1):
            delay *= self.factor
            if delay >= self.limit:
                return self.limit
        return min(delay, self.limit)

    def delays(self) -> Iterator[float]:
        """The delays after the first, second, ... failure, for ever."""
        failures = 1
        while True:
            yield self.after(failures)
            failures += 1


RPC_CALL = Backoff(first=0.2, limit=5.0)
"""Between tries of one RPC call (:func:`infernet_core.chain.rpc.retrying`)."""

CHAIN_POLL = Backoff(first=0.5, limit=10.0)
"""Between failed polls of the chain listener, and failed sweeps of the processor."""

STORE_WRITE = Backoff(first=0.05, limit=2.0)
"""Between tries to store a job's result while the store is unavailable."""
