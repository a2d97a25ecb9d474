"""Many replicas on one Redis: nodes sharing the store and the job stream behave as one node,
and the jobs of a replica that dies are taken over by a survivor.

Replicas are Nodes in this process (each with its own RedisBackend, so its own connection
pool and consumer), except in the SIGKILL test, where one is a separate process
(``replica.py``). ``claim_idle`` is 1 s throughout, so a take-over happens within ~1.5 s.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from anyio.abc import TaskGroup
from support.redis_server import start_redis, stop_redis

from infernet_asgi import InfernetApp
from infernet_core import ContainerInput, JobRequest, Node, NodeConfig
from infernet_core.dispatch import AfterRun
from infernet_core.errors import NodeNotRunning, StoreUnavailable
from infernet_core.jobs import Job, new_job
from infernet_core.node import STOPPED_REASON
from infernet_core.stores.redis import RedisBackend, RedisStreamDispatcher

pytestmark = pytest.mark.anyio

BackendFactory = Callable[..., RedisBackend]
"""The ``make_backend`` fixture (tests/redis/conftest.py)."""

CLAIM_IDLE = 1.0
STREAM = "infernet:jobs"
GROUP = "infernet:nodes"
REPLICA = Path(__file__).resolve().parent / "replica.py"


class Replica:
    """A Node on a RedisBackend, with in-process containers that record where they ran.

    Containers: ``echo`` (returns its data), ``slow`` (sleeps ``data["sleep"] * pace`` seconds,
    then returns its data), ``gated`` (waits for ``gate``, then returns its data).
    """

    def __init__(
        self, name: str, backend: RedisBackend, gate: anyio.Event, *, rerun: bool = False, pace: float = 1.0
    ) -> None:
        self.name = name
        self.runs: list[tuple[str, Any]] = []
        self.started = anyio.Event()
        config = NodeConfig(shutdown_grace=0.2, rerun_interrupted=rerun)
        self.node = Node(config, store=backend.store, dispatcher=backend.dispatcher(claim_idle=CLAIM_IDLE))
        self.app = InfernetApp(self.node)

        @self.node.container("echo")
        async def echo(payload: ContainerInput) -> Any:
            self.runs.append(("echo", payload.data))
            return payload.data

        @self.node.container("slow")
        async def slow(payload: ContainerInput) -> Any:
            self.runs.append(("slow", payload.data))
            self.started.set()
            await anyio.sleep(float(payload.data["sleep"]) * pace)
            return payload.data

        @self.node.container("gated")
        async def gated(payload: ContainerInput) -> Any:
            self.runs.append(("gated", payload.data))
            self.started.set()
            await gate.wait()
            return payload.data

    def client(self, address: str = "::1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(self.app, client=(address, 4321))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")


ReplicaFactory = Callable[..., Replica]


@pytest.fixture
def gate() -> anyio.Event:
    return anyio.Event()


@pytest.fixture
def replica(make_backend: BackendFactory, gate: anyio.Event) -> ReplicaFactory:
    def make(name: str, *, rerun: bool = False, pace: float = 1.0, url: str | None = None) -> Replica:
        return Replica(name, make_backend(url=url), gate, rerun=rerun, pace=pace)

    return make


@pytest.fixture
async def raw(redis_url_clean: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url_clean)
    yield client
    await client.aclose()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.02)


async def wait_status(node: Node, client: str, job_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """Poll ``node`` until the job has finished; return its JobResult as a dict."""
    result: dict[str, Any] = {}

    async def done() -> bool:
        jobs = await node.results(client, [job_id])
        if not jobs:
            return False
        result.update(id=jobs[0].id, status=jobs[0].status, result=jobs[0].result)
        return jobs[0].status != "running"

    await eventually(done, timeout)
    return result


async def stream_is_empty(raw: aioredis.Redis) -> bool:
    if await raw.xlen(STREAM):
        return False
    return (await raw.xpending(STREAM, GROUP))["pending"] == 0


class Cluster:
    """Starts and stops replicas in one task group, in any order."""

    def __init__(self, tg: TaskGroup) -> None:
        self._tg = tg
        self._stops: dict[Replica, tuple[anyio.Event, anyio.Event]] = {}

    async def start(self, rep: Replica) -> None:
        started, stop, stopped = anyio.Event(), anyio.Event(), anyio.Event()

        async def serve() -> None:
            try:
                async with rep.node:
                    started.set()
                    await stop.wait()
            finally:
                stopped.set()

        self._tg.start_soon(serve)
        await started.wait()
        self._stops[rep] = (stop, stopped)

    async def stop(self, rep: Replica) -> None:
        """Stop ``rep``'s node: after its shutdown grace its task group is cancelled."""
        stop, stopped = self._stops.pop(rep)
        stop.set()
        await stopped.wait()

    async def stop_all(self) -> None:
        for rep in list(self._stops):
            await self.stop(rep)


@asynccontextmanager
async def cluster() -> AsyncIterator[Cluster]:
    async with anyio.create_task_group() as tg:
        nodes = Cluster(tg)
        try:
            yield nodes
        finally:
            await nodes.stop_all()


@asynccontextmanager
async def running(*replicas: Replica) -> AsyncIterator[None]:
    async with cluster() as nodes:
        for rep in replicas:
            await nodes.start(rep)
        yield


# -- one node to clients --------------------------------------------------------------------------


async def test_a_job_submitted_through_a_is_readable_through_b(replica: ReplicaFactory, raw: aioredis.Redis) -> None:
    a, b = replica("a"), replica("b")
    async with running(a, b), a.client() as via_a, b.client() as via_b, b.client("2001:db8::7") as stranger:
        ids = []
        for n in range(6):
            response = await via_a.post("/api/jobs", json={"containers": ["echo"], "data": {"n": n}})
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        for n, job_id in enumerate(ids):
            status = await wait_status(b.node, "::1", job_id)
            assert status["status"] == "success"
            assert status["result"].output == {"n": n}
        response = await via_b.get("/api/jobs", params=[("id", i) for i in ids])
        assert [r["id"] for r in response.json()] == ids
        assert {r["status"] for r in response.json()} == {"success"}
        assert (await via_b.get("/api/jobs")).json() == ids
        assert (await via_b.get("/api/jobs", params={"pending": "false"})).json() == ids
        # Scoping holds across replicas: another client sees nothing.
        assert (await stranger.get("/api/jobs")).json() == []
        assert (await stranger.get("/api/jobs", params={"id": ids[0]})).json() == []
        # Every job ran exactly once, on one replica or the other.
        assert sorted(data["n"] for _, data in a.runs + b.runs) == list(range(6))
        await eventually(lambda: stream_is_empty(raw))


async def test_pending_counts_and_status_are_cluster_wide(
    replica: ReplicaFactory, gate: anyio.Event, raw: aioredis.Redis
) -> None:
    a, b = replica("a"), replica("b")
    async with running(a, b), a.client() as via_a, b.client() as via_b:
        ids = []
        for n in range(3):
            response = await via_a.post("/api/jobs", json={"containers": ["gated"], "data": {"n": n}})
            ids.append(response.json()["id"])
        for via in (via_a, via_b):
            assert (await via.get("/info")).json()["pending"]["offchain"] == 3
            assert (await via.get("/api/jobs", params={"pending": "true"})).json() == ids

        # PUT /api/status through B is visible through A (and counts as pending).
        body = {"id": "legacy", "status": "running", "containers": ["echo"]}
        assert (await via_b.put("/api/status", json=body)).status_code == 200
        assert (await via_a.get("/api/jobs", params={"id": "legacy"})).json() == [
            {"id": "legacy", "status": "running", "result": None}
        ]
        assert (await via_a.get("/info")).json()["pending"]["offchain"] == 4
        assert (await via_a.put("/api/status", json={**body, "status": "success"})).status_code == 200
        assert (await via_b.put("/api/status", json={**body, "status": "failed"})).status_code == 409
        assert (await via_b.get("/api/jobs", params={"id": "legacy"})).json()[0]["status"] == "success"

        gate.set()
        for job_id in ids:
            assert (await wait_status(a.node, "::1", job_id))["status"] == "success"
        assert (await via_b.get("/info")).json()["pending"]["offchain"] == 0
        await eventually(lambda: stream_is_empty(raw))


async def test_a_long_job_is_not_taken_from_a_live_replica(replica: ReplicaFactory, raw: aioredis.Redis) -> None:
    a = replica("a")
    b = replica("b")
    async with running(a):
        job_id = await a.node.submit(JobRequest(containers=["slow"], data={"sleep": 3 * CLAIM_IDLE}), "::1")
        await a.started.wait()
        async with running(b):
            status = await wait_status(b.node, "::1", job_id, timeout=10)
    assert status["status"] == "success"
    assert len(a.runs) == 1
    assert b.runs == []
    assert await stream_is_empty(raw)


# -- taking over from a replica that died -----------------------------------------------------------


async def queue_taken_by_dead_consumer(backend: RedisBackend, raw: aioredis.Redis, data: dict[str, Any]) -> str:
    """Submit a job as a node would (store, then stream) and let a consumer take it and die."""
    await backend.store.open()
    request = JobRequest(containers=["echo"], data=data)
    job = new_job("job-1", "2001:db8::1", request.containers, created_at=0.0)
    await backend.store.put(job, request)
    await backend.dispatcher(claim_idle=CLAIM_IDLE).dispatch(job, request)
    await raw.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    taken = await raw.xreadgroup(GROUP, "dead-replica", {STREAM: ">"}, count=10)
    assert len(taken[0][1]) == 1
    return job.id


@pytest.mark.parametrize("rerun", [False, True])
async def test_a_job_taken_by_a_dead_consumer_is_finished_by_a_survivor(
    replica: ReplicaFactory, make_backend: BackendFactory, raw: aioredis.Redis, rerun: bool
) -> None:
    job_id = await queue_taken_by_dead_consumer(make_backend(), raw, {"v": 1})
    survivor = replica("survivor", rerun=rerun)
    async with running(survivor):
        started = anyio.current_time()
        await anyio.sleep(CLAIM_IDLE / 2)
        [job] = await survivor.node.results("2001:db8::1", [job_id])
        assert job.status == "running"  # not taken before claim_idle
        status = await wait_status(survivor.node, "2001:db8::1", job_id, timeout=5)
        assert anyio.current_time() - started < 3 * CLAIM_IDLE
        await eventually(lambda: stream_is_empty(raw))
    if rerun:
        assert status["status"] == "success"
        assert status["result"].output == {"v": 1}
        assert survivor.runs == [("echo", {"v": 1})]
    else:
        assert status["status"] == "failed"
        assert status["result"].error == STOPPED_REASON
        assert survivor.runs == []


@pytest.mark.parametrize("rerun", [False, True])
async def test_a_job_of_a_node_stopped_mid_run_is_taken_over(
    replica: ReplicaFactory, raw: aioredis.Redis, rerun: bool
) -> None:
    a = replica("a", rerun=rerun)
    b = replica("b", rerun=rerun, pace=0.0)  # B's "slow" does not sleep: a rerun ends at once
    async with cluster() as nodes:
        await nodes.start(a)
        # A alone reads the stream, so A takes the job; B joins once it runs there.
        job_id = await a.node.submit(JobRequest(containers=["slow"], data={"sleep": 60}), "::1")
        await a.started.wait()
        await nodes.start(b)
        await nodes.stop(a)  # A's task group is cancelled with the job half done
        status = await wait_status(b.node, "::1", job_id, timeout=4 * CLAIM_IDLE)
        await eventually(lambda: stream_is_empty(raw), timeout=4 * CLAIM_IDLE)
    if rerun:
        assert status["status"] == "success"
        assert b.runs == [("slow", {"sleep": 60})]
    else:
        # A failed it as it stopped; B only acknowledged the entry.
        assert status["status"] == "failed"
        assert status["result"].error == STOPPED_REASON
        assert b.runs == []


async def test_a_killed_replica_process_is_taken_over(
    replica: ReplicaFactory, make_backend: BackendFactory, raw: aioredis.Redis, redis_url_clean: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPLICA), redis_url_clean, str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
        assert line.strip() == b"ready"
        backend = make_backend()
        await backend.store.open()
        request = JobRequest(containers=["slow"], data={"name": "k1", "sleep": 60})
        job = new_job("killed-1", "::1", request.containers, created_at=0.0)
        await backend.store.put(job, request)  # what Node.submit does: store, then queue
        await backend.dispatcher(claim_idle=CLAIM_IDLE).dispatch(job, request)
        await eventually(lambda: _exists(tmp_path / "k1"), timeout=10)
        proc.kill()  # SIGKILL, by PID: no clean-up of any kind
        proc.wait(5)
        survivor = replica("survivor", rerun=True, pace=0.0)
        async with running(survivor):
            status = await wait_status(survivor.node, "::1", job.id, timeout=4 * CLAIM_IDLE)
            await eventually(lambda: stream_is_empty(raw))
        assert status["status"] == "success"
        assert survivor.runs == [("slow", {"name": "k1", "sleep": 60})]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


async def _exists(path: Path) -> bool:
    return path.exists()


# -- Redis restarts -----------------------------------------------------------------------------------


async def test_nodes_survive_a_redis_restart(replica: ReplicaFactory, gate: anyio.Event, tmp_path: Path) -> None:
    proc, port = start_redis(tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        a = replica("a", url=url)
        async with running(a), a.client() as http:
            response = await http.post("/api/jobs", json={"containers": ["echo"], "data": {"n": 1}})
            done_id = response.json()["id"]
            assert (await wait_status(a.node, "::1", done_id))["status"] == "success"
            response = await http.post("/api/jobs", json={"containers": ["gated"], "data": {"n": 2}})
            gated_id = response.json()["id"]
            await a.started.wait()

            stop_redis(proc)
            expected = f"Result store unavailable: cannot reach Redis at {url}: "
            for response in (
                await http.get("/api/jobs", params={"id": done_id}),
                await http.get("/api/jobs"),
                await http.post("/api/jobs", json={"containers": ["echo"], "data": {}}),
                await http.get("/info"),
                await http.put("/api/status", json={"id": "x", "status": "running", "containers": []}),
            ):
                assert response.status_code == 503, response.text
                assert response.json()["error"].startswith(expected)
            for call in (a.node.store.get("::1", [done_id]), a.node.store.pending_count()):
                with pytest.raises(StoreUnavailable):
                    await call
            gate.set()  # the job ends while Redis is down: the node holds its result for it
            await anyio.sleep(0.3)
            assert a.node.running

            proc, _ = start_redis(tmp_path, port=port)  # empty: it kept nothing
            status = await wait_status(a.node, "::1", gated_id, timeout=5)
            assert status["status"] == "success"
            assert status["result"].output == {"n": 2}
            response = await http.post("/api/jobs", json={"containers": ["echo"], "data": {"n": 3}})
            assert response.status_code == 200, response.text
            assert (await wait_status(a.node, "::1", response.json()["id"]))["status"] == "success"
            assert (await http.get("/info")).json()["pending"]["offchain"] == 0
    finally:
        stop_redis(proc)


# -- the dispatcher alone -------------------------------------------------------------------------------


class Spawned:
    """A ``spawn`` that records what it is handed and runs nothing."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.calls: list[tuple[Job, JobRequest | None, bool, AfterRun | None]] = []

    def __call__(self, job: Job, request: JobRequest | None, interrupted: bool, after: AfterRun | None) -> None:
        if self.refuse:
            raise NodeNotRunning("Node is not running")
        self.calls.append((job, request, interrupted, after))


def some_job(n: int) -> tuple[Job, JobRequest]:
    request = JobRequest(containers=["echo"], data={"n": n})
    return new_job(f"job-{n}", "::1", request.containers, created_at=0.0), request


async def test_in_flight_jobs_are_capped(make_backend: BackendFactory, raw: aioredis.Redis) -> None:
    backend = make_backend()
    dispatcher = RedisStreamDispatcher(backend, claim_idle=CLAIM_IDLE, max_in_flight=2)
    spawned = Spawned()
    async with anyio.create_task_group() as tg:
        await dispatcher.start(tg, spawned)
        for n in range(5):
            await dispatcher.dispatch(*some_job(n))
        await eventually(lambda: _true(len(spawned.calls) == 2))
        await anyio.sleep(0.2)
        assert len(spawned.calls) == 2
        assert (await raw.xpending(STREAM, GROUP))["pending"] == 2
        # Each job's `after` acknowledges (and deletes) its entry and frees a slot.
        for n in range(5):
            await eventually(lambda n=n: _true(len(spawned.calls) > n))
            job, request, interrupted, after = spawned.calls[n]
            assert (job.id, request, interrupted) == (f"job-{n}", some_job(n)[1], False)
            assert after is not None
            await after()
        await eventually(lambda: stream_is_empty(raw))
        tg.cancel_scope.cancel()
    await dispatcher.aclose()


async def test_a_stopping_node_gives_its_entries_back(make_backend: BackendFactory, raw: aioredis.Redis) -> None:
    stopping = RedisStreamDispatcher(make_backend(), claim_idle=CLAIM_IDLE)
    async with anyio.create_task_group() as tg:
        await stopping.start(tg, Spawned(refuse=True))
        await stopping.dispatch(*some_job(1))

        async def given_back() -> bool:
            info = await raw.xinfo_stream(STREAM)
            pending = (await raw.xpending(STREAM, GROUP))["pending"]
            return pending == 0 and info["length"] == 1 and info["entries-added"] == 2

        await eventually(given_back)
        tg.cancel_scope.cancel()
    # Another replica takes it as a fresh job, not an interrupted one.
    spawned = Spawned()
    other = RedisStreamDispatcher(make_backend(), claim_idle=CLAIM_IDLE)
    async with anyio.create_task_group() as tg:
        await other.start(tg, spawned)
        await eventually(lambda: _true(len(spawned.calls) == 1))
        job, _, interrupted, _ = spawned.calls[0]
        assert (job.id, interrupted) == ("job-1", False)
        tg.cancel_scope.cancel()
    await stopping.aclose()
    await other.aclose()


async def test_dead_consumers_with_nothing_pending_are_forgotten(
    make_backend: BackendFactory, raw: aioredis.Redis
) -> None:
    dispatcher = RedisStreamDispatcher(make_backend(), claim_idle=30)  # holder's entry stays put
    dispatcher.forget_idle = 0.2
    await raw.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    await raw.xgroup_createconsumer(STREAM, GROUP, "ghost")  # a consumer that never comes back
    await raw.xadd(STREAM, {"junk": "1"})
    await raw.xreadgroup(GROUP, "holder", {STREAM: ">"}, count=1)  # dead, but holds an entry
    await anyio.sleep(0.3)

    async def consumers() -> set[str]:
        return {c["name"].decode() for c in await raw.xinfo_consumers(STREAM, GROUP)}

    assert await consumers() == {"ghost", "holder"}
    async with anyio.create_task_group() as tg:
        await dispatcher.start(tg, Spawned())
        await eventually(lambda: _true_async(consumers(), lambda names: "ghost" not in names))
        assert "holder" in await consumers()  # never one with entries pending
        tg.cancel_scope.cancel()
    await dispatcher.aclose()


async def _true(value: bool) -> bool:
    return value


async def _true_async(value: Awaitable[Any], test: Callable[[Any], bool]) -> bool:
    return test(await value)
