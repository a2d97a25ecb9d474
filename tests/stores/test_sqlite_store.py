"""What is particular to the sqlite store: the file outlives the store, one owner at a time, WAL,
indexed retention, and checkpoints kept off the event loop."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import pytest
from store_kit import FakeClock, failed, finished, progressed, request_for, running

from infernet_core.errors import StoreUnavailable
from infernet_core.store import OVERDUE_GRACE, Retention
from infernet_core.stores.sqlite import SqliteResultStore, checkpoint

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "node.db"


async def opened(path: Path, retention: Retention | None = None, clock: FakeClock | None = None) -> SqliteResultStore:
    store = SqliteResultStore(path, retention, clock=clock or FakeClock())
    await store.open()
    return store


# -- durability -----------------------------------------------------------------------------------


async def test_finished_results_survive_close_and_reopen(db_path: Path) -> None:
    store = await opened(db_path)
    done = [finished("f1", "::1", output={"v": 1}), failed("f2", "::1", error="bad"), finished("f3", "10.0.0.1")]
    await store.put(running("r1", "::1"), request_for(1))
    for job in done:
        await store.put(job)
    await store.aclose()

    store = await opened(db_path)
    try:
        assert await store.get("::1", ["f2", "f1", "r1"]) == [done[1], done[0], running("r1", "::1")]
        assert await store.get("10.0.0.1", ["f3"]) == [done[2]]
        assert await store.ids("::1") == ["r1", "f1", "f2"]
        assert await store.pending_count() == 1
        assert await store.put(running("f1", "::1")) is False  # still final after a reopen
        # jobs put after the reopen are listed after the older ones
        await store.put(finished("f0", "::1"))
        assert await store.ids("::1", pending=False) == ["f1", "f2", "f0"]
    finally:
        await store.aclose()


async def test_retention_state_is_rebuilt_on_reopen(db_path: Path) -> None:
    """max_finished counts the finished rows already in the file, and TTL deadlines persist."""
    clock = FakeClock()
    retention = Retention(pending_ttl=10.0, max_finished=2)
    store = await opened(db_path, retention, clock)
    await store.put(finished("a"))
    await store.put(finished("b"))
    await store.put(running("r"), request_for(1))
    await store.aclose()

    store = await opened(db_path, retention, clock)
    try:
        await store.put(finished("c"))  # a third finished job: the oldest from before goes
        assert await store.ids("c1", pending=False) == ["b", "c"]
        clock.advance(10)  # the deadline stored before the reopen still holds
        assert await store.expire_running() == 1
        assert await store.ids("c1", pending=True) == []
        assert await store.ids("c1", pending=False) == ["r", "c"]  # r, failed, kept as finished
    finally:
        await store.aclose()


async def test_many_concurrent_puts_are_all_committed(db_path: Path) -> None:
    store = await opened(db_path)
    async with anyio.create_task_group() as tg:
        for n in range(1500):
            tg.start_soon(store.put, finished(f"j{n}", "::1", output=n))
    await store.aclose()
    store = await opened(db_path)
    try:
        assert len(await store.ids("::1")) == 1500
        assert [job.outputs[0].output for job in await store.get("::1", ["j0", "j1499"])] == [0, 1499]
    finally:
        await store.aclose()


# -- interrupted jobs -----------------------------------------------------------------------------


async def test_interrupted_returns_running_jobs_with_requests_once(db_path: Path) -> None:
    clock = FakeClock()
    retention = Retention(pending_ttl=60.0)
    store = await opened(db_path, retention, clock)
    assert await store.interrupted() == []  # a new file: nothing was left running
    await store.put(running("stale", "::1"), request_for(0))
    clock.advance(30)
    await store.put(running("a", "::1"), request_for(1))
    await store.put(running("b", "2001:db8::1", ("x", "y")), request_for(2, ("x", "y")))
    await store.put(running("no-request", "::1"))  # e.g. a status report: nothing to rerun
    await store.put(progressed("b", "2001:db8::1", output="half"))  # a progress put keeps the request
    await store.put(running("done", "::1"), request_for(3))
    await store.put(finished("done", "::1"))
    assert await store.interrupted() == []  # this run's own jobs are not interrupted ones
    await store.aclose()  # no terminal put for a, b, no-request: what a killed node leaves

    # stale is past pending_ttl and the grace (no sweep reached it): forgotten; the others are not
    clock.advance(40 + OVERDUE_GRACE)
    store = await opened(db_path, retention, clock)
    try:
        found = {(job.client, job.id): (job, request) for job, request in await store.interrupted()}
        assert found == {
            ("::1", "a"): (running("a", "::1"), request_for(1)),
            ("2001:db8::1", "b"): (progressed("b", "2001:db8::1", output="half"), request_for(2, ("x", "y"))),
            ("::1", "no-request"): (running("no-request", "::1"), None),
        }
        assert await store.interrupted() == []  # handed over once
        # they do not vanish: still running until the node finishes them
        assert await store.ids("::1", pending=True) == ["a", "no-request"]
        assert await store.pending_count() == 3
        assert await store.put(failed("a", "::1", error="node stopped before the job finished")) is True
    finally:
        await store.aclose()

    store = await opened(db_path, retention, clock)
    try:
        assert {job.id for job, _ in await store.interrupted()} == {"b", "no-request"}
    finally:
        await store.aclose()


# -- one owner --------------------------------------------------------------------------------------


async def test_a_second_store_on_the_same_file_is_refused_until_the_first_closes(db_path: Path) -> None:
    first = await opened(db_path)
    await first.put(finished("j"))
    second = SqliteResultStore(db_path)
    with pytest.raises(StoreUnavailable) as refused:
        await second.open()
    message = refused.value.message
    assert f"{db_path}.lock" in message and "another node" in message
    with pytest.raises(StoreUnavailable, match="not open"):
        await second.get("c1", ["j"])
    assert await first.get("c1", ["j"]) == [finished("j")]  # the owner is not disturbed

    await first.aclose()
    await second.open()  # the lock went with the first store
    try:
        assert await second.get("c1", ["j"]) == [finished("j")]
    finally:
        await second.aclose()


async def test_a_closed_store_refuses_calls(db_path: Path) -> None:
    store = await opened(db_path)
    await store.aclose()
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.put(running("j"))
    await store.aclose()  # closing twice is harmless


async def test_in_memory_database(tmp_path: Path) -> None:
    store = SqliteResultStore(":memory:")
    await store.open()
    try:
        await store.put(finished("j"))
        assert await store.ids("c1") == ["j"]
    finally:
        await store.aclose()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["under-a-file", "a-directory"])
async def test_an_unusable_path_is_store_unavailable_naming_it(tmp_path: Path, where: str) -> None:
    if where == "under-a-file":
        (tmp_path / "plain-file").write_text("not a directory")
        path = tmp_path / "plain-file" / "sub" / "node.db"
    else:
        path = tmp_path / "is-a-directory"
        path.mkdir()
    store = SqliteResultStore(path)
    with pytest.raises(StoreUnavailable) as unavailable:
        await store.open()
    assert str(path) in unavailable.value.message
    assert unavailable.value.message.startswith("Result store unavailable: cannot open")
    await store.aclose()


# -- SQLite settings and query plans ------------------------------------------------------------------


async def test_the_file_is_in_wal_mode(db_path: Path) -> None:
    store = await opened(db_path)
    try:
        await store.put(finished("j"))
        with sqlite3.connect(db_path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
            # a reader beside the owner sees committed puts (WAL lets it read while the owner writes)
            assert other.execute("SELECT count(*) FROM jobs").fetchone() == (1,)
        assert Path(f"{db_path}-wal").exists()
    finally:
        await store.aclose()


async def test_retention_and_reads_use_indexes_not_scans(db_path: Path) -> None:
    """Every statement behind put/get/ids/pending_count, including the purge of expired rows and
    the trim beyond max_finished, finds its rows through an index (EXPLAIN QUERY PLAN)."""
    clock = FakeClock()
    store = await opened(db_path, Retention(pending_ttl=5.0, finished_ttl=8.0, max_finished=2), clock)
    statements: list[str] = []
    # White box: trace the statements the store runs on its own connection (expanded SQL).
    assert store._db is not None
    store._db.set_trace_callback(statements.append)
    try:
        for n in range(5):
            await store.put(running(f"j{n}"), request_for(n))
            clock.advance(2)
            await store.put(finished(f"j{n}"))
        await store.get("c1", ["j3", "j4"])
        await store.ids("c1")
        await store.ids("c1", pending=True)
        await store.pending_count()
        await store.put(running("late"), request_for(9))
        clock.advance(6)
        assert await store.expire_running() == 1
    finally:
        store._db.set_trace_callback(None)
        await store.aclose()

    plans: dict[str, list[str]] = {}
    with sqlite3.connect(db_path) as other:
        for sql in dict.fromkeys(s.strip() for s in statements):
            if sql.split(None, 1)[0].upper() not in ("SELECT", "DELETE", "UPDATE"):
                continue  # BEGIN/SAVEPOINT/COMMIT; the upsert is a primary-key write
            plans[sql] = [row[3] for row in other.execute(f"EXPLAIN QUERY PLAN {sql}")]
    purges = [sql for sql in plans if sql.startswith("DELETE") and "expires_at <=" in sql and " id = " not in sql]
    trims = [sql for sql in plans if sql.startswith("DELETE") and "ORDER BY" in sql]
    assert purges and trims, f"no purge or trim statement ran: {list(plans)}"
    for sql, plan in plans.items():
        on_jobs = [step for step in plan if " jobs" in step]
        assert on_jobs, (sql, plan)
        for step in on_jobs:
            assert "INDEX" in step or "PRIMARY KEY" in step, f"{sql}\n  scans: {plan}"
    for sql in purges + trims:
        assert any("USING INDEX" in step or "USING COVERING INDEX" in step for step in plans[sql]), (sql, plans[sql])


# -- checkpoints off the event loop -----------------------------------------------------------------


async def test_checkpoints_run_on_a_thread_of_their_own(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's connection never checkpoints (a checkpoint flushes the disk); the
    checkpointer's thread copies the log into the database file, through its own connection."""
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.05)
    statements: list[tuple[int, str]] = []
    connect = sqlite3.connect

    def traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db = connect(*args, **kwargs)
        db.set_trace_callback(lambda sql: statements.append((threading.get_ident(), sql)))
        return db

    monkeypatch.setattr(checkpoint.sqlite3, "connect", traced_connect)
    store = await opened(db_path)
    try:
        assert store._db is not None
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        before = db_path.stat().st_size
        for n in range(300):
            await store.put(running(f"j{n}"), request_for(n))
        with anyio.fail_after(5):
            while db_path.stat().st_size <= before:  # the rows reached the database file
                await anyio.sleep(0.02)
    finally:
        await store.aclose()
    checkpoints = [thread for thread, sql in statements if "wal_checkpoint" in sql]
    assert checkpoints and threading.get_ident() not in checkpoints


async def test_a_damaged_running_row_is_skipped_not_fatal(db_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = await opened(db_path)
    await store.put(running("good", "::1"), request_for(1))
    await store.put(running("bad", "::1"), request_for(2))
    await store.aclose()
    with sqlite3.connect(db_path) as db:
        db.execute("UPDATE jobs SET record = ? WHERE id = 'bad'", (b"{not json",))
    store = await opened(db_path)
    try:
        assert [job.id for job, _ in await store.interrupted()] == ["good"]
    finally:
        await store.aclose()
    assert any("unreadable running job" in record.getMessage() for record in caplog.records)
