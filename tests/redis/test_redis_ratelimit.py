"""The Redis rate limiter on a real redis-server: GCRA on Redis's clock, one bucket shared by
every replica, refusals that say when to come back."""

from __future__ import annotations

import anyio
import pytest

from infernet_core.ratelimit import RateLimit
from infernet_core.stores.redis import RedisBackend

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_two_replicas_share_one_bucket_per_client(redis_url_clean: str) -> None:
    limit = RateLimit(num_requests=5, period=1.0)
    one, two = RedisBackend(redis_url_clean), RedisBackend(redis_url_clean)
    limiters = [one.store.rate_limiter(limit), two.store.rate_limiter(limit)]
    for limiter in limiters:
        await limiter.open()
    try:
        decisions = [await limiters[n % 2].check("POST /api/jobs 127.0.0.1") for n in range(8)]
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
        assert [d.remaining for d in decisions[:5]] == [4, 3, 2, 1, 0]
        refused = decisions[-1]
        assert 0 < refused.retry_after <= limit.interval + 0.05
        assert (await limiters[0].check("POST /api/jobs ::1")).allowed  # another client
        assert (await limiters[1].check("GET /api/jobs 127.0.0.1")).allowed  # another endpoint
        await anyio.sleep(refused.retry_after + 0.01)
        assert (await limiters[1].check("POST /api/jobs 127.0.0.1")).allowed
    finally:
        for limiter in limiters:
            await limiter.aclose()
        for backend in (one, two):
            await backend.store.aclose()


async def test_concurrent_checks_over_the_limit_are_refused_exactly(redis_url_clean: str) -> None:
    limit = RateLimit(num_requests=20, period=60.0)
    backend = RedisBackend(redis_url_clean)
    limiter = backend.store.rate_limiter(limit)
    await limiter.open()
    try:
        results: list[bool] = []

        async def check() -> None:
            results.append((await limiter.check("bucket")).allowed)

        async with anyio.create_task_group() as tg:
            for _ in range(50):
                tg.start_soon(check)
        assert results.count(True) == 20
    finally:
        await limiter.aclose()
        await backend.store.aclose()
