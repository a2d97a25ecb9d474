"""The ResultStore contract, run against every store kind (memory, sqlite, redis).

Each test is written once and runs for every kind with the same assertions; only the way time
moves differs (see ``conftest.Timeline``): a fake clock for memory and sqlite, real sleeping on
Redis, so TTLs are written in units. The last part is a Hypothesis state machine that runs
random sequences of put/get/ids/pending_count (and clock moves, where the clock is ours) against
a store and a plain model of the contract.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import msgspec
import pytest
from anyio.from_thread import BlockingPortal
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from store_kit import (
    FakeClock,
    OpenedStore,
    StoreFactory,
    Timeline,
    failed,
    finished,
    open_store,
    progressed,
    request_for,
    running,
)

from infernet_core.jobs import Job, JobState
from infernet_core.models import ContainerError, ContainerOutput
from infernet_core.store import EXPIRED_REASON, OVERDUE_GRACE, ResultStore, Retention, expired

IPV4 = "127.0.0.1"
IPV6_CLIENTS = ("::1", "2001:db8::1", "2001:db8::10", "::ffff:127.0.0.1", "2001:db8:0:0:0:0:0:1")
ODD_IDS = (
    "a:b",
    "::1",
    "2001:db8::1",
    "5:x",
    ":",
    "x y",
    "ü-ñ-漢字-🙂",
    "*?[]",
    "'\";--",
    "%s{}",
    "\\",
    "0",
    "-" * 200,
    str(uuid.UUID(int=0)),
)


def ids_of(jobs: list[Job]) -> list[str]:
    return [job.id for job in jobs]


# -- put / get / ids ----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_is_a_result_store(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert isinstance(store, ResultStore)
    assert await store.ids("c1") == []
    assert await store.get("c1", ["nothing"]) == []
    assert await store.pending_count() == 0
    assert await store.interrupted() == []  # nothing was left running by an earlier run


@pytest.mark.anyio
async def test_put_then_get_replaces_the_running_record(store_factory: StoreFactory) -> None:
    store = await store_factory()
    job = running("j1")
    assert await store.put(job, request_for(1)) is True
    assert await store.get("c1", ["j1"]) == [job]
    done = finished("j1", output={"v": 1})
    assert await store.put(done) is True
    assert await store.get("c1", ["j1"]) == [done]
    assert await store.ids("c1") == ["j1"]


@pytest.mark.anyio
async def test_get_keeps_the_order_asked_skips_unknown_and_repeated_ids(store_factory: StoreFactory) -> None:
    store = await store_factory()
    a, b, c = running("a"), finished("b"), running("c")
    for job in (a, b, c):
        await store.put(job)
    assert await store.get("c1", ["c", "missing", "a", "b", "a", "c"]) == [c, a, b]
    assert await store.get("c1", ["b", "b", "b"]) == [b]
    assert await store.get("c1", []) == []
    assert await store.get("c1", ["missing"]) == []


@pytest.mark.anyio
async def test_get_many_ids_at_once(store_factory: StoreFactory) -> None:
    store = await store_factory()
    jobs = [finished(f"j{i}", output=i) for i in range(1200)]
    for job in jobs:
        await store.put(job)
    asked = [f"j{i}" for i in reversed(range(1300))]  # 100 unknown ones among them
    assert await store.get("c1", asked) == list(reversed(jobs))


@pytest.mark.anyio
async def test_ids_lists_pending_first_then_finished_each_in_first_put_order(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for job_id in ("p1", "f1", "p2", "f2", "p3"):
        await store.put(running(job_id))
    # finish in the other order: listing follows when a job was first put, not when it ended
    await store.put(finished("f2"))
    await store.put(finished("f1"))
    await store.put(finished("f0"))  # put finished straight away: a new job, listed last
    assert await store.ids("c1", pending=True) == ["p1", "p2", "p3"]
    assert await store.ids("c1", pending=False) == ["f1", "f2", "f0"]
    assert await store.ids("c1") == ["p1", "p2", "p3", "f1", "f2", "f0"]
    assert await store.ids("c1", pending=None) == ["p1", "p2", "p3", "f1", "f2", "f0"]
    assert await store.ids("nobody") == []
    assert await store.ids("nobody", pending=True) == []
    assert await store.ids("nobody", pending=False) == []


@pytest.mark.anyio
async def test_putting_running_again_keeps_one_entry_and_its_place(store_factory: StoreFactory) -> None:
    store = await store_factory()
    await store.put(running("j"))
    await store.put(running("k"))
    again = progressed("j", output="step 1")
    assert await store.put(again) is True
    assert await store.ids("c1") == ["j", "k"]
    assert await store.get("c1", ["j"]) == [again]
    assert await store.pending_count() == 2


@pytest.mark.anyio
async def test_pending_count_counts_running_jobs_of_every_client(store_factory: StoreFactory) -> None:
    store = await store_factory()
    assert await store.pending_count() == 0
    await store.put(running("a", "x"))
    await store.put(running("a", "y"))
    await store.put(running("b", "::1"))
    await store.put(finished("c", "y"))
    assert await store.pending_count() == 3
    await store.put(finished("a", "y"))
    assert await store.pending_count() == 2
    await store.put(failed("b", "::1"))
    assert await store.pending_count() == 1
    await store.put(running("a", "y"))  # refused: finished is final
    assert await store.pending_count() == 1


# -- scoping ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("other", IPV6_CLIENTS)
async def test_jobs_are_scoped_per_client_ipv6_included(store_factory: StoreFactory, other: str) -> None:
    store = await store_factory()
    mine = running("same", IPV4)
    theirs = finished("same", other, output="theirs")
    await store.put(mine)
    await store.put(theirs)
    assert await store.get(IPV4, ["same"]) == [mine]
    assert await store.get(other, ["same"]) == [theirs]
    assert await store.get("10.0.0.3", ["same"]) == []
    assert await store.ids(IPV4) == ["same"]
    assert await store.ids(IPV4, pending=False) == []
    assert await store.ids(other, pending=True) == []
    assert await store.ids(other, pending=False) == ["same"]
    # finishing one client's job does not touch the other's
    await store.put(finished("same", IPV4, output="mine"))
    assert [job.outputs[0].output for job in await store.get(other, ["same"])] == ["theirs"]
    assert [job.outputs[0].output for job in await store.get(IPV4, ["same"])] == ["mine"]


@pytest.mark.anyio
async def test_ipv6_clients_that_share_a_prefix_are_distinct(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for n, client in enumerate(IPV6_CLIENTS):
        await store.put(finished("j", client, output=n))
        await store.put(running(f"only-{n}", client))
    for n, client in enumerate(IPV6_CLIENTS):
        assert [job.outputs[0].output for job in await store.get(client, ["j"])] == [n]
        assert await store.ids(client) == [f"only-{n}", "j"]
    assert await store.pending_count() == len(IPV6_CLIENTS)


@pytest.mark.anyio
async def test_odd_ids_round_trip(store_factory: StoreFactory) -> None:
    store = await store_factory()
    for n, job_id in enumerate(ODD_IDS):
        await store.put(running(job_id, "::1") if n % 2 else finished(job_id, "::1", output=job_id))
    assert await store.ids("::1", pending=True) == [i for n, i in enumerate(ODD_IDS) if n % 2]
    assert await store.ids("::1", pending=False) == [i for n, i in enumerate(ODD_IDS) if not n % 2]
    assert ids_of(await store.get("::1", list(reversed(ODD_IDS)))) == list(reversed(ODD_IDS))
    for job_id in ODD_IDS:
        [job] = await store.get("::1", [job_id])
        assert job.id == job_id


@pytest.mark.anyio
async def test_client_and_id_never_run_into_each_other(store_factory: StoreFactory) -> None:
    """Client/id pairs whose naive concatenation (with ':' as glue) would collide stay apart."""
    store = await store_factory()
    clients = ("a", "a:b", "1:a", "3:1:a", "::1", "::1:b")
    job_ids = ("b", ":b", "a:b", "1", "b:")
    for client in clients:
        for job_id in job_ids:
            await store.put(finished(job_id, client, output=[client, job_id]))
    for client in clients:
        assert await store.ids(client) == list(job_ids)
        jobs = await store.get(client, list(job_ids))
        assert [job.outputs[0].output for job in jobs] == [[client, job_id] for job_id in job_ids]
        assert all(job.client == client for job in jobs)


# -- state -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_running_to_finished_transitions(store_factory: StoreFactory) -> None:
    store = await store_factory()
    ok, bad = running("ok", containers=("a", "b")), running("bad")
    await store.put(ok, request_for(1, ("a", "b")))
    await store.put(bad, request_for(2))
    assert await store.ids("c1", pending=True) == ["ok", "bad"]

    step = progressed("ok", output={"partial": [1, 2]})  # still running, with progress
    assert await store.put(step) is True
    [got] = await store.get("c1", ["ok"])
    assert got.state is JobState.RUNNING and got.outputs == step.outputs
    assert await store.pending_count() == 2

    assert await store.put(failed("bad", error="container a: HTTP 500")) is True
    [got] = await store.get("c1", ["bad"])
    assert got.state is JobState.FAILED
    assert got.to_result().result == ContainerError(container="a", error="container a: HTTP 500")
    assert await store.ids("c1", pending=True) == ["ok"]
    assert await store.ids("c1", pending=False) == ["bad"]
    assert await store.pending_count() == 1

    done = finished("ok", output={"nested": [1, {"k": "v"}], "none": None, "f": 1.5})
    assert await store.put(done) is True
    [got] = await store.get("c1", ["ok"])
    assert got == done and got.state is JobState.SUCCEEDED
    assert got.to_result().result == ContainerOutput(
        container="a", output={"nested": [1, {"k": "v"}], "none": None, "f": 1.5}
    )
    assert await store.ids("c1", pending=True) == []
    assert await store.ids("c1", pending=False) == ["ok", "bad"]
    assert await store.pending_count() == 0


@pytest.mark.anyio
@pytest.mark.parametrize("final", ["success", "failed"])
async def test_finished_is_final(store_factory: StoreFactory, final: str) -> None:
    store = await store_factory()
    done = finished("j1", output={"v": 1}) if final == "success" else failed("j1", error="first")
    assert await store.put(running("j1")) is True
    assert await store.put(done) is True
    assert await store.put(running("j1")) is False
    assert await store.put(progressed("j1", output="late")) is False
    assert await store.put(finished("j1", output={"v": 2})) is False
    assert await store.put(failed("j1", error="second")) is False
    assert await store.get("c1", ["j1"]) == [done]
    assert await store.ids("c1", pending=True) == []
    assert await store.ids("c1", pending=False) == ["j1"]
    assert await store.pending_count() == 0


@pytest.mark.anyio
async def test_finished_straight_away_is_final_too(store_factory: StoreFactory) -> None:
    store = await store_factory()
    done = failed("status-only", "::1")
    assert await store.put(done) is True
    assert await store.put(running("status-only", "::1")) is False
    assert await store.get("::1", ["status-only"]) == [done]
    assert await store.pending_count() == 0


# -- retention: pending TTL ---------------------------------------------------------------------


def expired_reason(jobs: list[Job]) -> list[tuple[str, JobState, str | None]]:
    return [(job.id, job.state, job.error.error if job.error else None) for job in jobs]


@pytest.mark.anyio
async def test_a_job_still_running_after_pending_ttl_is_failed_never_forgotten(
    store_factory: StoreFactory, timeline: Timeline
) -> None:
    store = await store_factory(Retention(pending_ttl=timeline.seconds(4)))
    await store.put(running("old"))
    await timeline.advance(2)
    await store.put(running("new"))
    await store.put(finished("done"))
    await timeline.advance(1)  # old is 3 units old: not due
    assert await store.expire_running() == 0
    assert await store.pending_count() == 2
    await timeline.advance(2)  # old is 5 units old: due; until the sweep it still reads running
    assert [job.pending for job in await store.get("c1", ["old"])] == [True]
    assert await store.expire_running() == 1
    assert expired_reason(await store.get("c1", ["old"])) == [("old", JobState.FAILED, EXPIRED_REASON)]
    assert await store.pending_count() == 1
    assert await store.ids("c1") == ["new", "old", "done"]
    assert await store.put(finished("old")) is False  # failed is final: a late result is refused
    assert await store.expire_running() == 0  # nothing else is due
    await timeline.advance(2)  # new is 5 units old too
    assert await store.expire_running() == 1
    assert await store.pending_count() == 0
    assert await store.ids("c1", pending=True) == []
    assert await store.ids("c1", pending=False) == ["old", "new", "done"]


@pytest.mark.anyio
async def test_putting_running_again_renews_the_ttl(store_factory: StoreFactory, timeline: Timeline) -> None:
    store = await store_factory(Retention(pending_ttl=timeline.seconds(4)))
    await store.put(running("a"))
    await store.put(running("b"))
    await timeline.advance(3)
    await store.put(progressed("a", output=1))  # renewed: a is due 4 units from here
    await timeline.advance(2)  # b is 5 units old: due; a was renewed 2 units ago
    assert await store.expire_running() == 1
    assert await store.ids("c1", pending=True) == ["a"]
    assert await store.pending_count() == 1
    await timeline.advance(3)
    assert await store.expire_running() == 1
    assert await store.pending_count() == 0
    assert expired_reason(await store.get("c1", ["a", "b"])) == [
        ("a", JobState.FAILED, EXPIRED_REASON),
        ("b", JobState.FAILED, EXPIRED_REASON),
    ]


@pytest.mark.anyio
async def test_expired_jobs_are_kept_like_finished_ones(store_factory: StoreFactory, timeline: Timeline) -> None:
    """An expired job counts against max_finished, in the order it was failed."""
    store = await store_factory(Retention(pending_ttl=timeline.seconds(2), max_finished=2))
    await store.put(finished("f1"))
    await store.put(running("slow"))
    await timeline.advance(3)
    assert await store.expire_running(limit=10) == 1
    await store.put(finished("f2"))
    assert await store.ids("c1", pending=False) == ["slow", "f2"]  # f1, the oldest finished, dropped


@pytest.mark.anyio
async def test_expire_running_fails_at_most_limit_per_call(store_factory: StoreFactory, timeline: Timeline) -> None:
    store = await store_factory(Retention(pending_ttl=timeline.seconds(2)))
    for n in range(5):
        await store.put(running(f"j{n}"))
    await timeline.advance(3)
    assert await store.expire_running(limit=3) == 3
    assert await store.pending_count() == 2
    assert await store.expire_running(limit=3) == 2
    assert await store.pending_count() == 0


@pytest.mark.anyio
async def test_a_running_job_no_sweep_reaches_is_dropped_after_the_grace(
    store_factory: StoreFactory, timeline: Timeline
) -> None:
    """Only when no node sweeps (none is running) for OVERDUE_GRACE past its deadline is a
    running job dropped; put again, it is a new job."""
    if not timeline.controllable:
        pytest.skip("the grace is a minute of Redis's own clock")
    store = await store_factory(Retention(pending_ttl=4.0))
    await store.put(running("p"))
    await timeline.advance(2)
    await store.put(running("q"))
    await timeline.advance(2 + OVERDUE_GRACE + 0.5)  # p is past its grace, q is not
    assert await store.get("c1", ["p"]) == []
    assert await store.pending_count() == 1
    assert await store.put(running("p")) is True
    assert await store.ids("c1", pending=True) == ["q", "p"]  # p is listed as the newer job now
    assert await store.expire_running() == 1  # q; p is new


@pytest.mark.anyio
async def test_pending_ttl_boundary_is_exclusive(store_factory: StoreFactory, timeline: Timeline) -> None:
    if not timeline.controllable:
        pytest.skip("an exact deadline needs a controllable clock (Redis reads its own)")
    store = await store_factory(Retention(pending_ttl=10.0))
    await store.put(running("j"))
    await timeline.advance(9.999)
    assert await store.expire_running() == 0
    await timeline.advance(0.001)  # exactly pending_ttl old: due
    assert await store.expire_running() == 1
    assert await store.pending_count() == 0
    assert expired_reason(await store.get("c1", ["j"])) == [("j", JobState.FAILED, EXPIRED_REASON)]


# -- retention: finished --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_finished_are_kept_by_default(store_factory: StoreFactory, timeline: Timeline) -> None:
    store = await store_factory(Retention(pending_ttl=timeline.seconds(2)))
    for n in range(50):
        await store.put(finished(f"f{n}"))
    await store.put(running("r"))
    await timeline.advance(3)
    assert await store.expire_running() == 1
    assert await store.ids("c1") == [*(f"f{n}" for n in range(50)), "r"]


@pytest.mark.anyio
async def test_finished_ttl_expires_oldest_first(store_factory: StoreFactory, timeline: Timeline) -> None:
    store = await store_factory(Retention(pending_ttl=timeline.seconds(100), finished_ttl=timeline.seconds(4)))
    await store.put(running("b"))
    await store.put(finished("a"))
    await timeline.advance(2)
    await store.put(finished("b"))  # finished 2 units after a: its own deadline
    await store.put(running("r"))
    await timeline.advance(3)  # a is 5 units old: gone; b is 3: kept; running jobs untouched
    assert await store.ids("c1") == ["r", "b"]
    assert await store.get("c1", ["a", "b"]) == [finished("b")]
    await timeline.advance(2)
    assert await store.ids("c1") == ["r"]
    assert await store.pending_count() == 1


@pytest.mark.anyio
async def test_an_expired_finished_job_no_longer_blocks_its_id(store_factory: StoreFactory, timeline: Timeline) -> None:
    store = await store_factory(Retention(finished_ttl=timeline.seconds(2)))
    await store.put(finished("j", output="first"))
    await timeline.advance(3)  # no read in between: the store must not rely on one
    again = finished("j", output="second")
    assert await store.put(again) is True
    assert await store.get("c1", ["j"]) == [again]
    assert await store.ids("c1") == ["j"]


@pytest.mark.anyio
async def test_max_finished_evicts_the_oldest_finished(store_factory: StoreFactory) -> None:
    store = await store_factory(Retention(max_finished=3))
    await store.put(running("p"))
    for job_id in ("f1", "f2", "f3"):
        await store.put(finished(job_id))
    assert await store.ids("c1", pending=False) == ["f1", "f2", "f3"]
    await store.put(finished("f4", client="::1"))
    # the oldest finished job (of any client) is dropped; running jobs are not touched
    assert await store.ids("c1", pending=False) == ["f2", "f3"]
    assert await store.get("c1", ["f1"]) == []
    assert await store.ids("::1") == ["f4"]
    assert await store.ids("c1", pending=True) == ["p"]
    await store.put(finished("p"))
    assert await store.ids("c1") == ["p", "f3"]
    assert await store.ids("c1", pending=True) == []
    assert await store.get("c1", ["f2"]) == []
    assert await store.pending_count() == 0


@pytest.mark.anyio
async def test_eviction_follows_finish_order_not_creation(store_factory: StoreFactory) -> None:
    store = await store_factory(Retention(max_finished=3))
    for job_id in ("a", "b", "c"):
        await store.put(running(job_id))
    await store.put(finished("c"))
    await store.put(finished("a"))
    await store.put(finished("b"))
    await store.put(finished("d"))  # c finished first: it goes
    assert await store.ids("c1") == ["a", "b", "d"]
    assert await store.put(finished("a")) is False  # refused, so it does not become the newest
    await store.put(finished("e"))
    assert await store.ids("c1") == ["b", "d", "e"]


@pytest.mark.anyio
async def test_max_finished_one(store_factory: StoreFactory) -> None:
    store = await store_factory(Retention(max_finished=1))
    await store.put(finished("a"))
    await store.put(finished("b"))
    assert await store.ids("c1") == ["b"]
    assert await store.get("c1", ["a", "b"]) == [finished("b")]


# -- the state machine --------------------------------------------------------------------------

CLIENTS = ("127.0.0.1", "::1", "2001:db8::1", "1:a")
JOB_IDS = ("a", "b", "a:b", "::1", "ü")
# Retentions the machine picks from; TTLs in whole seconds of the fake clock.
TIMED_RETENTIONS = (
    Retention(pending_ttl=5.0),
    Retention(pending_ttl=5.0, finished_ttl=8.0),
    Retention(pending_ttl=3.0, finished_ttl=4.0, max_finished=3),
    Retention(pending_ttl=6.0, max_finished=2),
)
# Redis runs on real time: TTLs far beyond a test, so only max_finished acts.
UNTIMED_RETENTIONS = (Retention(pending_ttl=3600.0), Retention(pending_ttl=3600.0, max_finished=2))


@dataclass
class _Entry:
    job: Job
    deadline: float
    seq: int
    last_put: int = 0


class StoreModel:
    """The contract, as plainly as possible: a dict, lazily expired, with orders as counters.
    A running job past its deadline is failed by ``expire_running`` (in deadline order, then
    last-put order); one no sweep reached within the grace is dropped."""

    def __init__(self, retention: Retention) -> None:
        self.retention = retention
        self.entries: dict[tuple[str, str], _Entry] = {}
        self.finish_order: list[tuple[str, str]] = []  # finished keys, oldest finish first
        self.next_seq = 0
        self.puts = 0

    def expire(self, now: float) -> None:
        for key, entry in list(self.entries.items()):
            grace = OVERDUE_GRACE if entry.job.pending else 0.0
            if entry.deadline + grace <= now:
                del self.entries[key]
                if key in self.finish_order:
                    self.finish_order.remove(key)

    def expire_running(self, now: float) -> int:
        self.expire(now)
        due = sorted(
            (e.deadline, e.last_put, key) for key, e in self.entries.items() if e.job.pending and e.deadline <= now
        )
        for _, _, key in due:
            self._finish(key, expired(self.entries[key].job, 0.0), self.entries[key].seq, now)
        return len(due)

    def put(self, job: Job, now: float) -> bool:
        self.expire(now)
        key = (job.client, job.id)
        old = self.entries.get(key)
        if old is not None and not old.job.pending:
            return False
        if old is None:
            self.next_seq += 1
        seq = old.seq if old is not None else self.next_seq
        self.puts += 1
        if job.pending:
            self.entries[key] = _Entry(job, now + self.retention.pending_ttl, seq, self.puts)
            return True
        self._finish(key, job, seq, now)
        return True

    def _finish(self, key: tuple[str, str], job: Job, seq: int, now: float) -> None:
        ttl = self.retention.finished_ttl
        self.entries[key] = _Entry(job, now + ttl if ttl is not None else float("inf"), seq)
        self.finish_order.append(key)
        limit = self.retention.max_finished
        while limit is not None and len(self.finish_order) > limit:
            del self.entries[self.finish_order.pop(0)]

    def get(self, client: str, ids: list[str], now: float) -> list[Job]:
        self.expire(now)
        unique = dict.fromkeys(ids)
        return [self.entries[(client, i)].job for i in unique if (client, i) in self.entries]

    def ids(self, client: str, pending: bool | None, now: float) -> list[str]:
        self.expire(now)
        mine = sorted((e.seq, e.job.id, e.job.pending) for (c, _), e in self.entries.items() if c == client)
        running_ids = [i for _, i, p in mine if p]
        finished_ids = [i for _, i, p in mine if not p]
        if pending is None:
            return running_ids + finished_ids
        return running_ids if pending else finished_ids

    def pending_count(self, now: float) -> int:
        self.expire(now)
        return sum(1 for e in self.entries.values() if e.job.pending)


def unstamped(job: Job) -> Job:
    """An expired job as the model knows it: the store stamps its own finish time."""
    if job.error is not None and job.error.error == EXPIRED_REASON:
        return msgspec.structs.replace(job, finished_at=0.0)
    return job


class StoreMachine(RuleBasedStateMachine):
    """Random put/get/ids/pending_count (and clock moves, reopening sqlite) against the model."""

    kind = "memory"
    redis_url: str | None = None
    portal: BlockingPortal  # one event loop (in a thread) for every example of a run

    def __init__(self) -> None:
        super().__init__()
        assert self.portal is not None, "run the machine under a portal (see test_store_matches_the_model)"
        self._tmp = tempfile.TemporaryDirectory(prefix="store-machine-")
        self.clock: FakeClock | None = None if self.kind == "redis" else FakeClock()
        self.opened: OpenedStore | None = None
        self.model: StoreModel | None = None
        self.version = 0

    @property
    def now(self) -> float:
        return self.clock() if self.clock is not None else 0.0

    def call(self, name: str, *args: Any) -> Any:
        assert self.opened is not None
        return self.portal.call(getattr(self.opened.store, name), *args)

    @initialize(data=st.data())
    def open(self, data: st.DataObject) -> None:
        retentions = UNTIMED_RETENTIONS if self.kind == "redis" else TIMED_RETENTIONS
        retention = data.draw(st.sampled_from(retentions), label="retention")
        self.model = StoreModel(retention)
        self.opened = self.portal.call(
            lambda: open_store(
                self.kind, retention, clock=self.clock, tmp_dir=Path(self._tmp.name), redis_url=self.redis_url
            )
        )

    def teardown(self) -> None:
        try:
            if self.opened is not None:
                self.portal.call(self.opened.close)
        finally:
            self._tmp.cleanup()

    def _put(self, job: Job) -> None:
        assert self.model is not None
        stored = self.call("put", job, request_for(self.version) if job.pending else None)
        assert stored == self.model.put(job, self.now), job

    @rule(client=st.sampled_from(CLIENTS), job_id=st.sampled_from(JOB_IDS))
    def put_running(self, client: str, job_id: str) -> None:
        self.version += 1
        self._put(progressed(job_id, client, output=self.version))

    @rule(client=st.sampled_from(CLIENTS), job_id=st.sampled_from(JOB_IDS), ok=st.booleans())
    def put_finished(self, client: str, job_id: str, ok: bool) -> None:
        self.version += 1
        self._put(finished(job_id, client, output=self.version) if ok else failed(job_id, client, str(self.version)))

    @rule(client=st.sampled_from(CLIENTS), ids=st.lists(st.sampled_from((*JOB_IDS, "unknown")), max_size=6))
    def get(self, client: str, ids: list[str]) -> None:
        assert self.model is not None
        assert list(map(unstamped, self.call("get", client, ids))) == self.model.get(client, ids, self.now)

    @rule()
    def expire_running(self) -> None:
        assert self.model is not None
        assert self.call("expire_running") == self.model.expire_running(self.now)

    @rule(client=st.sampled_from(CLIENTS), pending=st.sampled_from((None, True, False)))
    def ids(self, client: str, pending: bool | None) -> None:
        assert self.model is not None
        assert self.call("ids", client, pending) == self.model.ids(client, pending, self.now)

    @precondition(lambda self: self.clock is not None)
    @rule(seconds=st.integers(min_value=1, max_value=6))
    def advance(self, seconds: int) -> None:
        assert self.clock is not None
        self.clock.advance(seconds)

    @precondition(lambda self: self.kind == "sqlite")
    @rule()
    def reopen(self) -> None:
        """Close and reopen the file: everything stays, and the live running jobs are reported."""
        assert self.opened is not None and self.model is not None
        self.portal.call(self.opened.reopen)
        reported = self.call("interrupted")
        self.model.expire(self.now)
        expected = {key: e.job for key, e in self.model.entries.items() if e.job.pending}
        assert {(job.client, job.id): job for job, _ in reported} == expected
        assert all(request is not None for _, request in reported)
        assert self.call("interrupted") == []  # reported once

    # A rule, not an invariant: a read after every step would hide a store that expires
    # only when read.
    @rule()
    def pending_count(self) -> None:
        assert self.model is not None
        assert self.call("pending_count") == self.model.pending_count(self.now)


@pytest.mark.timeout(300)  # passing takes seconds; shrinking a failure can take a minute
def test_store_matches_the_model(kind: str, redis_url_if_needed: str | None) -> None:
    examples = {"memory": 100, "sqlite": 60, "redis": 15}[kind]
    with anyio.from_thread.start_blocking_portal("asyncio") as portal:
        attributes = {"kind": kind, "redis_url": redis_url_if_needed, "portal": portal}
        machine = type(f"StoreMachine_{kind}", (StoreMachine,), attributes)
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=examples,
                stateful_step_count=30,
                deadline=None,
                database=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
