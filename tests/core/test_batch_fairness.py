"""Big batches are fair: admitted in slices that let the event loop serve others in between,
each slice written by the store as one group, every request answered in order."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from infernet_core import ContainerInput, LocalContainer, Node, NodeConfig
from infernet_core.models import JobRequest
from infernet_core.node import BATCH_SLICE
from infernet_core.stores.sqlite import SqliteResultStore

pytestmark = pytest.mark.anyio

ITEMS = 1000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(payload: ContainerInput) -> Any:
    return payload.data


def node_on(store: str, tmp_path: Path) -> Node:
    sqlite = SqliteResultStore(tmp_path / "jobs.db") if store == "sqlite" else None
    return Node(NodeConfig(), store=sqlite, containers=[LocalContainer("echo", echo)])


@pytest.mark.parametrize("store", ["memory", "sqlite"])
async def test_a_maximal_batch_lets_the_loop_serve_others_between_slices(store: str, tmp_path: Path) -> None:
    ticks = 0
    done = anyio.Event()

    async def other_client() -> None:
        nonlocal ticks
        while not done.is_set():
            await anyio.sleep(0)
            ticks += 1

    requests = [JobRequest(containers=["echo"], data={"n": n}) for n in range(ITEMS)]
    async with node_on(store, tmp_path) as node, anyio.create_task_group() as tg:
        tg.start_soon(other_client)
        await anyio.sleep(0)
        entries = await node.submit_batch(requests, "c")
        done.set()
    assert all(isinstance(entry, str) for entry in entries) and len(set(entries)) == ITEMS
    # The other client ran at least once between every two slices.
    assert ticks >= ITEMS // BATCH_SLICE


async def test_each_slice_is_one_group_write_on_sqlite(tmp_path: Path) -> None:
    store = SqliteResultStore(tmp_path / "jobs.db")
    node = Node(NodeConfig(), store=store, containers=[LocalContainer("echo", echo)])
    statements: list[str] = []
    requests = [JobRequest(containers=["echo"], data={"n": n}) for n in range(ITEMS)]
    async with node:
        db = store._db
        assert isinstance(db, sqlite3.Connection)
        db.set_trace_callback(statements.append)
        entries = await node.submit_batch(requests, "c")
        db.set_trace_callback(None)
        listed = await node.job_ids("c")
    slices = -(-ITEMS // BATCH_SLICE)
    # One commit per slice of admissions (jobs finishing meanwhile may share or add a few).
    assert slices <= statements.count("COMMIT") <= 3 * slices
    assert sorted(listed) == sorted(entries)
