"""The embedding API: wait for a job without polling, run = submit + wait, streams entered in
one step, and the host's own HTTP client for the configured containers."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest

from infernet_core import ContainerConfig, ContainerInput, LocalContainer, Node, NodeConfig, NotFound, StatusUpdate
from infernet_core.models import JobRequest

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Gate:
    def __init__(self) -> None:
        self.open = anyio.Event()

    async def __call__(self, payload: ContainerInput) -> Any:
        await self.open.wait()
        return payload.data


async def echo(payload: ContainerInput) -> Any:
    return payload.data


async def test_run_submits_and_waits() -> None:
    async with Node(containers=[LocalContainer("echo", echo)]) as node:
        result = await node.run(JobRequest(containers=["echo"], data={"x": 1}), "me", timeout=5)
    assert result.status == "success"
    assert result.result is not None and result.result.output == {"x": 1}  # type: ignore[union-attr]


async def test_wait_wakes_when_the_job_ends_not_on_a_poll() -> None:
    gate = Gate()
    async with Node(containers=[LocalContainer("gate", gate)]) as node:
        job_id = await node.submit(JobRequest(containers=["gate"], data={"n": 1}), "me")
        assert job_id is not None
        woke: list[float] = []

        async def waiter() -> None:
            result = await node.wait(job_id, "me", timeout=5)
            woke.append(time.monotonic())
            assert result.status == "success"

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            opened = time.monotonic()
            gate.open.set()
        assert len(woke) == 2 and max(woke) - opened < 0.5  # well before the 1 s re-read
        assert node._waiting == {}  # nothing left behind


async def test_wait_many_keeps_the_order_asked() -> None:
    async with Node(containers=[LocalContainer("echo", echo)]) as node:
        ids = [await node.submit(JobRequest(containers=["echo"], data={"n": n}), "me") for n in range(5)]
        results = await node.wait_many([i for i in reversed(ids) if i is not None], "me", timeout=5)
    assert [r.result.output["n"] for r in results] == [4, 3, 2, 1, 0]  # type: ignore[union-attr]


async def test_wait_on_an_unknown_or_a_stuck_job() -> None:
    gate = Gate()
    async with Node(containers=[LocalContainer("gate", gate)]) as node:
        with pytest.raises(NotFound):
            await node.wait("nope", "me", timeout=1)
        job_id = await node.submit(JobRequest(containers=["gate"], data={}), "me")
        assert job_id is not None
        with pytest.raises(TimeoutError):
            await node.wait(job_id, "me", timeout=0.05)
        with pytest.raises(NotFound):
            await node.wait(job_id, "someone else", timeout=1)
        gate.open.set()
        assert (await node.wait(job_id, "me", timeout=5)).status == "success"


async def test_a_status_reported_end_wakes_its_waiters() -> None:
    async with Node() as node:
        await node.record_status(StatusUpdate(id="ext", status="running", containers=["x"]), "me")
        async with anyio.create_task_group() as tg:
            results: list[str] = []

            async def waiter() -> None:
                results.append((await node.wait("ext", "me", timeout=5)).status)

            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            started = time.monotonic()
            await node.record_status(StatusUpdate(id="ext", status="success", containers=["x"]), "me")
        assert results == ["success"] and time.monotonic() - started < 0.5


async def test_a_stream_is_entered_in_one_step() -> None:
    async def tokens(payload: ContainerInput) -> Any:
        for word in payload.data["text"].split():
            yield word

    async with Node(containers=[LocalContainer("tokens", tokens)]) as node:
        async with node.stream(JobRequest(containers=["tokens"], data={"text": "a b"}), "me") as stream:
            chunks = [chunk async for chunk in stream]
        assert b"".join(chunks) == b"ab"
        assert (await node.wait(stream.job_id, "me", timeout=5)).status == "success"


async def test_configured_containers_go_through_the_hosts_http_client() -> None:
    seen: list[httpx.Request] = []

    def container_service(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = json.loads(request.content)
        return httpx.Response(200, json={"echoed": body["data"]})

    config = NodeConfig(manage_containers=False, containers=[ContainerConfig(id="far", url="http://far.example")])
    async with httpx.AsyncClient(transport=httpx.MockTransport(container_service)) as host_client:
        async with Node(config, http_client=host_client) as node:
            result = await node.run(JobRequest(containers=["far"], data={"q": 1}), "me", timeout=5)
        assert not host_client.is_closed  # still the host's
    assert result.result.output == {"echoed": {"q": 1}}  # type: ignore[union-attr]
    assert [str(r.url) for r in seen] == ["http://far.example/service_output"]
