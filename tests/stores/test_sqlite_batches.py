"""The sqlite store's group commit and read cache: calls made in one turn of the event loop
share one commit, a failing call is undone alone, and the cache of committed records never
disagrees with the file (trim, expiry, a caller that has gone)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from anyio import fail_after as anyio_fail_after
from store_kit import FakeClock, finished, request_for, running

from infernet_core.errors import StoreUnavailable
from infernet_core.jobs import Job
from infernet_core.models import JobRequest
from infernet_core.store import OVERDUE_GRACE, Retention
from infernet_core.stores.sqlite import SqliteResultStore

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def opened(path: Path, retention: Retention | None = None, clock: FakeClock | None = None) -> SqliteResultStore:
    store = SqliteResultStore(path, retention, clock=clock or FakeClock())
    await store.open()
    return store


@contextmanager
def traced(store: SqliteResultStore) -> Iterator[list[str]]:
    statements: list[str] = []
    assert store._db is not None
    store._db.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        store._db.set_trace_callback(None)


def failing_on(store: SqliteResultStore, bad_id: str) -> None:
    """Make puts of ``bad_id`` fail after their SQL ran (the write must be undone)."""
    put = store._put

    def wrapped(db: Any, job: Job, request: JobRequest | None) -> Any:
        outcome = put(db, job, request)
        if job.id == bad_id:
            raise RuntimeError(f"{bad_id} fails after writing")
        return outcome

    store._put = wrapped  # type: ignore[method-assign]


@pytest.mark.parametrize("bad_position", [0, 1, 3])
async def test_a_batch_of_mixed_calls_commits_once_and_a_failing_call_fails_alone(
    tmp_path: Path, bad_position: int
) -> None:
    """The failing put is the batch's first write (no savepoint: its transaction is rolled
    back and the next write starts another) or a later one (rolled back to its savepoint)."""
    path = tmp_path / "node.db"
    store = await opened(path, Retention(max_finished=10))
    await store.put(finished("old"))
    failing_on(store, "bad")
    names = ["a", "b", "c", "d"]
    names.insert(bad_position, "bad")
    calls: list[Callable[[], Any]] = [lambda n=n: store.put(finished(n), None) for n in names]  # type: ignore[misc]
    calls.insert(2, lambda: store.ids("c1"))  # a read inside the batch
    try:
        with traced(store) as statements:
            # Started together, the calls are made in one turn of the loop: one batch.
            tasks = [asyncio.ensure_future(call()) for call in calls]
            results = await asyncio.gather(*tasks, return_exceptions=True)
        puts = [r for i, r in enumerate(results) if i != 2]
        for name, result in zip(names, puts, strict=True):
            if name == "bad":
                assert isinstance(result, RuntimeError) and "bad fails" in str(result)
            else:
                assert result is True, (name, result)
        listed = results[2]
        assert isinstance(listed, list) and "bad" not in listed and listed[0] == "old"
        assert sum(s == "COMMIT" for s in statements) == 1  # one commit for the whole batch
        assert await store.get("c1", ["bad"]) == []
    finally:
        await store.aclose()
    store = await opened(path, Retention(max_finished=10))  # what was committed is in the file
    try:
        assert await store.ids("c1") == ["old", "a", "b", "c", "d"]
        assert await store.get("c1", ["bad"]) == []
        assert await store.put(finished("bad")) is True  # nothing of it was left behind
    finally:
        await store.aclose()


async def test_a_broken_batch_fails_its_callers_instead_of_hanging(tmp_path: Path) -> None:
    store = await opened(tmp_path / "node.db")
    db = store._db
    assert db is not None
    db.close()  # behind the store's back: the batch itself fails, not one call in it
    try:
        with anyio_fail_after(5), pytest.raises(StoreUnavailable, match="the store's connection is closed"):
            await store.put(running("j"))
        with anyio_fail_after(5), pytest.raises(StoreUnavailable):
            await store.ids("c1")  # the store still answers
    finally:
        await store.aclose()


async def test_gets_of_recent_jobs_are_answered_without_sql(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await opened(tmp_path / "node.db", Retention(pending_ttl=10.0, max_finished=2), clock)
    try:
        await store.put(running("r"), request_for(1))
        for name in ("a", "b", "c"):
            await store.put(finished(name))
        reads: list[str] = []
        get = store._get
        store._get = lambda db, client, ids: reads.append("file") or get(db, client, ids)  # type: ignore[method-assign]
        assert await store.get("c1", ["c", "b", "r", "c"]) == [finished("c"), finished("b"), running("r")]
        assert reads == []  # all known to the cache
        assert await store.get("c1", ["a"]) == []  # trimmed (max_finished=2): dropped from the cache too
        assert await store.get("c2", ["b"]) == []  # another client's id
        assert reads == ["file", "file"]
        clock.advance(10 + OVERDUE_GRACE)  # r was never swept: past its grace, the cache knows it is gone
        assert await store.get("c1", ["r", "b"]) == [finished("b")]
        assert reads == ["file", "file"]
        assert await store.put(finished("r")) is True  # a new job over the dropped one
        assert await store.get("c1", ["r"]) == [finished("r")]
    finally:
        await store.aclose()


async def test_a_put_whose_caller_has_gone_still_updates_the_cache(tmp_path: Path) -> None:
    store = await opened(tmp_path / "node.db")
    try:
        await store.put(running("j"), request_for(1))
        put = asyncio.ensure_future(store.put(finished("j")))
        await asyncio.sleep(0)  # the put is queued for the batch at the end of this turn
        put.cancel()
        with pytest.raises(asyncio.CancelledError):
            await put
        await asyncio.sleep(0.05)  # the commit is delivered
        assert await store.get("c1", ["j"]) == [finished("j")]  # as the file says, not the old record
        assert await store.put(running("j")) is False
    finally:
        await store.aclose()


async def test_puts_look_for_expired_rows_only_once_one_may_exist(tmp_path: Path) -> None:
    clock = FakeClock()
    store = await opened(tmp_path / "node.db", Retention(pending_ttl=10.0, finished_ttl=200.0), clock)
    try:
        await store.put(running("first"))  # the first put after opening purges
        with traced(store) as statements:
            for n in range(5):
                await store.put(running(f"j{n}"), request_for(n))
                await store.put(finished(f"j{n}"))
                clock.advance(1)
        assert not [s for s in statements if s.startswith("DELETE")], statements
        clock.advance(5 + OVERDUE_GRACE)  # "first" is past its pending TTL and the grace
        with traced(store) as statements:
            await store.put(running("next"))
        assert any(s.startswith("DELETE") and "pending = 1" in s for s in statements), statements
        assert await store.pending_count() == 1
        assert await store.ids("c1") == ["next", "j0", "j1", "j2", "j3", "j4"]
    finally:
        await store.aclose()
