"""RedisResultStore on a real redis-server: the semantics of MemoryResultStore, shared by every
backend on the same Redis, with retention done by Redis (key TTLs, sorted-set trims).

Time is Redis's own clock, so the TTL tests sleep for real (TTLs of about a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis

from infernet_core import parse_config
from infernet_core.backends import build_backend
from infernet_core.errors import ConfigError, StoreUnavailable
from infernet_core.jobs import ContainerSucceeded, Job, JobCompleted, JobState, apply, new_job
from infernet_core.models import ContainerOutput, JobRequest
from infernet_core.store import EXPIRED_REASON, ResultStore
from infernet_core.stores.redis import RedisBackend, RedisLeaseDispatcher, RedisResultStore

pytestmark = pytest.mark.anyio

BackendFactory = Callable[..., RedisBackend]
"""The ``make_backend`` fixture (tests/redis/conftest.py)."""


def running(job_id: str, client: str = "c1") -> Job:
    return new_job(job_id, client, ["a"], created_at=0.0)


def finished(job_id: str, client: str = "c1", output: object = None) -> Job:
    job = apply(running(job_id, client), ContainerSucceeded(output=ContainerOutput(container="a", output=output)))
    return apply(job, JobCompleted(), now=1.0)


async def opened(make_backend: BackendFactory, **kwargs: object) -> RedisResultStore:
    store = make_backend(**kwargs).store
    await store.open()
    return store


async def keys(url: str, pattern: str = "*") -> list[str]:
    client = aioredis.Redis.from_url(url, decode_responses=True)
    try:
        return sorted(await client.keys(pattern))
    finally:
        await client.aclose()


@pytest.fixture
async def store(make_backend: BackendFactory) -> RedisResultStore:
    return await opened(make_backend, max_finished=3, pending_ttl=10.0)


def test_is_a_result_store(redis_url: str) -> None:
    backend = RedisBackend(redis_url)
    assert isinstance(backend.store, ResultStore)
    assert isinstance(backend.dispatcher(claim_idle=5), RedisLeaseDispatcher)


async def test_ipv6_clients_with_colons_in_ids_never_collide(make_backend: BackendFactory) -> None:
    store = await opened(make_backend)
    # Pairs that would share a key if keys were "client:id" (or "client\nid").
    pairs = [("::1", "x"), (":", ":1:x"), ("::1:x", ""), ("2001:db8::1", "job"), ("2001:db8:", ":1:job")]
    pairs += [("a\nb", "c"), ("a", "b\nc"), ("1:a", "b"), ("1", "a:b")]
    for n, (client, job_id) in enumerate(pairs):
        await store.put(finished(job_id, client, output=n))
    for n, (client, job_id) in enumerate(pairs):
        [job] = await store.get(client, [job_id])
        assert (job.client, job.id, job.outputs[0].output) == (client, job_id, n)
        assert await store.ids(client) == [job_id]
    assert await store.pending_count() == 0


async def test_ipv6_client_pending_and_finished(store: RedisResultStore) -> None:
    for client in ("::1", "2001:db8::1"):
        await store.put(running("p", client))
        await store.put(running("f", client))
        await store.put(finished("f", client))
    assert await store.pending_count() == 2
    for client in ("::1", "2001:db8::1"):
        assert await store.ids(client) == ["p", "f"]
        assert await store.ids(client, pending=True) == ["p"]
        assert [j.client for j in await store.get(client, ["p", "f"])] == [client, client]


async def test_finished_is_final_under_concurrent_puts(store: RedisResultStore) -> None:
    stored: list[int] = []

    async def put(n: int) -> None:
        if await store.put(finished("race", output=n)):
            stored.append(n)

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(put, n)
    assert len(stored) == 1
    [job] = await store.get("c1", ["race"])
    assert job.outputs[0].output == stored[0]


async def test_state_survives_round_trip(store: RedisResultStore) -> None:
    job = finished("x", output=[1, {"k": "v"}, "\u00e9\U0001f600"])
    await store.put(job)
    [got] = await store.get("c1", ["x"])
    assert got == job
    assert got.state is JobState.SUCCEEDED
    assert got.to_result().result == ContainerOutput(container="a", output=[1, {"k": "v"}, "\u00e9\U0001f600"])


async def test_pending_count_is_cluster_wide(make_backend: BackendFactory) -> None:
    a = await opened(make_backend)
    b = await opened(make_backend)
    assert await a.pending_count() == 0
    await a.put(running("a", "x"))
    await b.put(running("a", "y"))
    await b.put(running("b", "::1"))
    await a.put(finished("c", "y"))
    assert await a.pending_count() == 3
    assert await b.pending_count() == 3
    await b.put(finished("a", "y"))
    assert await a.pending_count() == 2
    # and what one backend stored, the other reads
    assert await b.ids("x") == ["a"]
    assert await a.ids("y") == ["a", "c"]
    assert [j.id for j in await b.get("y", ["a", "c"])] == ["a", "c"]


async def test_prefixes_are_separate_clusters(make_backend: BackendFactory) -> None:
    one = await opened(make_backend, prefix="one")
    two = await opened(make_backend, prefix="two")
    await one.put(running("j"))
    assert await two.get("c1", ["j"]) == []
    assert await two.pending_count() == 0
    assert await one.pending_count() == 1


async def test_pending_ttl_expiry(make_backend: BackendFactory, redis_url_clean: str) -> None:
    store = await opened(make_backend, pending_ttl=1.0)
    await store.put(running("old"))
    await anyio.sleep(0.5)
    await store.put(running("new"))
    await store.put(finished("done"))
    assert await store.pending_count() == 2
    await anyio.sleep(0.6)  # old: 1.1 s, due; new: 0.6 s, not
    assert [job.pending for job in await store.get("c1", ["old"])] == [True]  # until the sweep
    assert await store.expire_running() == 1
    assert await store.pending_count() == 1
    [old] = await store.get("c1", ["old"])
    assert old.state is JobState.FAILED and old.error is not None and old.error.error == EXPIRED_REASON
    assert await store.ids("c1") == ["new", "old", "done"]
    await anyio.sleep(0.5)  # new is due too; finished jobs never expire
    assert await store.expire_running() == 1
    assert await store.pending_count() == 0
    assert await store.ids("c1", pending=True) == []
    assert await store.ids("c1", pending=False) == ["old", "new", "done"]
    # The running records are gone from Redis: the jobs are finished ones now.
    assert not [k for k in await keys(redis_url_clean) if ":run:" in k or ":pending:" in k]


async def test_two_replicas_sweeping_fail_each_expired_job_once(make_backend: BackendFactory) -> None:
    one = await opened(make_backend, pending_ttl=0.3)
    two = await opened(make_backend, pending_ttl=0.3)
    for n in range(40):
        await one.put(running(f"j{n}"))
    await anyio.sleep(0.4)
    counts: list[int] = []

    async def sweep(store: RedisResultStore) -> None:
        while await store.pending_count():  # racing the others for the same due jobs
            counts.append(await store.expire_running(limit=7))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(sweep, one)
            tg.start_soon(sweep, two)
    assert sum(counts) == 40  # each failed by exactly one sweep
    assert await one.pending_count() == 0
    assert {job.error.error for job in await two.get("c1", [f"j{n}" for n in range(40)]) if job.error} == {
        EXPIRED_REASON
    }


async def test_running_key_has_a_ttl_and_finished_key_has_none(
    make_backend: BackendFactory, redis_url_clean: str
) -> None:
    store = await opened(make_backend, pending_ttl=100.0)
    await store.put(running("r", "::1"))
    await store.put(finished("f", "::1"))
    client = aioredis.Redis.from_url(redis_url_clean, decode_responses=True)
    try:
        ttls = {k: await client.pttl(k) for k in await client.keys("infernet:*")}
    finally:
        await client.aclose()
    [run_key] = [k for k in ttls if ":run:" in k]
    [done_key] = [k for k in ttls if ":done:" in k]
    assert 159_000 < ttls[run_key] <= 161_000  # pending_ttl, the overdue grace and a second
    assert ttls[done_key] == -1


async def test_finished_ttl_expires_oldest_first(make_backend: BackendFactory, redis_url_clean: str) -> None:
    store = await opened(make_backend, finished_ttl=1.0)
    await store.put(finished("a"))
    await anyio.sleep(0.5)
    await store.put(finished("b"))
    await store.put(running("p"))
    await anyio.sleep(0.6)  # a is 1.1 s old: gone; b is 0.6 s old: kept
    assert await store.ids("c1") == ["p", "b"]
    assert await store.get("c1", ["a", "b"]) == [finished("b")]
    assert await store.put(finished("a")) is True  # forgotten, so it can be stored again
    await anyio.sleep(0.5)
    assert await store.ids("c1") == ["p", "a"]
    assert not [k for k in await keys(redis_url_clean) if k.endswith("\nb")]


async def test_max_finished_evicts_oldest_finished(store: RedisResultStore, redis_url_clean: str) -> None:
    await store.put(running("p"))
    for job_id in ("f1", "f2", "f3"):
        await store.put(finished(job_id))
    assert await store.ids("c1", pending=False) == ["f1", "f2", "f3"]
    await store.put(finished("f4", client="2001:db8::1"))
    assert await store.ids("c1", pending=False) == ["f2", "f3"]
    assert await store.get("c1", ["f1"]) == []
    assert await store.ids("2001:db8::1") == ["f4"]
    assert await store.ids("c1", pending=True) == ["p"]
    await store.put(finished("p"))
    assert sorted(await store.ids("c1")) == ["f3", "p"]
    assert await store.ids("c1", pending=True) == []
    assert await store.get("c1", ["f2"]) == []
    done_keys = [k for k in await keys(redis_url_clean) if ":done:" in k]
    assert len(done_keys) == 3


async def test_max_finished_is_cluster_wide(make_backend: BackendFactory) -> None:
    a = await opened(make_backend, max_finished=2)
    b = await opened(make_backend, max_finished=2)
    await a.put(finished("1"))
    await b.put(finished("2"))
    await a.put(finished("3"))
    assert await b.ids("c1") == ["2", "3"]


async def test_aclose_twice(make_backend: BackendFactory) -> None:
    backend = make_backend()
    await backend.store.open()
    dispatcher = backend.dispatcher(claim_idle=1)
    await dispatcher.aclose()
    await backend.store.aclose()
    await backend.store.aclose()
    await dispatcher.aclose()


async def test_unreachable_redis_is_store_unavailable(make_backend: BackendFactory) -> None:
    from support.redis_server import free_port

    port = free_port()
    url = f"redis://:s3cret@127.0.0.1:{port}/0"
    backend = make_backend(url=url)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        await backend.store.open()
    message = info.value.message
    assert message.startswith(
        f"Result store unavailable: cannot reach Redis at redis://127.0.0.1:{url.rsplit(':', 1)[1]}"
    )
    assert "s3cret" not in message
    assert info.value.status_hint == 503
    store = backend.store
    for call in (
        store.put(running("a")),
        store.get("c1", ["a"]),
        store.ids("c1"),
        store.pending_count(),
    ):
        with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
            await call
    assert time.monotonic() - started < 5  # fails fast, no long retry loop


def test_bad_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="store.url"):
        RedisBackend("http://nope")


async def test_build_backend_makes_redis_parts(redis_url_clean: str) -> None:
    config = parse_config(
        {"store": {"kind": "redis", "url": redis_url_clean, "prefix": "p", "claim_idle": 2, "max_finished": 5}}
    )
    store, dispatcher = build_backend(config)
    assert isinstance(store, RedisResultStore)
    assert isinstance(dispatcher, RedisLeaseDispatcher)
    assert dispatcher.claim_idle == 2
    assert dispatcher.recover_every == 0.5
    await store.open()
    await store.put(finished("x"))
    assert await store.ids("c1") == ["x"]
    await dispatcher.aclose()
    await store.aclose()


async def test_connections_broken_by_a_redis_restart_are_replaced_not_failed(
    make_backend: BackendFactory, tmp_path: Path
) -> None:
    """After Redis restarts, every pooled connection is stale; each call replaces its own
    (the one quick retry) instead of failing with "Connection closed by server"."""
    from support.redis_server import start_redis, stop_redis

    proc, port = start_redis(tmp_path)
    try:
        store = await opened(make_backend, url=f"redis://127.0.0.1:{port}/0")
        counts: list[int] = []

        async def count() -> None:
            counts.append(await store.pending_count())

        async with anyio.create_task_group() as tg:  # several connections in the pool
            for _ in range(5):
                tg.start_soon(count)
        stop_redis(proc)
        proc, _ = start_redis(tmp_path, port=port)
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(count)
        assert counts == [0] * 10
    finally:
        stop_redis(proc)


# -- the running jobs a replica owns --------------------------------------------------------------


async def test_running_jobs_are_the_replicas_until_they_end(make_backend: BackendFactory, redis_url_clean: str) -> None:
    """With a replica id set (a lease dispatcher runs), a new running job joins that replica's
    running set with its request, in the same script; its terminal put, through any backend,
    releases it; a backend without a replica records nothing."""
    mine = await opened(make_backend, pending_ttl=100.0)
    other = await opened(make_backend)
    mine._backend.replica = "r1"
    request = JobRequest(containers=["a"], data={"n": 1})
    await mine.put(running("a"), request)
    await mine.put(running("b"))  # no request (a stream job, a status report)
    await other.put(running("c"), request)  # nobody's: no replica on that backend
    await other.put(running("a"))  # not new: still r1's, its request kept
    client = aioredis.Redis.from_url(redis_url_clean)
    try:
        assert await client.smembers("infernet:running:r1") == {b"2:c1\na", b"2:c1\nb"}
        meta = await client.hgetall("infernet:meta:2:c1\na")
        assert meta == {b"r": b"r1", b"q": msgspec.json.encode(request)}
        assert await client.hgetall("infernet:meta:2:c1\nb") == {b"r": b"r1", b"q": b""}
        # The record and its meta expire together (the later put renewed both); the script sets
        # the two deadlines one command apart, so they may differ by a millisecond or two.
        run_ttl, meta_ttl = await client.pttl("infernet:run:2:c1\na"), await client.pttl("infernet:meta:2:c1\na")
        assert 959_000 < run_ttl <= 961_000
        assert abs(meta_ttl - run_ttl) <= 5
        assert not await client.exists("infernet:meta:2:c1\nc")
        assert await other.put(finished("a"))  # through another replica
        assert not await mine.put(finished("a"))  # a late result: refused, still released
        await mine.put(finished("b"))
        assert await client.smembers("infernet:running:r1") == set()
        assert await client.keys("infernet:meta:*") == []
    finally:
        await client.aclose()
        mine._backend.replica = None


async def test_an_expired_running_job_is_released(make_backend: BackendFactory, redis_url_clean: str) -> None:
    store = await opened(make_backend, pending_ttl=0.3)
    store._backend.replica = "r1"
    await store.put(running("a"), JobRequest(containers=["a"], data={}))
    await anyio.sleep(0.4)
    assert await store.expire_running() == 1
    assert await store.pending_count() == 0
    client = aioredis.Redis.from_url(redis_url_clean)
    try:
        assert await client.smembers("infernet:running:r1") == set()
        assert await client.keys("infernet:meta:*") == []
    finally:
        await client.aclose()
        store._backend.replica = None


# -- the connection pool waits -------------------------------------------------------------------


async def test_the_pool_waits_for_a_free_connection(make_backend: BackendFactory, redis_url_clean: str) -> None:
    """500 calls at once on a pool of 8 connections: all succeed (none fails with "Too many
    connections"), and no more than 8 connections are opened."""
    client = aioredis.Redis.from_url(redis_url_clean)
    # Other tests' nodes may hold connections to this session's Redis: count only what is new.
    before = len(await client.client_list())
    backend = RedisBackend(redis_url_clean, max_connections=8)
    store = backend.store
    await store.open()
    try:
        results: list[object] = []

        async def call(n: int) -> None:
            if n % 2:
                results.append(await store.put(finished(f"j{n}")))
            else:
                results.append(await store.pending_count())

        async with anyio.create_task_group() as tg:
            for n in range(500):
                tg.start_soon(call, n)
        assert results.count(True) == 250 and results.count(0) == 250
        assert len(await client.client_list()) - before <= 8  # the pool's, no more
        assert len(await store.ids("c1")) == 250
    finally:
        await store.aclose()
        await client.aclose()


async def test_a_wait_beyond_the_pool_timeout_is_store_unavailable(redis_url_clean: str) -> None:
    backend = RedisBackend(redis_url_clean, max_connections=1, pool_timeout=0.2)
    store = backend.store
    await store.open()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(backend.redis.blpop, ["nothing"], 1)  # holds the one connection for 1 s
            await anyio.sleep(0.1)
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="Result store unavailable"):
                await store.pending_count()
            assert 0.15 < time.monotonic() - started < 0.8
        assert await store.pending_count() == 0  # free again
    finally:
        await store.aclose()
