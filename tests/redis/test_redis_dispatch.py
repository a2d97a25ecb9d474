"""Many replicas on one Redis: nodes sharing the store behave as one node, each runs the jobs
it accepts (once), and the jobs of a replica whose lease expired are taken over by exactly
one survivor.

Replicas are Nodes in this process (each with its own RedisBackend, so its own connection
pool, replica id and lease thread), except in the SIGKILL test, where one is a separate
process (``replica.py``). ``claim_idle`` is 1 s throughout (the lease is renewed every
0.2 s, expired leases are looked for every 0.25 s), so a take-over happens within ~1.5 s.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from anyio.abc import TaskGroup
from support.redis_server import free_port, start_redis, stop_redis

from infernet_asgi import InfernetApp
from infernet_core import ContainerInput, JobRequest, Node, NodeConfig
from infernet_core.errors import StoreUnavailable
from infernet_core.jobs import Job, JobAborted, apply, new_job
from infernet_core.node import STOPPED_REASON
from infernet_core.stores.redis import RedisBackend, RedisLeaseDispatcher

pytestmark = pytest.mark.anyio

BackendFactory = Callable[..., RedisBackend]
"""The ``make_backend`` fixture (tests/redis/conftest.py)."""

CLAIM_IDLE = 1.0
PREFIX = "infernet"
REPLICA = Path(__file__).resolve().parent / "replica.py"


class Replica:
    """A Node on a RedisBackend, with in-process containers that record what they ran.

    Containers: ``echo`` (returns its data), ``slow`` (sleeps ``data["sleep"] * pace`` seconds,
    then returns its data), ``gated`` (waits for ``gate``, then returns its data), ``busy``
    (keeps the event loop busy, without awaiting, for ``data["busy"]`` seconds).
    """

    def __init__(
        self, name: str, backend: RedisBackend, gate: anyio.Event, *, rerun: bool = False, pace: float = 1.0
    ) -> None:
        self.name = name
        self.runs: list[tuple[str, Any]] = []
        self.started = anyio.Event()
        config = NodeConfig(shutdown_grace=0.2, rerun_interrupted=rerun)
        self.dispatcher = backend.dispatcher(claim_idle=CLAIM_IDLE)
        self.node = Node(config, store=backend.store, dispatcher=self.dispatcher)
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

        @self.node.container("busy")
        async def busy(payload: ContainerInput) -> Any:
            self.runs.append(("busy", payload.data))
            end = time.monotonic() + float(payload.data["busy"])
            while time.monotonic() < end:  # holds the event loop (and the GIL, but for switches)
                pass
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
    client = aioredis.Redis.from_url(redis_url_clean, decode_responses=True)
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
        jobs = await node.results([job_id], client)
        if not jobs:
            return False
        result.update(id=jobs[0].id, status=jobs[0].status, result=jobs[0].result)
        return jobs[0].status != "running"

    await eventually(done, timeout)
    return result


async def owned_jobs(raw: aioredis.Redis) -> dict[str, set[str]]:
    """Every replica's running set: replica id -> the ``{tag}\\n{id}`` it owns."""
    sets = [key async for key in raw.scan_iter(match=f"{PREFIX}:running:*")]
    return {key.rsplit(":", 1)[1]: set(await raw.smembers(key)) for key in sets}


async def nothing_owned(raw: aioredis.Redis) -> bool:
    return not any((await owned_jobs(raw)).values()) and not await raw.keys(f"{PREFIX}:meta:*")


async def registry(raw: aioredis.Redis) -> set[str]:
    return set(await raw.smembers(f"{PREFIX}:replicas"))


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


class Spawned:
    """A ``spawn`` that records what it is handed and runs nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[Job, JobRequest | None, bool]] = []

    def __call__(self, job: Job, request: JobRequest | None, interrupted: bool) -> None:
        self.calls.append((job, request, interrupted))


def some_job(n: int, client: str = "::1", container: str = "echo") -> tuple[Job, JobRequest]:
    request = JobRequest(containers=[container], data={"n": n})
    return new_job(f"job-{n}", client, request.containers, created_at=0.0), request


async def dead_replica(backend: RedisBackend, jobs: list[tuple[Job, JobRequest]]) -> str:
    """A replica that accepted ``jobs`` (stored them, as a node would) and then died: its
    lease is no longer renewed and it never stops cleanly. Returns its id."""
    await backend.store.open()
    dispatcher = backend.dispatcher(claim_idle=CLAIM_IDLE)
    spawned = Spawned()
    async with anyio.create_task_group() as tg:
        await dispatcher.start(tg, spawned)
        for job, request in jobs:
            await backend.store.put(job, request)
            await dispatcher.dispatch(job, request)
        assert dispatcher.lease is not None and dispatcher.replica is not None
        await anyio.to_thread.run_sync(dispatcher.lease.stop)  # dies: no renewal, no clean stop
        tg.cancel_scope.cancel()
    dead = dispatcher.replica
    assert [call[2] for call in spawned.calls] == [False] * len(jobs)  # it ran them itself, at once
    # Forget it without a clean stop (which would delete its lease): only its pool is closed.
    dispatcher.replica = dispatcher.lease = None
    backend.replica = None
    await dispatcher.aclose()
    return dead


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
        # Every job ran exactly once, on the replica that accepted it.
        assert a.runs == [("echo", {"n": n}) for n in range(6)]
        assert b.runs == []
        assert await nothing_owned(raw)
        assert await registry(raw) == {a.dispatcher.replica, b.dispatcher.replica}
    # A clean stop deletes the lease and leaves the registry.
    assert await raw.keys(f"{PREFIX}:lease:*") == []
    assert await registry(raw) == set()


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
        assert a.dispatcher.replica is not None
        owned = await owned_jobs(raw)
        assert {m.split("\n")[1] for m in owned[a.dispatcher.replica]} == set(ids)

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
        # Finished through either replica, every job has left its owner's running set.
        assert await nothing_owned(raw)


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
    assert b.dispatcher.taken_over == 0
    assert a.dispatcher.lease is None  # stopped
    assert await nothing_owned(raw)


# -- load: nothing is taken from a live replica, every job runs once --------------------------------


async def test_one_replica_under_load_keeps_its_lease_and_runs_each_job_once(
    replica: ReplicaFactory, make_backend: BackendFactory, raw: aioredis.Redis
) -> None:
    """1000 jobs submitted at once, and the event loop held busy for longer than the lease
    lasts: the lease thread renews it all along, so a watching replica takes nothing over."""
    a = replica("a")
    watcher_backend = make_backend()
    await watcher_backend.store.open()
    watcher = watcher_backend.dispatcher(claim_idle=CLAIM_IDLE)
    watched = Spawned()
    async with running(a), anyio.create_task_group() as tg:
        await watcher.start(tg, watched)
        lease = a.dispatcher.lease
        assert lease is not None
        renewals = lease.renewals
        ids: list[str] = []

        async def submit(n: int) -> None:
            job_id = await a.node.submit(JobRequest(containers=["echo"], data={"n": n}), "::1")
            assert job_id is not None
            ids.append(job_id)

        async with anyio.create_task_group() as load:
            load.start_soon(submit, -1)
            for n in range(1000):
                load.start_soon(submit, n)
        busy_id = await a.node.submit(JobRequest(containers=["busy"], data={"busy": 1.5 * CLAIM_IDLE}), "::1")
        await wait_status(a.node, "::1", busy_id, timeout=10)
        # The lease was renewed while the loop was busy (every 0.2 s), never found lapsed.
        assert lease.renewals - renewals >= 6
        for job_id in ids:
            assert (await wait_status(a.node, "::1", job_id, timeout=20))["status"] == "success"
        await anyio.sleep(2 * watcher.recover_every)  # the watcher has looked, since
        assert lease.lapses == 0
        assert watcher.taken_over == 0 and watched.calls == []
        assert a.dispatcher.taken_over == 0
        tg.cancel_scope.cancel()
    await watcher.aclose()
    counts = Counter(data["n"] for name, data in a.runs if name == "echo")
    assert counts == Counter(range(-1, 1000))  # each job exactly once
    assert await nothing_owned(raw)


async def test_two_replicas_sharing_the_load_run_each_job_exactly_once(
    replica: ReplicaFactory, raw: aioredis.Redis
) -> None:
    a, b = replica("a"), replica("b")
    accepted: dict[str, tuple[str, int]] = {}
    async with running(a, b):

        async def submit(rep: Replica, n: int) -> None:
            job_id = await rep.node.submit(JobRequest(containers=["echo"], data={"n": n, "via": rep.name}), "::1")
            assert job_id is not None
            accepted[job_id] = (rep.name, n)

        async with anyio.create_task_group() as load:
            for n in range(300):
                load.start_soon(submit, a, n)
                load.start_soon(submit, b, n)
        for job_id in accepted:
            assert (await wait_status(b.node, "::1", job_id, timeout=20))["status"] == "success"
        assert a.dispatcher.taken_over == b.dispatcher.taken_over == 0
        assert a.dispatcher.lease is not None and b.dispatcher.lease is not None
        assert a.dispatcher.lease.lapses == b.dispatcher.lease.lapses == 0
    assert len(accepted) == 600
    # Each job ran exactly once, on the replica that accepted it.
    for rep in (a, b):
        assert sorted(data["n"] for _, data in rep.runs) == list(range(300))
        assert {data["via"] for _, data in rep.runs} == {rep.name}
    assert await nothing_owned(raw)


# -- taking over from a replica that died -----------------------------------------------------------


@pytest.mark.parametrize("rerun", [False, True])
async def test_the_jobs_of_a_dead_replica_are_finished_by_a_survivor(
    replica: ReplicaFactory, make_backend: BackendFactory, raw: aioredis.Redis, rerun: bool
) -> None:
    jobs = [some_job(n, client="2001:db8::1") for n in range(3)]
    dead = await dead_replica(make_backend(), jobs)
    died = anyio.current_time()
    assert await registry(raw) == {dead}
    survivor = replica("survivor", rerun=rerun)
    async with running(survivor):
        statuses = [await wait_status(survivor.node, "2001:db8::1", job.id, timeout=5) for job, _ in jobs]
        assert anyio.current_time() - died < CLAIM_IDLE + 2
        assert await registry(raw) == {survivor.dispatcher.replica}  # the dead one is forgotten
        assert await nothing_owned(raw)
    assert survivor.dispatcher.taken_over == 3
    if rerun:
        assert [s["status"] for s in statuses] == ["success"] * 3
        assert [s["result"].output for s in statuses] == [{"n": n} for n in range(3)]
        assert sorted(data["n"] for _, data in survivor.runs) == [0, 1, 2]
    else:
        assert {s["status"] for s in statuses} == {"failed"}
        assert {s["result"].error for s in statuses} == {STOPPED_REASON}
        assert survivor.runs == []


async def test_jobs_are_taken_only_once_the_lease_expired_and_only_if_still_running(
    make_backend: BackendFactory, raw: aioredis.Redis
) -> None:
    """A dead replica's jobs wait for its lease to expire; one that finished meanwhile (through
    another replica) is not taken over. The taker gets the job and its request, interrupted."""
    jobs = [some_job(n) for n in range(2)]
    dead = await dead_replica(make_backend(), jobs)
    other = make_backend()
    await other.store.open()
    job, _ = jobs[1]
    assert await other.store.put(apply(job, JobAborted(container="", reason="ended elsewhere"), now=1.0))
    owned = await owned_jobs(raw)
    assert [m.split("\n")[1] for m in owned[dead]] == ["job-0"]  # released by its terminal put
    survivor_backend = make_backend()
    await survivor_backend.store.open()
    survivor = survivor_backend.dispatcher(claim_idle=CLAIM_IDLE)
    spawned = Spawned()
    async with anyio.create_task_group() as tg:
        await survivor.start(tg, spawned)
        assert await survivor.recover() == 0  # the lease still holds
        assert await registry(raw) == {dead, survivor.replica}
        await eventually(lambda: _true(len(spawned.calls) == 1), timeout=CLAIM_IDLE + 2)
        [(taken, request, interrupted)] = spawned.calls
        assert (taken, request, interrupted) == (*jobs[0], True)
        assert await registry(raw) == {survivor.replica}
        owned = await owned_jobs(raw)
        assert survivor.replica is not None and dead not in owned
        assert [m.split("\n")[1] for m in owned[survivor.replica]] == ["job-0"]
        assert await survivor.recover() == 0  # taken once only
        me = survivor.replica
        tg.cancel_scope.cancel()
    await survivor.aclose()
    assert survivor.taken_over == 1
    # Its stop found a job still its own (nothing ran it here): it stays registered, lease-less,
    # for another replica to take over at once.
    assert await raw.keys(f"{PREFIX}:lease:*") == []
    assert await registry(raw) == {me}


@pytest.mark.parametrize("rerun", [False, True])
async def test_a_job_of_a_node_stopped_mid_run_is_taken_over(
    replica: ReplicaFactory, raw: aioredis.Redis, rerun: bool
) -> None:
    a = replica("a", rerun=rerun)
    b = replica("b", rerun=rerun, pace=0.0)  # B's "slow" does not sleep: a rerun ends at once
    async with cluster() as nodes:
        await nodes.start(a)
        await nodes.start(b)
        job_id = await a.node.submit(JobRequest(containers=["slow"], data={"sleep": 60}), "::1")
        await a.started.wait()
        stopped = anyio.current_time()
        await nodes.stop(a)  # A's task group is cancelled with the job half done
        status = await wait_status(b.node, "::1", job_id, timeout=4 * CLAIM_IDLE)
        await eventually(lambda: nothing_owned(raw))
        if rerun:
            # A left it running for a rerun and deleted its lease: B took it at its next look.
            assert anyio.current_time() - stopped < CLAIM_IDLE
    if rerun:
        assert status["status"] == "success"
        assert b.runs == [("slow", {"sleep": 60})]
        assert b.dispatcher.taken_over == 1
    else:
        # A failed it as it stopped; B had nothing to take over.
        assert status["status"] == "failed"
        assert status["result"].error == STOPPED_REASON
        assert b.runs == []
        assert b.dispatcher.taken_over == 0
    assert a.runs == [("slow", {"sleep": 60})]


async def test_a_replica_that_stops_renewing_its_lease_loses_its_jobs_to_exactly_one_survivor(
    replica: ReplicaFactory, raw: aioredis.Redis
) -> None:
    a = replica("a")  # alive, but its lease thread stops: as if it were cut off from Redis
    b, c = replica("b", rerun=True, pace=0.0), replica("c", rerun=True, pace=0.0)
    async with running(a, b, c):
        ids = [
            await a.node.submit(JobRequest(containers=["slow"], data={"sleep": 60, "n": n}), "::1") for n in range(6)
        ]
        await eventually(lambda: _true(len(a.runs) == 6))
        assert a.dispatcher.lease is not None
        await anyio.to_thread.run_sync(a.dispatcher.lease.stop)
        stopped = anyio.current_time()
        for job_id in ids:
            assert job_id is not None
            assert (await wait_status(b.node, "::1", job_id, timeout=CLAIM_IDLE + 3))["status"] == "success"
        assert anyio.current_time() - stopped < CLAIM_IDLE + 2
        # B and C both looked; each job was taken by one of them, and run by it once.
        assert b.dispatcher.taken_over + c.dispatcher.taken_over == 6
        reruns = [data["n"] for _, data in b.runs + c.runs]
        assert sorted(reruns) == list(range(6))
        assert a.dispatcher.replica not in await registry(raw)
        assert await nothing_owned(raw)


async def test_a_killed_replica_process_is_taken_over(
    replica: ReplicaFactory, raw: aioredis.Redis, redis_url_clean: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(REPLICA), redis_url_clean, str(tmp_path), str(CLAIM_IDLE)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
        word, job_id = line.decode().split()
        assert word == "ready"
        await eventually(lambda: _true((tmp_path / "k1").exists()), timeout=10)
        assert len(await registry(raw)) == 1
        proc.kill()  # SIGKILL, by PID: no clean-up of any kind
        proc.wait(5)
        killed = anyio.current_time()
        survivor = replica("survivor", rerun=True, pace=0.0)
        async with running(survivor):
            status = await wait_status(survivor.node, "::1", job_id, timeout=CLAIM_IDLE + 3)
            assert anyio.current_time() - killed < CLAIM_IDLE + 2
            assert await nothing_owned(raw)
            assert await registry(raw) == {survivor.dispatcher.replica}
        assert status["status"] == "success"
        assert survivor.runs == [("slow", {"name": "k1", "sleep": 60})]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


async def test_a_restarted_replica_is_a_new_one(make_backend: BackendFactory, raw: aioredis.Redis) -> None:
    backend = make_backend()
    await backend.store.open()
    dispatcher = backend.dispatcher(claim_idle=CLAIM_IDLE)
    seen = []
    for _ in range(2):
        async with anyio.create_task_group() as tg:
            await dispatcher.start(tg, Spawned())
            seen.append(dispatcher.replica)
            assert backend.replica == dispatcher.replica
            assert await registry(raw) == {dispatcher.replica}
            assert await raw.pttl(f"{PREFIX}:lease:{dispatcher.replica}") > 0
            tg.cancel_scope.cancel()
        await dispatcher.aclose()
        assert backend.replica is None and dispatcher.replica is None
        assert await registry(raw) == set()
    assert len(set(seen)) == 2


async def test_start_fails_fast_when_redis_is_unreachable(make_backend: BackendFactory) -> None:
    dispatcher = make_backend(url=f"redis://127.0.0.1:{free_port()}/0").dispatcher(claim_idle=CLAIM_IDLE)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        with pytest.raises(StoreUnavailable, match="cannot reach Redis"):
            await dispatcher.start(tg, Spawned())
    assert dispatcher.replica is None and dispatcher.lease is None
    assert time.monotonic() - started < 5
    await dispatcher.aclose()


async def test_dispatch_runs_the_job_here_at_once(make_backend: BackendFactory) -> None:
    backend = make_backend()
    dispatcher = backend.dispatcher(claim_idle=CLAIM_IDLE)
    assert isinstance(dispatcher, RedisLeaseDispatcher)
    with pytest.raises(RuntimeError, match="not started"):
        await dispatcher.dispatch(*some_job(0))
    spawned = Spawned()
    async with anyio.create_task_group() as tg:
        await dispatcher.start(tg, spawned)
        await dispatcher.dispatch(*some_job(1))
        assert spawned.calls == [(*some_job(1), False)]
        tg.cancel_scope.cancel()
    await dispatcher.aclose()


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
            # The lease thread took the lost lease afresh and registered the replica again.
            lease = a.dispatcher.lease
            assert lease is not None
            await eventually(lambda: _true(lease.lapses == 1), timeout=3)
            check = aioredis.Redis.from_url(url, decode_responses=True)
            try:
                assert await check.smembers(f"{PREFIX}:replicas") == {a.dispatcher.replica}
            finally:
                await check.aclose()
            assert a.dispatcher.taken_over == 0
    finally:
        stop_redis(proc)


async def _true(value: bool) -> bool:
    return value
