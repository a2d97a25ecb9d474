"""Node.stream (stream jobs through the library API) and Node.resources, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from infernet_core import (
    AdmissionError,
    BadRequest,
    ContainerClient,
    ContainerError,
    ContainerInfo,
    ContainerInput,
    ContainerOutput,
    JobRequest,
    JobResult,
    JobState,
    LocalContainer,
    Node,
    NodeConfig,
    NodeNotRunning,
    echo,
)
from infernet_core.models import DelegatedSubscriptionRequest, Signature, SubscriptionRequest
from infernet_core.node import STOPPED_REASON
from infernet_core.streaming import CLOSED_EARLY, STREAM_ONLY_OFFCHAIN, JobStream

pytestmark = pytest.mark.anyio

ME = "me"


class Gate:
    """An async generator container yielding ``parts``; part ``i`` waits until ``open(i + 1)``."""

    def __init__(self, *parts: Any) -> None:
        self.parts = parts
        self.opened = 0
        self.changed = anyio.Event()
        self.calls: list[ContainerInput] = []
        self.closed = False

    def open(self, count: int) -> None:
        self.opened = count
        self.changed.set()
        self.changed = anyio.Event()

    async def __call__(self, payload: ContainerInput) -> AsyncIterator[Any]:
        self.calls.append(payload)
        try:
            for index, part in enumerate(self.parts):
                while self.opened <= index:
                    await self.changed.wait()
                yield part
        finally:
            self.closed = True


def node_with(*containers: ContainerClient, **config: Any) -> Node:
    settings = {"shutdown_grace": 0.1, **config}
    return Node(NodeConfig(**settings), containers=containers)


def request(*containers: str, **data: Any) -> JobRequest:
    return JobRequest(containers=list(containers), data=data)


async def result_of(node: Node, job_id: str) -> JobResult:
    [result] = await node.results([job_id], ME)
    return result


async def test_stream_yields_chunks_and_stores_the_decoded_output() -> None:
    gate = Gate(b'{"answer": ', b"42}")
    gate.open(2)
    node = node_with(LocalContainer("gen", gate), LocalContainer("echo", echo))
    async with node:
        async with node.stream(request("gen", "echo", q="x"), ME) as stream:
            assert stream.job.state is JobState.RUNNING
            assert (await result_of(node, stream.job_id)).status == "running"
            chunks = [chunk async for chunk in stream]
        assert chunks == [b'{"answer": ', b"42}"]
        assert stream.job.state is JobState.SUCCEEDED
        assert await result_of(node, stream.job_id) == JobResult(
            id=stream.job_id, status="success", result=ContainerOutput(container="gen", output={"answer": 42})
        )
        assert await node.job_ids(ME, pending=False) == [stream.job_id]
    [payload] = gate.calls
    assert payload == ContainerInput(source=1, destination=2, data={"q": "x"})


async def test_stream_job_is_pending_until_it_ends() -> None:
    gate = Gate("a", "b")
    node = node_with(LocalContainer("gen", gate))
    async with node:
        async with node.stream(request("gen"), ME) as stream:
            assert (await node.info()).pending.offchain == 1
            assert await node.job_ids(ME, pending=True) == [stream.job_id]
            gate.open(2)
            assert [chunk async for chunk in stream] == [b"a", b"b"]
        assert (await node.info()).pending.offchain == 0
        assert (await result_of(node, stream.job_id)).result == ContainerOutput(container="gen", output="ab")


async def test_container_failure_ends_the_stream_and_fails_the_job() -> None:
    async def breaks(payload: ContainerInput) -> AsyncIterator[str]:
        yield "partial"
        raise RuntimeError("lost the GPU")

    node = node_with(LocalContainer("breaks", breaks))
    async with node:
        async with node.stream(request("breaks"), ME) as stream:
            assert [chunk async for chunk in stream] == [b"partial"]
        assert stream.job.state is JobState.FAILED
        assert (await result_of(node, stream.job_id)).result == ContainerError(
            container="breaks", error="RuntimeError: lost the GPU"
        )


async def test_stream_times_out() -> None:
    gate = Gate("a", "b")
    gate.open(1)
    node = node_with(LocalContainer("gen", gate), stream_timeout=0.05)
    async with node:
        async with node.stream(request("gen"), ME) as stream:
            assert [chunk async for chunk in stream] == [b"a"]
        assert stream.job.error == ContainerError(container="gen", error="timed out after 0.05s")
    assert gate.closed


async def test_abort_fails_the_job_with_the_reason() -> None:
    gate = Gate("a", "b")
    gate.open(1)
    node = node_with(LocalContainer("gen", gate))
    async with node:
        async with node.stream(request("gen"), ME) as stream:
            async for _ in stream:
                stream.abort("reader lost interest")
        assert (await result_of(node, stream.job_id)).result == ContainerError(
            container="gen", error="reader lost interest"
        )
    assert gate.closed


async def test_leaving_early_fails_the_job_and_waits_until_it_is_stored() -> None:
    gate = Gate("a", "b")
    gate.open(1)
    node = node_with(LocalContainer("gen", gate))
    async with node:
        async with node.stream(request("gen"), ME) as stream:
            async for _ in stream:
                break
        assert stream.job.error == ContainerError(container="gen", error=CLOSED_EARLY)
        assert (await result_of(node, stream.job_id)).status == "failed"


async def test_an_exception_in_the_reader_fails_the_job() -> None:
    gate = Gate("a", "b")
    gate.open(1)
    node = node_with(LocalContainer("gen", gate))
    async with node:
        with pytest.raises(KeyError):
            async with node.stream(request("gen"), ME) as stream:
                async for _ in stream:
                    raise KeyError("reader bug")
        assert (await result_of(node, stream.job_id)).result == ContainerError(container="gen", error=CLOSED_EARLY)


async def test_abort_after_the_end_changes_nothing() -> None:
    node = node_with(LocalContainer("echo", echo))
    async with node:
        async with node.stream(request("echo", n=1), ME) as stream:
            assert [chunk async for chunk in stream] == [b'{"n":1}']
            stream.abort("too late")
        assert (await result_of(node, stream.job_id)).result == ContainerOutput(container="echo", output={"n": 1})


async def test_stopping_node_fails_a_running_stream() -> None:
    gate = Gate("a", "b")
    gate.open(1)
    node = node_with(LocalContainer("gen", gate))
    chunks: list[bytes] = []
    first = anyio.Event()

    async def read(stream: JobStream) -> None:
        async with stream:
            async for chunk in stream:
                chunks.append(chunk)
                first.set()

    with anyio.fail_after(5):
        # The node stops (after its grace) with the stream still waiting on its container.
        async with anyio.create_task_group() as tg, node:
            stream = await node.stream(request("gen"), ME)
            tg.start_soon(read, stream)
            await first.wait()
    assert chunks == [b"a"]
    assert stream.job.error == ContainerError(container="gen", error=STOPPED_REASON)
    assert gate.closed


async def test_stream_refusals_store_nothing_and_call_nothing() -> None:
    gate = Gate("a")
    internal = LocalContainer("internal", gate, external=False)
    node = node_with(LocalContainer("gen", gate), internal)
    async with node:
        with pytest.raises(AdmissionError) as caught:
            await node.stream(request("missing"), ME)
        assert caught.value.message == "Container not supported"
        with pytest.raises(AdmissionError) as caught:
            await node.stream(request("internal"), ME)
        assert caught.value.message == "First container must be external"
        with pytest.raises(AdmissionError) as caught:
            await node.stream(request("gen", "missing"), ME)
        assert caught.value.message == "Container not supported"
        assert await node.job_ids(ME) == []
    assert gate.calls == []


async def test_delegated_subscriptions_cannot_stream() -> None:
    delegated = DelegatedSubscriptionRequest(
        subscription=SubscriptionRequest(
            owner="0x" + "11" * 20,
            container_id="echo",
            active_at=0,
            frequency=1,
            period=0,
            redundancy=1,
            max_gas_price=1,
            max_gas_limit=100_000,
        ),
        signature=Signature(nonce=0, expiry=2**32 - 1, v=27, r=1, s=1),
        data={},
    )
    node = node_with(LocalContainer("echo", echo))
    async with node:
        with pytest.raises(BadRequest) as caught:
            await node.stream(delegated, ME)
    assert caught.value.message == STREAM_ONLY_OFFCHAIN
    assert caught.value.status_hint == 400


async def test_stream_needs_a_running_node() -> None:
    node = node_with(LocalContainer("echo", echo))
    with pytest.raises(NodeNotRunning):
        await node.stream(request("echo"), ME)


# -- Node.resources ------------------------------------------------------------------------------


class Reporting(ContainerClient):
    """A container client whose resources are ``answer`` (raised when an exception)."""

    def __init__(self, id: str, answer: Any, delay: float = 0.0) -> None:
        self.info = ContainerInfo(id=id, image="", description="", external=True)
        self.answer = answer
        self.delay = delay
        self.asked: list[str | None] = []

    async def run(self, payload: ContainerInput) -> Any:
        return payload.data

    async def resources(self, model_id: str | None = None) -> Any:
        self.asked.append(model_id)
        await anyio.sleep(self.delay)
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer


async def test_resources_by_container_leaving_out_failures() -> None:
    fine = Reporting("fine", {"gpu": 1})
    containers = [
        Reporting("slow", {"late": True}, delay=5.0),
        fine,
        Reporting("crashes", ValueError("bug")),
        LocalContainer("silent", echo),
        Reporting("listy", [1, 2]),
    ]
    node = node_with(*containers, resources_timeout=0.05)
    async with node:
        with anyio.fail_after(2):
            assert await node.resources() == {"fine": {"gpu": 1}, "listy": [1, 2]}
            assert await node.resources("m-1") == {"fine": {"gpu": 1}, "listy": [1, 2]}
    assert fine.asked == [None, "m-1"]


async def test_resources_decorator_argument() -> None:
    node = node_with()

    @node.container("model", resources=lambda model_id: {"loaded": model_id or "default"})
    async def model(payload: ContainerInput) -> Any:
        return payload.data

    async with node:
        assert await node.resources() == {"model": {"loaded": "default"}}
        assert await node.resources("x") == {"model": {"loaded": "x"}}


async def test_resources_needs_a_running_node() -> None:
    with pytest.raises(NodeNotRunning):
        await node_with().resources()
