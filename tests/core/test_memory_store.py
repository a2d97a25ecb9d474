"""MemoryResultStore, with an injected clock."""

from __future__ import annotations

import pytest

from infernet_core import MemoryResultStore, ResultStore
from infernet_core.jobs import ContainerSucceeded, Job, JobCompleted, JobState, apply, new_job
from infernet_core.models import ContainerOutput
from infernet_core.store import Retention

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def running(job_id: str, client: str = "c1") -> Job:
    return new_job(job_id, client, ["a"], created_at=0.0)


def finished(job_id: str, client: str = "c1", output: object = None) -> Job:
    job = apply(running(job_id, client), ContainerSucceeded(output=ContainerOutput(container="a", output=output)))
    return apply(job, JobCompleted(), now=1.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryResultStore:
    return MemoryResultStore(Retention(max_finished=3, pending_ttl=10.0), clock=clock)


def test_is_a_result_store() -> None:
    assert isinstance(MemoryResultStore(), ResultStore)


@pytest.mark.parametrize("bad", [0, -1])
def test_max_finished_must_be_positive(bad: int) -> None:
    with pytest.raises(ValueError, match="max_finished"):
        Retention(max_finished=bad)


async def test_put_then_get(store: MemoryResultStore) -> None:
    job = running("j1")
    await store.put(job)
    assert await store.get("c1", ["j1"]) == [job]
    done = finished("j1", output={"v": 1})
    await store.put(done)
    assert await store.get("c1", ["j1"]) == [done]
    assert len(store) == 1


async def test_get_order_unknown_and_repeated_ids(store: MemoryResultStore) -> None:
    a, b, c = running("a"), finished("b"), running("c")
    for job in (a, b, c):
        await store.put(job)
    assert await store.get("c1", ["c", "missing", "a", "b", "a", "c"]) == [c, a, b]
    assert await store.get("c1", []) == []
    assert await store.get("c1", ["missing"]) == []


async def test_jobs_are_scoped_per_client(store: MemoryResultStore) -> None:
    mine = running("same", "10.0.0.1")
    theirs = finished("same", "10.0.0.2", output="theirs")
    await store.put(mine)
    await store.put(theirs)
    assert await store.get("10.0.0.1", ["same"]) == [mine]
    assert await store.get("10.0.0.2", ["same"]) == [theirs]
    assert await store.get("10.0.0.3", ["same"]) == []
    assert await store.ids("10.0.0.1") == ["same"]
    assert await store.ids("10.0.0.1", pending=False) == []
    assert await store.ids("10.0.0.2", pending=True) == []
    assert await store.ids("10.0.0.2", pending=False) == ["same"]
    assert await store.ids("nobody") == []
    # finishing one client's job does not touch the other's
    await store.put(finished("same", "10.0.0.1", output="mine"))
    [job] = await store.get("10.0.0.2", ["same"])
    assert job.outputs[0].output == "theirs"
    assert len(store) == 2


async def test_ids_pending_then_finished_in_insertion_order(store: MemoryResultStore) -> None:
    for job_id in ("p1", "f1", "p2", "f2", "p3"):
        await store.put(running(job_id))
    await store.put(finished("f1"))
    await store.put(finished("f2"))
    assert await store.ids("c1", pending=True) == ["p1", "p2", "p3"]
    assert await store.ids("c1", pending=False) == ["f1", "f2"]
    assert await store.ids("c1") == ["p1", "p2", "p3", "f1", "f2"]
    assert await store.ids("c1", pending=None) == ["p1", "p2", "p3", "f1", "f2"]


async def test_putting_running_again_keeps_one_entry(store: MemoryResultStore) -> None:
    await store.put(running("j"))
    await store.put(running("j"))
    assert await store.ids("c1") == ["j"]
    assert await store.pending_count() == 1
    assert len(store) == 1


async def test_pending_count_across_clients(store: MemoryResultStore) -> None:
    assert await store.pending_count() == 0
    await store.put(running("a", "x"))
    await store.put(running("a", "y"))
    await store.put(running("b", "y"))
    await store.put(finished("c", "y"))
    assert await store.pending_count() == 3
    await store.put(finished("a", "y"))
    assert await store.pending_count() == 2


async def test_pending_ttl_expiry(store: MemoryResultStore, clock: FakeClock) -> None:
    await store.put(running("old"))
    clock.advance(6)
    await store.put(running("new"))
    await store.put(finished("done"))
    clock.advance(3.9)  # old at 9.9 s: still there
    assert await store.pending_count() == 2
    assert [j.id for j in await store.get("c1", ["old", "new"])] == ["old", "new"]
    clock.advance(0.1)  # old at exactly 10 s: expired
    assert await store.pending_count() == 1
    assert await store.get("c1", ["old"]) == []
    assert await store.ids("c1") == ["new", "done"]
    clock.advance(6)  # new at 10 s: expired too; finished jobs never expire
    assert await store.pending_count() == 0
    assert await store.ids("c1") == ["done"]
    assert await store.ids("c1", pending=True) == []
    assert [j.id for j in await store.get("c1", ["new", "done"])] == ["done"]
    assert len(store) == 1


async def test_putting_running_again_renews_ttl(store: MemoryResultStore, clock: FakeClock) -> None:
    await store.put(running("a"))
    await store.put(running("b"))
    clock.advance(8)
    await store.put(running("a"))  # renewed: now expires at 18
    clock.advance(2)  # t=10: b expires, a does not
    assert await store.ids("c1", pending=True) == ["a"]
    clock.advance(7.9)
    assert await store.pending_count() == 1
    clock.advance(0.1)
    assert await store.pending_count() == 0


async def test_expired_job_can_still_finish(store: MemoryResultStore, clock: FakeClock) -> None:
    await store.put(running("slow"))
    clock.advance(11)
    assert await store.ids("c1") == []
    done = finished("slow")
    await store.put(done)
    assert await store.get("c1", ["slow"]) == [done]
    assert await store.ids("c1", pending=False) == ["slow"]


async def test_max_finished_evicts_oldest_finished(store: MemoryResultStore) -> None:
    await store.put(running("p"))
    for job_id in ("f1", "f2", "f3"):
        await store.put(finished(job_id))
    assert await store.ids("c1", pending=False) == ["f1", "f2", "f3"]
    await store.put(finished("f4", client="other"))
    # the oldest finished job (any client) is dropped; pending jobs are not touched
    assert await store.ids("c1", pending=False) == ["f2", "f3"]
    assert await store.get("c1", ["f1"]) == []
    assert await store.ids("other") == ["f4"]
    assert await store.ids("c1", pending=True) == ["p"]
    assert len(store) == 4
    await store.put(finished("p"))
    assert sorted(await store.ids("c1")) == ["f3", "p"]
    assert await store.ids("c1", pending=True) == []
    assert await store.get("c1", ["f2"]) == []
    assert len(store) == 3


async def test_eviction_order_follows_finish_time_not_creation(store: MemoryResultStore) -> None:
    for job_id in ("a", "b", "c"):
        await store.put(running(job_id))
    await store.put(finished("c"))
    await store.put(finished("a"))
    await store.put(finished("b"))
    await store.put(finished("d"))
    assert sorted(await store.ids("c1")) == ["a", "b", "d"]
    assert await store.put(finished("a")) is False  # finished is final: no move to newest
    await store.put(finished("e"))
    assert sorted(await store.ids("c1")) == ["b", "d", "e"]


async def test_max_finished_one(clock: FakeClock) -> None:
    store = MemoryResultStore(Retention(max_finished=1), clock=clock)
    await store.put(finished("a"))
    await store.put(finished("b"))
    assert await store.ids("c1") == ["b"]
    assert len(store) == 1


async def test_state_survives_round_trip(store: MemoryResultStore) -> None:
    job = finished("x", output=[1, {"k": "v"}])
    await store.put(job)
    [got] = await store.get("c1", ["x"])
    assert got.state is JobState.SUCCEEDED
    assert got.to_result().result == ContainerOutput(container="a", output=[1, {"k": "v"}])


async def test_aclose_is_a_no_op(store: MemoryResultStore) -> None:
    await store.put(running("a"))
    await store.aclose()
    assert await store.ids("c1") == ["a"]


async def test_finished_jobs_are_final(store: MemoryResultStore) -> None:
    done = finished("j1", output={"v": 1})
    assert await store.put(running("j1")) is True
    assert await store.put(done) is True
    assert await store.put(running("j1")) is False
    assert await store.put(finished("j1", output={"v": 2})) is False
    assert await store.get("c1", ["j1"]) == [done]
    assert await store.ids("c1", pending=True) == []


async def test_finished_ttl_expires_oldest_first(clock: FakeClock) -> None:
    store = MemoryResultStore(Retention(finished_ttl=5.0), clock=clock)
    await store.put(finished("a"))
    clock.advance(3)
    await store.put(finished("b"))
    clock.advance(2)  # a is 5 s old: gone; b is 2 s old: kept
    assert await store.ids("c1") == ["b"]
    assert await store.get("c1", ["a", "b"]) == [finished("b")]
    clock.advance(3)
    assert await store.ids("c1") == []
