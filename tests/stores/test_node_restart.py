"""Restart semantics of a Node on a sqlite file.

A job that was running when its node died must neither stay running forever nor vanish: the
next node on the file fails it with STOPPED_REASON, or runs it again when
``rerun_interrupted`` is set. Finished results survive. A "crash" is made two ways: by writing
what a killed node leaves (running rows with their requests, no terminal put) with a store of
our own, and by really killing (SIGKILL) a node run in a child process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from infernet_core import ContainerInput, Node, NodeConfig
from infernet_core.config import StoreConfig
from infernet_core.jobs import new_job
from infernet_core.models import ContainerError, ContainerOutput, JobRequest, JobResult
from infernet_core.node import STOPPED_REASON
from infernet_core.stores.sqlite import SqliteResultStore

pytestmark = pytest.mark.anyio

CLIENT = "2001:db8::1"
STOPPED = ContainerError(container="", error=STOPPED_REASON)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def config(path: Path, *, rerun: bool = False) -> NodeConfig:
    return NodeConfig(store=StoreConfig(kind="sqlite", path=str(path)), rerun_interrupted=rerun, shutdown_grace=0.05)


def work_request(n: int) -> JobRequest:
    return JobRequest(containers=["work"], data={"n": n})


class Work:
    """The ``work`` container: records its inputs; blocks forever while ``block`` is set."""

    def __init__(self, *, block: bool = False) -> None:
        self.block = block
        self.seen: list[dict[str, Any]] = []
        self.started = 0

    async def __call__(self, payload: ContainerInput) -> Any:
        self.seen.append(payload.data)
        self.started += 1
        if self.block:
            await anyio.sleep_forever()
        return {"did": payload.data["n"]}

    def attach(self, node: Node) -> Node:
        node.container("work")(self)
        return node


async def settled(node: Node, ids: Sequence[str], timeout: float = 10.0) -> list[JobResult]:
    """The results of ``ids`` once none is running."""
    with anyio.fail_after(timeout):
        while True:
            results = await node.results(ids, CLIENT)
            if len(results) == len(ids) and all(r.status != "running" for r in results):
                return results
            await anyio.sleep(0.01)


async def leave_as_killed(path: Path, running: int, finished: int = 1) -> tuple[list[str], list[str]]:
    """Write what a node killed mid-run leaves: finished jobs, and running ones with requests."""
    store = SqliteResultStore(path)
    await store.open()
    done_ids = [f"done-{n}" for n in range(finished)]
    running_ids = [f"cut-{n}" for n in range(running)]
    now = time.time()
    for n, job_id in enumerate(done_ids):
        job = new_job(job_id, CLIENT, ["work"], created_at=now)
        await store.put(job, work_request(100 + n))
        ok = new_job(job_id, CLIENT, ["work"], created_at=now, status="success")
        await store.put(ok)
    for n, job_id in enumerate(running_ids):
        await store.put(new_job(job_id, CLIENT, ["work"], created_at=now), work_request(n))
    await store.aclose()  # no terminal put for the running ones
    return done_ids, running_ids


# -- after a crash ---------------------------------------------------------------------------------


async def test_interrupted_jobs_fail_with_the_stopped_reason(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    done_ids, cut_ids = await leave_as_killed(path, running=3)
    work = Work()
    async with work.attach(Node(config(path))) as node:
        results = await settled(node, cut_ids)
        assert [(r.id, r.status, r.result) for r in results] == [(i, "failed", STOPPED) for i in cut_ids]
        assert [r.status for r in await node.results(done_ids, CLIENT)] == ["success"]
        assert await node.job_ids(CLIENT, pending=True) == []
        assert await node.job_ids(CLIENT, pending=False) == done_ids + cut_ids
        assert (await node.info()).pending.offchain == 0
    assert work.seen == []  # not run again

    # final: the next node finds nothing interrupted and keeps the failures
    async with Work().attach(Node(config(path, rerun=True))) as node:
        await anyio.sleep(0.05)
        results = await node.results(cut_ids, CLIENT)
        assert [(r.status, r.result) for r in results] == [("failed", STOPPED)] * 3


async def test_interrupted_jobs_run_again_when_configured(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    done_ids, cut_ids = await leave_as_killed(path, running=3)
    work = Work()
    async with work.attach(Node(config(path, rerun=True))) as node:
        results = await settled(node, cut_ids)
        assert [(r.id, r.status) for r in results] == [(i, "success") for i in cut_ids]
        assert [r.result for r in results] == [ContainerOutput(container="work", output={"did": n}) for n in range(3)]
        assert [r.status for r in await node.results(done_ids, CLIENT)] == ["success"]
        assert await node.job_ids(CLIENT, pending=True) == []
    # run once each, on the data of the original request
    assert sorted(work.seen, key=lambda d: d["n"]) == [{"n": n} for n in range(3)]


async def test_an_interrupted_job_without_its_request_fails_even_with_rerun(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    store = SqliteResultStore(path)
    await store.open()
    await store.put(new_job("reported", CLIENT, ["work"], created_at=time.time()))  # no request kept
    await store.aclose()
    work = Work()
    async with work.attach(Node(config(path, rerun=True))) as node:
        [result] = await settled(node, ["reported"])
        assert (result.status, result.result) == ("failed", STOPPED)
    assert work.seen == []


CHILD = textwrap.dedent(
    """
    import json, sys
    import anyio
    from infernet_core import Node, NodeConfig
    from infernet_core.config import StoreConfig
    from infernet_core.models import JobRequest

    path, client = sys.argv[1], sys.argv[2]

    async def main():
        node = Node(NodeConfig(store=StoreConfig(kind="sqlite", path=path)))

        @node.container("work")
        async def work(payload):
            if payload.data.get("block"):
                await anyio.sleep_forever()
            return {"did": payload.data["n"]}

        async with node:
            quick = await node.submit(JobRequest(containers=["work"], data={"n": -1}), client)
            while (await node.results([quick], client))[0].status == "running":
                await anyio.sleep(0.01)
            blocked = [
                await node.submit(JobRequest(containers=["work"], data={"n": n, "block": True}), client)
                for n in range(3)
            ]
            print(json.dumps({"finished": quick, "running": blocked}), flush=True)
            await anyio.sleep_forever()

    anyio.run(main)
    """
)


@pytest.mark.parametrize("rerun", [False, True], ids=["fail", "rerun"])
async def test_a_node_killed_with_sigkill(tmp_path: Path, rerun: bool) -> None:
    """The real thing: a node in a child process is SIGKILLed with jobs running."""
    path = tmp_path / "node.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), str(path), CLIENT], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert child.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(child.stdout.readline)
        assert line, child.stderr.read().decode() if child.stderr else "no output"
        ids = json.loads(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()
    assert child.returncode == -signal.SIGKILL

    work = Work()
    async with work.attach(Node(config(path, rerun=rerun))) as node:  # the dead node's lock is gone
        results = await settled(node, ids["running"])
        if rerun:
            expected = [ContainerOutput(container="work", output={"did": n}) for n in range(3)]
            assert [(r.status, r.result) for r in results] == list(zip(["success"] * 3, expected, strict=True))
            assert sorted(work.seen, key=lambda d: d["n"]) == [{"n": n, "block": True} for n in range(3)]
        else:
            assert [(r.status, r.result) for r in results] == [("failed", STOPPED)] * 3
            assert work.seen == []
        [before] = await node.results([ids["finished"]], CLIENT)
        assert (before.status, before.result) == ("success", ContainerOutput(container="work", output={"did": -1}))


# -- after a graceful shutdown -------------------------------------------------------------------------


async def test_graceful_shutdown_with_rerun_leaves_jobs_for_the_next_node(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    blocking = Work(block=True)
    async with blocking.attach(Node(config(path, rerun=True))) as node:
        blocking.block = False
        quick = await node.submit(work_request(-1), CLIENT)
        await settled(node, [quick])
        blocking.block = True
        cut = [await node.submit(work_request(n), CLIENT) for n in range(2)]
        with anyio.fail_after(5):
            while blocking.started < 3:
                await anyio.sleep(0.01)
    # the node stopped with both jobs unfinished: they are still running in the file
    store = SqliteResultStore(path)
    await store.open()
    try:
        assert await store.ids(CLIENT, pending=True) == cut
    finally:
        await store.aclose()

    work = Work()
    async with work.attach(Node(config(path, rerun=True))) as node:
        results = await settled(node, cut)
        assert [(r.status, r.result) for r in results] == [
            ("success", ContainerOutput(container="work", output={"did": n})) for n in range(2)
        ]
        [before] = await node.results([quick], CLIENT)
        assert (before.status, before.result) == ("success", ContainerOutput(container="work", output={"did": -1}))
    assert sorted(work.seen, key=lambda d: d["n"]) == [{"n": 0}, {"n": 1}]


async def test_graceful_shutdown_without_rerun_fails_jobs_at_once(tmp_path: Path) -> None:
    path = tmp_path / "node.db"
    blocking = Work(block=True)
    async with blocking.attach(Node(config(path))) as node:
        cut = [await node.submit(work_request(n), CLIENT) for n in range(2)]
        with anyio.fail_after(5):
            while blocking.started < 2:
                await anyio.sleep(0.01)
    store = SqliteResultStore(path)
    await store.open()
    try:
        assert await store.interrupted() == []
        assert [(j.status, j.error) for j in await store.get(CLIENT, cut)] == [("failed", STOPPED)] * 2
    finally:
        await store.aclose()

    work = Work()
    async with work.attach(Node(config(path, rerun=True))) as node:
        await anyio.sleep(0.05)
        assert [r.status for r in await node.results(cut, CLIENT)] == ["failed", "failed"]
    assert work.seen == []
