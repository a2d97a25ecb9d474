"""Process-level faults, with real processes only: the ``infernet-node`` command, a real
``redis-server`` and real container services, all on loopback.

* SQLite and ``kill -9``: every job id a client was given survives the node dying mid-run
  and ends in a terminal state after a restart on the same file (failed with the stopped
  reason, or run again with ``rerun_interrupted``); results finished before stay readable.
* Two replicas on one Redis behave as one node (results, listings, ``/info`` pending counts,
  ``PUT /api/status``); each job runs once, on the replica that accepted it, and nothing is
  taken over while both live. When one is killed under load, every accepted id ends in a
  terminal state through the survivor within ``claim_idle`` and a few seconds (the survivor
  takes over the dead replica's jobs once its lease expires).
* Redis stopped and restarted under a running node: the node answers 503 with a JSON error
  while it is down (``/health`` still answers, the process lives on), and serves again once
  it is back on the same port, without being restarted.

Every process is started here and killed by its PID at teardown, whatever happens.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    CLIENT_A,
    CLIENT_B,
    NodeProcess,
    ServiceProcess,
    get_result,
    start_node,
    start_services,
    submit,
    tag,
    wait_done,
)
from support.redis_server import redis_available, start_redis

from infernet_core.node import STOPPED_REASON

pytestmark = pytest.mark.e2e

SLOW = 2.0
"""Seconds the ``slow`` service takes: long enough to kill a node while its jobs are in flight."""
SLOWISH = 0.3
"""Seconds the ``slowish`` service takes, for the load on two replicas."""
STOPPED = {"container": "", "error": STOPPED_REASON}
CLAIM_IDLE = 1.0
"""``store.claim_idle`` of the replica tests: seconds a dead replica's lease lasts."""
"""The ``result`` of a job whose node stopped (or died) while running it."""


# -- fixtures: every process is killed by PID at teardown -----------------------------------


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, ServiceProcess]]:
    """``fast``, ``slow`` (SLOW seconds) and ``slowish`` (SLOWISH seconds) container services."""
    started: dict[str, ServiceProcess] = {}
    try:
        started.update(start_services({"fast": "fast", "slow": "slow"}, delay=SLOW))
        started.update(start_services({"slowish": "slow"}, delay=SLOWISH))
        yield started
    finally:
        for service in started.values():
            service.kill()


class Processes:
    """The nodes and Redis servers a test starts; :meth:`kill_all` kills what still runs."""

    def __init__(self) -> None:
        self.nodes: list[NodeProcess] = []
        self.redis: list[subprocess.Popen[bytes]] = []

    def node(self, directory: Path, config: dict[str, Any]) -> NodeProcess:
        node = start_node(directory, config)
        self.nodes.append(node)
        return node

    def redis_server(self, directory: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
        proc, port = start_redis(directory, port)
        self.redis.append(proc)
        return proc, port

    def kill_all(self) -> None:
        for node in self.nodes:
            kill9(node)
        for proc in self.redis:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)


@pytest.fixture
def procs() -> Iterator[Processes]:
    started = Processes()
    try:
        yield started
    finally:
        started.kill_all()


# -- helpers ------------------------------------------------------------------------------------


def kill9(node: NodeProcess) -> int | None:
    """SIGKILL the node by PID (if it still runs), reap it, close its log; its exit status."""
    if node.proc.poll() is None:
        os.kill(node.pid, signal.SIGKILL)
        node.proc.wait(5)
    node.stop()  # only closes the log of a process that has exited
    return node.proc.returncode


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(0.02)


def wait_all_done(http: httpx.Client, ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Poll ``GET /api/jobs?id=...`` (500 ids at a time) until none of ``ids`` is running."""
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    waiting = list(ids)
    while waiting:
        for start in range(0, len(waiting), 500):
            chunk = waiting[start : start + 500]
            response = http.get("/api/jobs", params=[("id", job_id) for job_id in chunk])
            assert response.status_code == 200, response.text
            results.update((result["id"], result) for result in response.json())
        missing = [job_id for job_id in waiting if job_id not in results]
        assert not missing, f"{len(missing)} accepted ids are unknown, e.g. {missing[:3]}"
        waiting = [job_id for job_id in waiting if results[job_id]["status"] == "running"]
        if waiting:
            assert time.monotonic() < deadline, f"{len(waiting)} of {len(ids)} jobs still running after {timeout}s"
            time.sleep(0.1)
    return results


def logged_at(line: str) -> float:
    """The time (epoch seconds) of a node's log line, from its ``%(asctime)s`` (local time)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def node_config(services: dict[str, ServiceProcess], store: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "containers": [{"id": name, "url": service.url} for name, service in services.items()],
        "store": store,
        **extra,
    }


def redis_store(url: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "redis", "url": url, "prefix": f"faults-{uuid.uuid4().hex[:8]}", **extra}


def store_unavailable(response: httpx.Response) -> bool:
    """A 503 whose JSON body says the result store is unavailable."""
    if response.status_code != 503:
        return False
    body = response.json()
    return set(body) <= {"error", "params"} and body["error"].startswith("Result store unavailable")


# -- SQLite: kill -9 and restart ------------------------------------------------------------------


@pytest.mark.parametrize("rerun", [False, True], ids=["fail-interrupted", "rerun-interrupted"])
def test_sqlite_kill9_then_restart_ends_every_accepted_job(
    tmp_path: Path, services: dict[str, ServiceProcess], procs: Processes, rerun: bool
) -> None:
    store = {"kind": "sqlite", "path": str(tmp_path / "results.db")}
    config = node_config(services, store, rerun_interrupted=rerun)
    node = procs.node(tmp_path, config)
    marker = tag()
    with node.client() as http:
        finished = [submit(http, ["fast"], {"n": n}) for n in range(3)]
        for job_id in finished:
            assert wait_done(http, job_id)["status"] == "success"
        in_flight = [submit(http, ["slow"], {"tag": marker, "n": n}) for n in range(5)]
        # Every job has reached the container (which takes SLOW seconds): truly mid-run.
        wait_until(lambda: len(services["slow"].calls_tagged(marker)) == 5, 5.0, "calls reach the slow service")
        assert {get_result(http, job_id)["status"] for job_id in in_flight} == {"running"}

    assert kill9(node) == -signal.SIGKILL

    restarted = procs.node(tmp_path, config)
    with restarted.client(CLIENT_A) as http, restarted.client(CLIENT_B) as other:
        for n, job_id in enumerate(finished):
            result = get_result(http, job_id)
            assert result["status"] == "success"
            assert result["result"]["output"]["echo"] == {"n": n}
        results = wait_all_done(http, in_flight, timeout=SLOW + 5)
        for n, job_id in enumerate(in_flight):
            if rerun:
                assert results[job_id]["status"] == "success", results[job_id]
                assert results[job_id]["result"]["output"]["echo"] == {"tag": marker, "n": n}
            else:
                assert results[job_id]["status"] == "failed", results[job_id]
                assert results[job_id]["result"] == STOPPED
        # Listed as finished, to their client only; nothing is left pending.
        assert set(http.get("/api/jobs", params={"pending": "false"}).json()) == {*finished, *in_flight}
        assert http.get("/api/jobs", params={"pending": "true"}).json() == []
        assert http.get("/info").json()["pending"]["offchain"] == 0
        assert other.get("/api/jobs", params={"id": in_flight[0]}).json() == []
    # A rerun calls the container again; a failed job does not.
    assert len(services["slow"].calls_tagged(marker)) == (10 if rerun else 5)
    assert restarted.stop() == 0, restarted.output()


# -- Redis: two replicas ---------------------------------------------------------------------------


def test_two_replicas_on_redis_behave_as_one_node(
    tmp_path: Path, services: dict[str, ServiceProcess], procs: Processes, redis_url: str
) -> None:
    config = node_config(services, redis_store(redis_url, claim_idle=CLAIM_IDLE))
    a, b = procs.node(tmp_path, config), procs.node(tmp_path, config)
    with a.client() as via_a, b.client() as via_b, b.client(CLIENT_B) as other_via_b:
        # Submitted through A: readable and listed through B by the same client, not by another.
        job_id = submit(via_a, ["fast"], {"x": 1})
        result = wait_done(via_b, job_id)
        assert result["status"] == "success" and result["result"]["output"]["echo"] == {"x": 1}
        assert via_b.get("/api/jobs").json() == [job_id]
        assert other_via_b.get("/api/jobs", params={"id": job_id}).json() == []
        assert other_via_b.get("/api/jobs").json() == []

        # Pending counts are cluster-wide: both replicas count the jobs either accepted.
        marker = tag()
        slow = [submit(via_a, ["slow"], {"tag": marker}) for _ in range(3)]
        slow += [submit(via_b, ["slow"], {"tag": marker}) for _ in range(2)]
        assert a.proc.poll() is None and b.proc.poll() is None
        counts = [client.get("/info").json()["pending"]["offchain"] for client in (via_a, via_b, via_a)]
        assert counts == [5, 5, 5]
        assert set(via_a.get("/api/jobs", params={"pending": "true"}).json()) == set(slow)
        assert set(via_b.get("/api/jobs", params={"pending": "true"}).json()) == set(slow)

        # PUT /api/status through one replica is visible through the other.
        legacy = str(uuid.uuid4())
        update = {"id": legacy, "status": "running", "containers": ["fast"]}
        assert via_a.put("/api/status", json=update).status_code == 200
        assert get_result(via_b, legacy)["status"] == "running"
        assert via_b.put("/api/status", json={**update, "status": "success"}).status_code == 200
        assert get_result(via_a, legacy)["status"] == "success"
        response = via_a.put("/api/status", json={**update, "status": "failed"})
        assert response.status_code == 409, response.text

        results = wait_all_done(via_b, slow, timeout=SLOW + 5)
        assert {r["status"] for r in results.values()} == {"success"}
        assert via_a.get("/info").json()["pending"]["offchain"] == 0
    assert len(services["slow"].calls_tagged(marker)) == 5  # each ran once, on one replica or the other
    for node in (a, b):
        output = node.output()
        assert "took over job" not in output, output[-3000:]  # nothing is taken from a live replica
        assert "lease of replica" not in output or "had expired" not in output, output[-3000:]
    assert a.stop() == 0, a.output()
    assert b.stop() == 0, b.output()


LOAD_SECONDS = 1.6
KILL_AFTER = 0.7
THREADS_PER_REPLICA = 2


@pytest.mark.parametrize("rerun", [True, False], ids=["rerun-interrupted", "fail-interrupted"])
def test_replica_killed_under_load_every_accepted_job_ends_on_the_survivor(
    tmp_path: Path, services: dict[str, ServiceProcess], procs: Processes, redis_url: str, rerun: bool
) -> None:
    config = node_config(services, redis_store(redis_url, claim_idle=CLAIM_IDLE), rerun_interrupted=rerun)
    survivor, victim = procs.node(tmp_path, config), procs.node(tmp_path, config)
    accepted: list[tuple[str, str]] = []  # (job id, replica that returned it)
    refused: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    victim_killed = threading.Event()
    failures: list[BaseException] = []

    def load(node: NodeProcess, name: str) -> None:
        try:
            with node.client() as http:
                n = 0
                while not stop.is_set():
                    n += 1
                    try:
                        response = http.post("/api/jobs", json={"containers": ["slowish"], "data": {"n": n}})
                    except httpx.TransportError:
                        if node is not victim or not victim_killed.is_set():
                            raise
                        return  # the victim is dead: no id can come from it now
                    with lock:
                        if response.status_code == 200:
                            accepted.append((response.json()["id"], name))
                        else:
                            refused.append(response.status_code)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    threads = [
        threading.Thread(target=load, args=(node, name), daemon=True)
        for node, name in ((survivor, "survivor"), (victim, "victim"))
        for _ in range(THREADS_PER_REPLICA)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(KILL_AFTER)
        victim_killed.set()
        assert kill9(victim) == -signal.SIGKILL
        killed_at, killed_wall = time.monotonic(), time.time()
        time.sleep(LOAD_SECONDS - KILL_AFTER)
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    by_replica = {name: sum(1 for _, who in accepted if who == name) for name in ("survivor", "victim")}
    assert by_replica["victim"] > 0 and by_replica["survivor"] > 0, by_replica
    ids = [job_id for job_id, _ in accepted]
    assert len(set(ids)) == len(ids)

    with survivor.client() as http:
        if not rerun:
            # Failed at once when taken over: the victim's jobs end within claim_idle (its
            # lease expiring) and a few seconds of the kill.
            wait_all_done(http, [job_id for job_id, who in accepted if who == "victim"], timeout=CLAIM_IDLE + 4)
            assert time.monotonic() - killed_at < CLAIM_IDLE + 4
        # Every accepted id ends; reruns queue behind the survivor's own backlog of the load.
        results = wait_all_done(http, ids, timeout=30)
    outcomes: dict[str, int] = {}
    for job_id in ids:
        result = results[job_id]
        if rerun or result["status"] == "success":
            assert result["status"] == "success", result
            assert set(result["result"]["output"]["echo"]) == {"n"}
            outcomes["success"] = outcomes.get("success", 0) + 1
        else:
            assert result["status"] == "failed" and result["result"] == STOPPED, result
            outcomes["stopped"] = outcomes.get("stopped", 0) + 1
    # The victim was running jobs when it died, and the survivor took them over (each once)
    # within claim_idle and a few seconds of the kill.
    output = survivor.output()
    taken = [line for line in output.splitlines() if "took over job" in line]
    assert taken, output[-3000:]
    own = {job_id for job_id, who in accepted if who == "survivor"}
    taken_ids = [line.split("took over job ", 1)[1].split()[0] for line in taken]
    # (The victim may have stored a job whose id it died before returning: taken over too.)
    assert len(taken_ids) == len(set(taken_ids)) and own.isdisjoint(taken_ids)
    last_taken = max(logged_at(line) for line in taken) - killed_wall
    assert last_taken < CLAIM_IDLE + 3, last_taken
    if not rerun:
        assert outcomes.get("stopped", 0) > 0, (outcomes, by_replica)
    assert survivor.proc.poll() is None
    assert survivor.stop() == 0, output[-3000:]
    print(
        f"accepted {by_replica}, outcomes {outcomes}, refused {len(refused)},"
        f" the last take-over {last_taken:.1f}s after the kill"
    )


# -- Redis stopped and restarted under a running node -------------------------------------------------


def test_redis_restart_under_a_running_node(
    tmp_path: Path, services: dict[str, ServiceProcess], procs: Processes
) -> None:
    if not redis_available():
        pytest.fail("redis-server is not installed: run scripts/test.sh, or apt-get install -y redis-server")
    redis_dir = tmp_path / "redis"
    redis, port = procs.redis_server(redis_dir)
    node = procs.node(tmp_path, node_config(services, redis_store(f"redis://127.0.0.1:{port}/0")))
    marker = tag()
    with node.client() as http:
        done = submit(http, ["fast"], {"x": 1})
        assert wait_done(http, done)["status"] == "success"
        # A job mid-run while Redis goes away: it stores its result once Redis is back.
        in_flight = submit(http, ["slow"], {"tag": marker})
        wait_until(lambda: len(services["slow"].calls_tagged(marker)) == 1, 5.0, "the slow job reaches its container")

        os.kill(redis.pid, signal.SIGTERM)
        redis.wait(5)

        # Everything that needs the store: 503 with a JSON error, answered promptly.
        started = time.monotonic()
        requests = [
            http.build_request("POST", "/api/jobs", json={"containers": ["fast"], "data": {}}),
            http.build_request("POST", "/api/jobs/batch", json=[{"containers": ["fast"], "data": {}}]),
            http.build_request("GET", "/api/jobs", params={"id": done}),
            http.build_request("GET", "/api/jobs"),
            http.build_request("GET", "/info"),
            http.build_request("PUT", "/api/status", json={"id": "x", "status": "running", "containers": []}),
        ]
        for request in requests:
            response = http.send(request)
            if request.url.path == "/api/jobs/batch":
                # A batch answers 200 with one entry per item; the entry is the store's error.
                assert response.status_code == 200, response.text
                [entry] = response.json()
                assert entry["error"].startswith("Result store unavailable"), entry
            else:
                assert store_unavailable(response), (request.method, request.url, response.status_code, response.text)
        assert time.monotonic() - started < 10
        # /health does not touch the store: the process is alive and says so.
        assert http.get("/health").json() == {"status": "healthy"}
        assert node.proc.poll() is None

        # Redis back on the same port (empty: it keeps nothing): the node serves again by itself.
        procs.redis_server(redis_dir, port)
        deadline = time.monotonic() + 15
        while True:
            response = http.post("/api/jobs", json={"containers": ["fast"], "data": {"after": True}})
            if response.status_code == 200:
                break
            assert store_unavailable(response), response.text
            assert time.monotonic() < deadline, "the node did not serve again within 15 s of Redis coming back"
            time.sleep(0.1)
        result = wait_done(http, response.json()["id"])
        assert result["status"] == "success" and result["result"]["output"]["echo"] == {"after": True}
        # The job that was running while Redis was away stores its result when it ends (the
        # restarted Redis is empty, so until then nothing knows the job: []).
        deadline = time.monotonic() + SLOW + 10
        while True:
            response = http.get("/api/jobs", params={"id": in_flight})
            assert response.status_code == 200, response.text
            if response.json() and response.json()[0]["status"] != "running":
                break
            assert time.monotonic() < deadline, f"job {in_flight} did not end: {response.text}"
            time.sleep(0.05)
        [result] = response.json()
        assert result["status"] == "success" and result["result"]["output"]["echo"] == {"tag": marker}
    assert node.proc.poll() is None
    assert node.stop() == 0, node.output()
    assert "Traceback" not in node.output()
