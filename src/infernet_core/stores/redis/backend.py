"""One Redis connection pool, shared by the store and the stream dispatcher."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import anyio
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry  # not redis.retry's: it would not await the call, so never retry
from redis.backoff import ExponentialBackoff

from ...errors import ConfigError, StoreUnavailable
from ...store import Retention
from ._common import safe_url
from .store import RedisResultStore
from .stream import RedisStreamDispatcher

__all__ = ("RedisBackend",)


class RedisBackend:
    """One Redis connection pool, with the store and dispatchers that share it.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]`` (or ``rediss://``, ``unix://``).
        prefix: Prefix of every key, so several clusters can share one server.
        retention: How long the store keeps jobs.

    Raises:
        ConfigError: The URL cannot be parsed.
    """

    def __init__(self, url: str, *, prefix: str = "infernet", retention: Retention | None = None) -> None:
        self.url = url
        self.where = safe_url(url)
        self.prefix = prefix
        self.retention = retention if retention is not None else Retention()
        try:
            # Short timeouts and one quick retry (to replace a connection that a Redis restart
            # broke): a Redis that is down fails fast into StoreUnavailable, never a hang.
            self.redis: Redis = Redis.from_url(
                url,
                socket_connect_timeout=2.0,
                socket_timeout=5.0,  # above the stream reader's 1 s BLOCK
                socket_keepalive=True,
                health_check_interval=10,
                retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
            )
        except ValueError as exc:
            raise ConfigError(f"config: store.url: invalid Redis URL {self.where!r}: {exc}") from None
        self.store = RedisResultStore(self)
        self._users: set[object] = set()
        self._closed = False

    def dispatcher(self, claim_idle: float = 30.0) -> RedisStreamDispatcher:
        """A dispatcher over this backend's stream.

        Args:
            claim_idle: Seconds without a heartbeat after which another replica takes over a job.
        """
        return RedisStreamDispatcher(self, claim_idle=claim_idle)

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
