"""Script calls of one loop turn share one pipeline round trip; each still gets its own
answer or error, and a caller that leaves does not undo its write (real redis-server)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from infernet_core.stores.redis.pipelined import Pipeliner

pytestmark = pytest.mark.anyio

# Sets KEYS-free key ARGV[1] to ARGV[2] and answers it as a number, or fails on a non-number.
SCRIPT = """
local n = tonumber(ARGV[2])
if not n then return redis.error_reply('not a number') end
redis.call('SET', ARGV[1], n)
return n
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(redis_url_clean: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url_clean)
    try:
        yield redis
    finally:
        await redis.aclose()


def counting(redis: aioredis.Redis) -> tuple[Any, list[int]]:
    """A pipelined script call, and a list that gets each pipeline's length when it is sent."""
    sizes: list[int] = []
    pipeline = redis.pipeline

    def spy(*args: Any, **kwargs: Any) -> Any:
        pipe = pipeline(*args, **kwargs)
        execute = pipe.execute

        async def counted(*a: Any, **k: Any) -> Any:
            sizes.append(len(pipe.command_stack))
            return await execute(*a, **k)

        pipe.execute = counted  # type: ignore[method-assign]
        return pipe

    redis.pipeline = spy  # type: ignore[method-assign]
    pipeliner, script = Pipeliner(redis), redis.register_script(SCRIPT)

    async def call(args: list[Any]) -> Any:
        return await pipeliner.call(script, args)

    call.drain = pipeliner.drain  # type: ignore[attr-defined]
    return call, sizes


async def test_calls_of_one_turn_share_a_round_trip_and_keep_their_own_answers(client: aioredis.Redis) -> None:
    script, sizes = counting(client)
    assert await script(["warm", "1"]) == 1  # a call alone (loads the script)
    values = [str(n) if n % 10 else "x" for n in range(100)]
    results = await asyncio.gather(*(script([f"k{n}", v]) for n, v in enumerate(values)), return_exceptions=True)
    assert sizes == [100]  # one pipeline for the hundred calls
    for n, result in enumerate(results):
        if n % 10:
            assert result == n
        else:
            assert isinstance(result, ResponseError) and "not a number" in str(result)
    assert await client.get("k7") == b"7" and await client.get("k10") is None
    assert await script(["alone", "5"]) == 5  # a call alone is sent on its own
    assert sizes == [100]


async def test_a_caller_that_leaves_does_not_undo_its_write(client: aioredis.Redis) -> None:
    script, _ = counting(client)
    call = asyncio.ensure_future(script(["left", "9"]))
    await asyncio.sleep(0)  # queued for this turn's pipeline
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await script.drain()
    assert await client.get("left") == b"9"


async def test_a_failed_round_trip_fails_every_call_in_it() -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        pipeliner, script = Pipeliner(dead), dead.register_script(SCRIPT)
        calls = (pipeliner.call(script, [f"k{n}", "1"]) for n in range(3))
        results = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(r, RedisConnectionError) for r in results), results
    finally:
        await dead.aclose()


async def test_scripts_flushed_from_redis_are_loaded_again(client: aioredis.Redis) -> None:
    script, sizes = counting(client)
    assert await script(["warm", "1"]) == 1
    assert await asyncio.gather(*(script([f"a{n}", str(n)]) for n in range(5))) == [0, 1, 2, 3, 4]
    await client.script_flush()  # as after a Redis restart
    assert await asyncio.gather(*(script([f"b{n}", str(n)]) for n in range(5))) == [0, 1, 2, 3, 4]
    assert await client.get("b4") == b"4"
    # The first pipeline of each turn carried only the five calls (no SCRIPT EXISTS first);
    # after the flush the five were sent again once the script was loaded.
    assert sizes == [5, 5, 5]
