"""One Redis connection pool, shared by the store and the lease dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry  # not redis.retry's: it would not await the call, so never retry
from redis.backoff import ExponentialBackoff

from ...errors import ConfigError, StoreUnavailable
from ...store import Retention
from ._common import safe_url
from .lease import RedisLeaseDispatcher
from .pipelined import Pipeliner
from .store import RedisResultStore

__all__ = ("MAX_CONNECTIONS", "POOL_TIMEOUT", "RedisBackend")

MAX_CONNECTIONS = 64
"""Connections a backend's pool opens to Redis, at most; more calls at once wait for one."""

POOL_TIMEOUT = 5.0
"""Seconds a call waits for a free connection before it fails (StoreUnavailable, a 503)."""


class RedisBackend:
    """One Redis connection pool, with the store and dispatchers that share it.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``, ``unix://``).
        prefix: Prefix of every key, so several clusters can share one server.
        retention: How long the store keeps jobs.
        max_connections: Connections the pool opens, at most. Calls beyond that wait.
        pool_timeout: Seconds a call waits for a free connection before it fails.

    Raises:
        ConfigError: The URL cannot be parsed.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "infernet",
        retention: Retention | None = None,
        max_connections: int = MAX_CONNECTIONS,
        pool_timeout: float = POOL_TIMEOUT,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.url = url
        self.where = safe_url(url)
        self.prefix = prefix
        self.retention = retention if retention is not None else Retention()
        self.replica: str | None = None
        """The id of the replica whose lease dispatcher runs on this backend (None: none runs);
        the store records the running jobs it puts as that replica's."""
        try:
            # A bounded pool that waits (up to pool_timeout) for a free connection instead of
            # failing at once; short socket timeouts and one quick retry (to replace a
            # connection that a Redis restart broke): a Redis that is down fails fast into
            # StoreUnavailable, never a hang.
            pool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_timeout,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,
                socket_keepalive=True,
                health_check_interval=10,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"config: store.url: invalid Redis URL {self.where!r}: {exc}") from None
        self.redis: Redis = Redis.from_pool(pool)
        self.pipeliner = Pipeliner(self.redis)
        """Sends the script calls of each event-loop turn (puts, rate-limit checks) together."""
        self.store = RedisResultStore(self)
        self._users: set[object] = set()
        self._closed = False

    def dispatcher(self, claim_idle: float = 30.0) -> RedisLeaseDispatcher:
        """A dispatcher that runs jobs here and recovers those of replicas that died.

        Args:
            claim_idle: Seconds a replica's lease lasts without renewal; once it has expired,
                another replica takes over that replica's running jobs.
        """
        return RedisLeaseDispatcher(self, claim_idle=claim_idle)

    def _use(self, user: object) -> None:
        self._users.add(user)
        self._closed = False

    async def _release(self, user: object) -> None:
        """Close the connection pool once neither the store nor a dispatcher still uses it."""
        self._users.discard(user)
        if self._users or self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            await self.pipeliner.drain()
            await self.redis.aclose()

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Turn Redis errors into :class:`StoreUnavailable` with a message saying what failed."""
        try:
            yield
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as exc:
            raise StoreUnavailable(f"Result store unavailable: cannot reach Redis at {self.where}: {exc}") from exc
        except redis_errors.RedisError as exc:
            raise StoreUnavailable(f"Result store unavailable: Redis at {self.where} failed to {doing}: {exc}") from exc
