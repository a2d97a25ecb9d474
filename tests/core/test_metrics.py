"""Node metrics: off by default for an embedded Node, and when on, counted where things
happen (jobs by status and container, container calls, store calls, pending jobs), read back
through Prometheus's own text parser."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from infernet_core import ContainerInput, LocalContainer, Node, NodeConfig
from infernet_core.config import ServerConfig
from infernet_core.metrics import InstrumentedStore
from infernet_core.models import JobRequest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(payload: ContainerInput) -> Any:
    return payload.data


async def boom(payload: ContainerInput) -> Any:
    raise RuntimeError("kaboom")


def samples(node: Node) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    assert node.metrics is not None
    text = node.metrics.render().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def wait_finished(node: Node, client: str, ids: list[str]) -> None:
    with anyio.fail_after(5):
        while any(r.status == "running" for r in await node.results(ids, client)) or len(
            await node.results(ids, client)
        ) < len(ids):
            await anyio.sleep(0.01)


async def test_an_embedded_node_makes_no_metrics() -> None:
    node = Node()
    assert node.metrics is None
    assert not isinstance(node.store, InstrumentedStore)


async def test_jobs_containers_and_store_calls_are_counted() -> None:
    node = Node(
        NodeConfig(server=ServerConfig(metrics=True)),
        containers=[LocalContainer("echo", echo), LocalContainer("boom", boom)],
    )
    async with node:
        ids = [await node.submit(JobRequest(containers=["echo"], data={"n": n}), "c") for n in range(3)]
        ids.append(await node.submit(JobRequest(containers=["boom"], data={}), "c"))
        ids.append(await node.submit(JobRequest(containers=["echo", "boom"], data={}), "c"))
        known = [job_id for job_id in ids if job_id is not None]
        await wait_finished(node, "c", known)
        found = samples(node)
    assert value(found, "infernet_jobs_accepted_total", container="echo") == 4
    assert value(found, "infernet_jobs_accepted_total", container="boom") == 1
    assert value(found, "infernet_jobs_finished_total", status="success", container="echo") == 3
    assert value(found, "infernet_jobs_finished_total", status="failed", container="boom") == 2
    assert value(found, "infernet_job_duration_seconds_count", status="success") == 3
    assert value(found, "infernet_container_call_duration_seconds_count", container="echo", outcome="ok") == 4
    assert value(found, "infernet_container_call_duration_seconds_count", container="boom", outcome="failed") == 2
    assert value(found, "infernet_store_operation_duration_seconds_count", operation="put") == 10
    assert value(found, "infernet_store_operation_duration_seconds_count", operation="get") >= 1
    assert value(found, "infernet_jobs_pending", kind="offchain") == 0
    assert value(found, "infernet_jobs_pending", kind="onchain") == 0
