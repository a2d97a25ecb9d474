"""Fixtures of the Redis tests: a factory of RedisBackends on the session's (flushed) Redis,
each closed at the end of the test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from infernet_core.store import Retention
from infernet_core.stores.redis import RedisBackend

BackendFactory = Callable[..., RedisBackend]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def make_backend(redis_url_clean: str) -> AsyncIterator[BackendFactory]:
    """``make_backend(url=None, prefix="infernet", **retention)``: a backend whose store is open."""
    made: list[RedisBackend] = []

    def make(url: str | None = None, prefix: str = "infernet", **retention: Any) -> RedisBackend:
        backend = RedisBackend(url or redis_url_clean, prefix=prefix, retention=Retention(**retention))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.store.aclose()
