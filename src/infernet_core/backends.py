"""Build the result store and dispatcher that a config names."""

from __future__ import annotations

from .config import NodeConfig, StoreKind
from .dispatch import Dispatcher, LocalDispatcher
from .errors import ConfigError
from .ratelimit import MemoryRateLimiter, RateLimit, RateLimiter
from .store import ResultStore, Retention
from .stores.memory import MemoryResultStore

__all__ = ("build_backend", "build_rate_limiter", "retention_of")


def retention_of(config: NodeConfig) -> Retention:
    """The retention settings of ``config.store``."""
    store = config.store
    return Retention(pending_ttl=store.pending_ttl, finished_ttl=store.finished_ttl, max_finished=store.max_finished)


def build_backend(config: NodeConfig, default_kind: StoreKind = "memory") -> tuple[ResultStore, Dispatcher]:
    """The store and dispatcher for ``config`` (see :meth:`NodeConfig.store_kind`).

    Raises:
        ConfigError: Redis is named but the ``redis`` package is not installed.
    """
    kind = config.store_kind(default_kind)
    retention = retention_of(config)
    if kind == "memory":
        return MemoryResultStore(retention), LocalDispatcher()
    if kind == "sqlite":
        from .stores.sqlite import SqliteResultStore

        return SqliteResultStore(config.store.path, retention), LocalDispatcher()
    try:
        from .stores.redis import RedisBackend
    except ImportError as exc:  # pragma: no cover - the redis package is a declared dependency
        raise ConfigError(f"config: store kind redis needs the redis package ({exc})") from None
    backend = RedisBackend(config.redis_url(), prefix=config.store.prefix, retention=retention)
    return backend.store, backend.dispatcher(claim_idle=config.store.claim_idle)


def build_rate_limiter(config: NodeConfig, store: ResultStore) -> RateLimiter | None:
    """The limiter ``server.rate_limit`` asks for (``None`` when it is absent): in Redis when
    the store is (so the limit holds across replicas), else in this process."""
    settings = config.server.rate_limit
    if settings is None:
        return None
    limit = RateLimit(settings.num_requests, settings.period)
    from .stores.redis import RedisResultStore  # redis is a declared dependency

    if isinstance(store, RedisResultStore):
        return store.rate_limiter(limit)
    return MemoryRateLimiter(limit)
