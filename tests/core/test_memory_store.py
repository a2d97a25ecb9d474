"""MemoryResultStore specifics; its behaviour is covered by tests/stores/test_store_behaviour.py."""

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


async def test_without_max_finished_the_store_still_caps_itself() -> None:
    from infernet_core.stores.memory import DEFAULT_MAX_FINISHED

    store = MemoryResultStore()
    for index in range(DEFAULT_MAX_FINISHED + 1):
        await store.put(finished(f"j{index}"))
    assert len(store) == DEFAULT_MAX_FINISHED
    assert await store.get("c1", ["j0", "j1"]) == [finished("j1")]
