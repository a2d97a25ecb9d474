"""The container pipeline and the Node facade, in-process (no servers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import anyio
import msgspec
import pytest

import infernet_core
from infernet_core import (
    AdmissionError,
    BadRequest,
    ConfigError,
    ContainerClient,
    ContainerConfig,
    ContainerFailure,
    InvalidTransition,
    LocalContainer,
    Node,
    NodeConfig,
    NodeNotRunning,
    echo,
)
from infernet_core.jobs import Job, JobState, new_job
from infernet_core.models import (
    ChainInfo,
    ContainerError,
    ContainerInfo,
    ContainerInput,
    ContainerOutput,
    DelegatedSubscriptionRequest,
    JobRequest,
    JobResult,
    NodeInfo,
    PendingCounts,
    Signature,
    Source,
    StatusUpdate,
    SubscriptionRequest,
)
from infernet_core.pipeline import run_pipeline

pytestmark = pytest.mark.anyio


class Recorder:
    """A container function that records what it was called with."""

    def __init__(self, transform: Callable[[Any], Any] = lambda data: data) -> None:
        self.calls: list[ContainerInput] = []
        self.transform = transform

    def __call__(self, payload: ContainerInput) -> Any:
        self.calls.append(payload)
        return self.transform(payload.data)


class AsyncRecorder(Recorder):
    async def __call__(self, payload: ContainerInput) -> Any:
        self.calls.append(payload)
        await anyio.sleep(0)
        return self.transform(payload.data)


def job_for(*containers: str) -> Job:
    return new_job("job", "client", list(containers), created_at=0.0)


# -- run_pipeline ----------------------------------------------------------------------------------


async def test_pipeline_chains_outputs_sync_and_async() -> None:
    first = Recorder(lambda d: {"n": d["n"] + 1})
    second = AsyncRecorder(lambda d: {"n": d["n"] * 10})
    third = Recorder(lambda d: [d["n"], "done"])
    clients = {
        "first": LocalContainer("first", first),
        "second": LocalContainer("second", second),
        "third": LocalContainer("third", third),
    }
    job = await run_pipeline(job_for("first", "second", "third"), clients, {"n": 1})
    assert job.state is JobState.SUCCEEDED
    assert [c.data for c in first.calls + second.calls + third.calls] == [{"n": 1}, {"n": 2}, {"n": 20}]
    assert job.outputs == (
        ContainerOutput(container="first", output={"n": 2}),
        ContainerOutput(container="second", output={"n": 20}),
        ContainerOutput(container="third", output=[20, "done"]),
    )
    assert job.to_result(intermediate=True) == JobResult(
        id="job",
        status="success",
        result=ContainerOutput(container="third", output=[20, "done"]),
        intermediate=[
            ContainerOutput(container="first", output={"n": 2}),
            ContainerOutput(container="second", output={"n": 20}),
        ],
    )
    assert job.finished_at is not None and job.finished_at > 0


@pytest.mark.parametrize(
    ("source", "destination"),
    [(Source.ONCHAIN, Source.ONCHAIN), (Source.STREAM, Source.ONCHAIN), (Source.OFFCHAIN, Source.STREAM)],
)
async def test_pipeline_source_and_destination_per_call(source: Source, destination: Source) -> None:
    recorders = [Recorder(), AsyncRecorder(), Recorder()]
    clients = {f"c{i}": LocalContainer(f"c{i}", r) for i, r in enumerate(recorders)}
    await run_pipeline(
        job_for("c0", "c1", "c2"), clients, {"x": 1}, source=source, destination=destination, requires_proof=True
    )
    calls = [r.calls[0] for r in recorders]
    assert [(c.source, c.destination) for c in calls] == [
        (source, Source.OFFCHAIN),
        (Source.OFFCHAIN, Source.OFFCHAIN),
        (Source.OFFCHAIN, destination),
    ]
    assert all(c.requires_proof is True for c in calls)


async def test_pipeline_single_container_gets_both_ends() -> None:
    recorder = Recorder()
    await run_pipeline(
        job_for("only"),
        {"only": LocalContainer("only", recorder)},
        {"x": 1},
        source=Source.ONCHAIN,
        destination=Source.ONCHAIN,
    )
    [call] = recorder.calls
    assert call == ContainerInput(
        source=Source.ONCHAIN, destination=Source.ONCHAIN, data={"x": 1}, requires_proof=False
    )


async def test_pipeline_defaults_are_offchain() -> None:
    recorder = Recorder()
    await run_pipeline(job_for("only"), {"only": LocalContainer("only", recorder)}, {})
    assert (recorder.calls[0].source, recorder.calls[0].destination) == (Source.OFFCHAIN, Source.OFFCHAIN)


async def test_pipeline_same_container_twice() -> None:
    recorder = Recorder(lambda d: d + 1)
    job = await run_pipeline(job_for("inc", "inc", "inc"), {"inc": LocalContainer("inc", recorder)}, 0)
    assert [o.output for o in job.outputs] == [1, 2, 3]
    assert len(recorder.calls) == 3


def raiser(exc: Exception) -> Callable[[Any], Any]:
    def transform(data: Any) -> Any:
        raise exc

    return transform


async def test_pipeline_first_failure_stops_later_containers() -> None:
    first = Recorder(lambda d: {"step": 1})
    second = Recorder(raiser(ValueError("bad input")))
    third = Recorder()
    clients = {
        "first": LocalContainer("first", first),
        "second": LocalContainer("second", second),
        "third": LocalContainer("third", third),
    }
    job = await run_pipeline(job_for("first", "second", "third"), clients, {})
    assert job.state is JobState.FAILED
    assert job.error == ContainerError(container="second", error="ValueError: bad input")
    assert job.outputs == (ContainerOutput(container="first", output={"step": 1}),)
    assert len(second.calls) == 1
    assert third.calls == []
    assert msgspec.json.decode(msgspec.json.encode(job.to_result(intermediate=True))) == {
        "id": "job",
        "status": "failed",
        "result": {"container": "second", "error": "ValueError: bad input"},
        "intermediate": [{"container": "first", "output": {"step": 1}}],
    }


async def test_pipeline_async_exception() -> None:
    recorder = AsyncRecorder(raiser(KeyError("missing")))
    job = await run_pipeline(job_for("a"), {"a": LocalContainer("a", recorder)}, {})
    assert job.error == ContainerError(container="a", error="KeyError: 'missing'")


async def test_pipeline_async_timeout() -> None:
    async def slow(payload: ContainerInput) -> Any:
        await anyio.sleep(10)

    after = Recorder()
    clients = {"slow": LocalContainer("slow", slow, timeout=0.05), "after": LocalContainer("after", after)}
    started = time.monotonic()
    job = await run_pipeline(job_for("slow", "after"), clients, {})
    assert time.monotonic() - started < 2
    assert job.state is JobState.FAILED
    assert job.error == ContainerError(container="slow", error="timed out after 0.05s")
    assert after.calls == []


async def test_pipeline_sync_timeout() -> None:
    release = threading.Event()

    def blocking(payload: ContainerInput) -> Any:
        release.wait(5)
        return "late"

    try:
        job = await run_pipeline(job_for("block"), {"block": LocalContainer("block", blocking, timeout=0.05)}, {})
    finally:
        release.set()
    assert job.error == ContainerError(container="block", error="timed out after 0.05s")


@pytest.mark.parametrize("output", [object(), {"k": {1, object()}}, [lambda: None], {"f": 1j}])
async def test_pipeline_non_json_output_fails(output: Any) -> None:
    nxt = Recorder()
    clients = {"bad": LocalContainer("bad", Recorder(lambda d: output)), "next": LocalContainer("next", nxt)}
    job = await run_pipeline(job_for("bad", "next"), clients, {})
    assert job.state is JobState.FAILED
    assert job.error is not None and job.error.container == "bad"
    assert job.error.error == "output is not JSON-representable"
    assert nxt.calls == []
    assert job.outputs == ()


@pytest.mark.parametrize("max_depth", [3, 64])
async def test_pipeline_output_nested_too_deeply_fails_its_job(max_depth: int) -> None:
    """An output nested deeper than max_depth could be stored but not read back inside a
    job record: the container that gave it fails the job; one at the limit succeeds."""

    def nest(levels: int) -> Any:
        value: Any = 1
        for _ in range(levels):
            value = [value]
        return value

    nxt = Recorder()
    clients = {"deep": LocalContainer("deep", Recorder(lambda d: nest(d["n"]))), "next": LocalContainer("next", nxt)}
    job = await run_pipeline(job_for("deep"), clients, {"n": max_depth}, max_depth=max_depth)
    assert job.state is JobState.SUCCEEDED and job.outputs[0].output == nest(max_depth)
    job = await run_pipeline(job_for("deep", "next"), clients, {"n": max_depth + 1}, max_depth=max_depth)
    assert job.state is JobState.FAILED
    assert job.error == ContainerError(
        container="deep", error=f"output nested too deeply: more than {max_depth} levels"
    )
    assert nxt.calls == []  # the output that failed went nowhere


async def test_pipeline_outputs_converted_to_plain_json() -> None:
    def structured(payload: ContainerInput) -> Any:
        return {"t": (1, 2), "o": ContainerOutput(container="x", output=None)}

    job = await run_pipeline(job_for("s"), {"s": LocalContainer("s", structured)}, {})
    output = job.outputs[0].output
    assert output["o"] == {"container": "x", "output": None}
    assert msgspec.json.decode(msgspec.json.encode(output)) == {"t": [1, 2], "o": {"container": "x", "output": None}}


async def test_pipeline_container_failure_message_is_kept() -> None:
    class Failing(ContainerClient):
        info = ContainerInfo(id="f", image="", description="", external=True)

        async def run(self, payload: ContainerInput) -> Any:
            raise ContainerFailure("HTTP 503 from http://x/service_output: down")

    job = await run_pipeline(job_for("f"), {"f": Failing()}, {})
    assert job.error == ContainerError(container="f", error="HTTP 503 from http://x/service_output: down")


async def test_echo_container() -> None:
    job = await run_pipeline(job_for("echo"), {"echo": LocalContainer("echo", echo)}, {"hello": ["world"]})
    assert job.to_result().result == ContainerOutput(container="echo", output={"hello": ["world"]})


# -- Node ------------------------------------------------------------------------------------------


async def wait_done(node: Node, client: str, job_id: str) -> JobResult:
    with anyio.fail_after(5):
        while True:
            [result] = await node.results([job_id], client, intermediate=True)
            if result.status != "running":
                return result
            await anyio.sleep(0.005)


class Gate:
    """An async container that blocks until released, and reports when it started."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.release = anyio.Event()

    async def __call__(self, payload: ContainerInput) -> Any:
        self.started.set()
        await self.release.wait()
        return {"gated": payload.data}


def upper(payload: ContainerInput) -> Any:
    return {"text": payload.data["text"].upper()}


async def test_submit_runs_job_and_id_is_readable_at_once_as_running() -> None:
    gate = Gate()
    node = Node(NodeConfig(), containers=[LocalContainer("gate", gate), LocalContainer("upper", upper)])
    async with node:
        job_id = await node.submit(JobRequest(containers=["gate"], data={"v": 1}), "10.0.0.1")
        assert isinstance(job_id, str)
        assert str(__import__("uuid").UUID(job_id, version=4)) == job_id
        # readable before the job's task has even started
        assert await node.results([job_id], "10.0.0.1") == [JobResult(id=job_id, status="running", result=None)]
        assert await node.job_ids("10.0.0.1", pending=True) == [job_id]
        await gate.started.wait()
        assert (await node.info()).pending.offchain == 1
        gate.release.set()
        result = await wait_done(node, "10.0.0.1", job_id)
        assert result == JobResult(
            id=job_id,
            status="success",
            result=ContainerOutput(container="gate", output={"gated": {"v": 1}}),
            intermediate=[],
        )
        assert await node.job_ids("10.0.0.1", pending=False) == [job_id]
        assert await node.job_ids("10.0.0.1", pending=True) == []
        assert (await node.info()).pending.offchain == 0


async def test_decorator_registered_chain() -> None:
    node = Node()

    @node.container("upper")
    def _upper(payload: ContainerInput) -> Any:
        return {"text": payload.data["text"].upper()}

    @node.container("exclaim", external=False, description="adds !")
    async def _exclaim(payload: ContainerInput) -> Any:
        return {"text": payload.data["text"] + "!"}

    assert _upper is not None and _exclaim is not None
    async with node:
        job_id = await node.submit(JobRequest(containers=["upper", "exclaim"], data={"text": "hi"}), "me")
        assert job_id is not None
        result = await wait_done(node, "me", job_id)
        assert result.result == ContainerOutput(container="exclaim", output={"text": "HI!"})
        assert result.intermediate == [ContainerOutput(container="upper", output={"text": "HI"})]
        # internal container cannot come first
        with pytest.raises(AdmissionError) as info:
            await node.submit(JobRequest(containers=["exclaim"], data={}), "me")
        assert (info.value.message, info.value.params) == (
            "First container must be external",
            {"first_container": "exclaim"},
        )


async def test_failed_job_result() -> None:
    def broken(payload: ContainerInput) -> Any:
        raise RuntimeError("model exploded")

    node = Node(containers=[LocalContainer("upper", upper), LocalContainer("broken", broken, external=False)])
    async with node:
        job_id = await node.submit(JobRequest(containers=["upper", "broken", "upper"], data={"text": "x"}), "c")
        assert job_id is not None
        result = await wait_done(node, "c", job_id)
    assert result == JobResult(
        id=job_id,
        status="failed",
        result=ContainerError(container="broken", error="RuntimeError: model exploded"),
        intermediate=[ContainerOutput(container="upper", output={"text": "X"})],
    )


async def test_submit_rejections_are_admission_errors_and_store_nothing() -> None:
    node = Node(containers=[LocalContainer("upper", upper)])
    async with node:
        cases = [
            (JobRequest(containers=[], data={}), "No containers specified", None),
            (JobRequest(containers=["nope"], data={}), "Container not supported", {"container": "nope"}),
            (
                JobRequest(containers=["upper"], data={}, requires_proof=True),
                "Container does not generate proof",
                {"container": "upper"},
            ),
        ]
        for request, message, params in cases:
            with pytest.raises(AdmissionError) as info:
                await node.submit(request, "c")
            assert (info.value.message, info.value.params) == (message, params)
        assert await node.job_ids("c") == []


def delegated_request() -> DelegatedSubscriptionRequest:
    return DelegatedSubscriptionRequest(
        subscription=SubscriptionRequest(
            owner="0x" + "1" * 40,
            container_id="upper",
            active_at=0,
            frequency=1,
            period=0,
            redundancy=1,
            max_gas_price=1,
            max_gas_limit=1,
        ),
        signature=Signature(nonce=0, expiry=2**32 - 1, v=27, r=1, s=2**256 - 1),
        data={},
    )


async def test_delegated_rejected_when_chain_disabled() -> None:
    node = Node(containers=[LocalContainer("upper", upper)])
    async with node:
        with pytest.raises(AdmissionError) as info:
            await node.submit(delegated_request(), "c")
    assert info.value.message == "Chain not enabled"
    assert info.value.params is not None
    assert info.value.params["delegated_subscription"]["signature"]["s"] == 2**256 - 1


async def test_submit_batch_one_entry_per_item_in_order() -> None:
    gate = Gate()
    node = Node(containers=[LocalContainer("upper", upper), LocalContainer("gate", gate)])
    parse_error = BadRequest("Invalid job request: Expected `str`, got `int`", {"path": "$[1].containers[0]"})
    async with node:
        entries = await node.submit_batch(
            [
                JobRequest(containers=["upper"], data={"text": "a"}),
                parse_error,
                JobRequest(containers=["missing"], data={}),
                delegated_request(),
                JobRequest(containers=["gate"], data={}),
                JobRequest(containers=["upper"], data={"text": "b"}),
            ],
            "c",
        )
        assert len(entries) == 6
        first, second, third, fourth, fifth, sixth = entries
        assert isinstance(first, str) and isinstance(fifth, str) and isinstance(sixth, str)
        assert len({first, fifth, sixth}) == 3
        assert second is parse_error
        assert isinstance(third, AdmissionError)
        assert (third.message, third.params) == ("Container not supported", {"container": "missing"})
        assert isinstance(fourth, AdmissionError) and fourth.message == "Chain not enabled"
        assert sorted(await node.job_ids("c")) == sorted([first, fifth, sixth])
        assert (await wait_done(node, "c", sixth)).result == ContainerOutput(container="upper", output={"text": "B"})
        assert (await wait_done(node, "c", first)).result == ContainerOutput(container="upper", output={"text": "A"})
        gate.release.set()
        assert (await wait_done(node, "c", fifth)).status == "success"


async def test_submit_batch_empty() -> None:
    async with Node() as node:
        assert await node.submit_batch([], "c") == []


async def test_results_are_scoped_by_client() -> None:
    node = Node(containers=[LocalContainer("upper", upper)])
    async with node:
        mine = await node.submit(JobRequest(containers=["upper"], data={"text": "mine"}), "10.0.0.1")
        theirs = await node.submit(JobRequest(containers=["upper"], data={"text": "theirs"}), "10.0.0.2")
        assert mine is not None and theirs is not None
        await wait_done(node, "10.0.0.1", mine)
        await wait_done(node, "10.0.0.2", theirs)
        assert await node.results([mine], "10.0.0.2") == []
        assert await node.results([theirs, mine, "unknown", mine], "10.0.0.1") == [
            JobResult(id=mine, status="success", result=ContainerOutput(container="upper", output={"text": "MINE"}))
        ]
        assert await node.job_ids("10.0.0.1") == [mine]
        assert await node.job_ids("10.0.0.2") == [theirs]
        assert await node.job_ids("10.0.0.3") == []


async def test_record_status_creates_and_transitions() -> None:
    async with Node() as node:
        await node.record_status(StatusUpdate(id="ext-1", status="running", containers=["a"]), "172.17.0.2")
        assert await node.results(["ext-1"], "172.17.0.2") == [JobResult(id="ext-1", status="running", result=None)]
        assert await node.job_ids("172.17.0.2", pending=True) == ["ext-1"]
        assert (await node.info()).pending.offchain == 1
        # running again is a no-op
        await node.record_status(StatusUpdate(id="ext-1", status="running", containers=["a"]), "172.17.0.2")
        assert (await node.info()).pending.offchain == 1

        await node.record_status(StatusUpdate(id="ext-1", status="success", containers=["a"]), "172.17.0.2")
        assert await node.results(["ext-1"], "172.17.0.2", intermediate=True) == [
            JobResult(id="ext-1", status="success", result=None, intermediate=[])
        ]
        assert await node.job_ids("172.17.0.2", pending=False) == ["ext-1"]
        assert (await node.info()).pending.offchain == 0

        for status in ("running", "success", "failed"):
            with pytest.raises(InvalidTransition) as info:
                await node.record_status(StatusUpdate(id="ext-1", status=status, containers=["a"]), "172.17.0.2")
            assert info.value.params == {"id": "ext-1", "state": "success", "event": "StatusReported"}
        assert (await node.results(["ext-1"], "172.17.0.2"))[0].status == "success"

        # a brand-new id reported as finished is stored finished at once
        await node.record_status(StatusUpdate(id="ext-2", status="failed", containers=[]), "172.17.0.2")
        assert (await node.results(["ext-2"], "172.17.0.2"))[0] == JobResult(id="ext-2", status="failed", result=None)
        # the same id from another client is a different job
        await node.record_status(StatusUpdate(id="ext-1", status="running", containers=["a"]), "172.17.0.3")
        assert (await node.results(["ext-1"], "172.17.0.3"))[0].status == "running"
        assert (await node.results(["ext-1"], "172.17.0.2"))[0].status == "success"


async def test_record_status_moves_a_running_pipeline_job() -> None:
    gate = Gate()
    node = Node(containers=[LocalContainer("gate", gate)])
    async with node:
        job_id = await node.submit(JobRequest(containers=["gate"], data={}), "c")
        assert job_id is not None
        await node.record_status(StatusUpdate(id=job_id, status="failed", containers=["gate"]), "c")
        assert (await node.results([job_id], "c"))[0].status == "failed"
        gate.release.set()
        while node._running_jobs:
            await anyio.sleep(0.005)
        # The pipeline's own result does not overwrite a reported terminal status.
        [result] = await node.results([job_id], "c")
        assert (result.status, result.result) == ("failed", None)


class CrashingClient(ContainerClient):
    def __init__(self) -> None:
        self.info = ContainerInfo(id="crash", image="img", description="", external=True)

    async def run(self, payload: ContainerInput) -> Any:
        raise RuntimeError("bug in client")


async def test_crashing_container_client_fails_job_with_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    node = Node(containers=[CrashingClient()])
    async with node:
        job_id = await node.submit(JobRequest(containers=["crash"], data={}), "c")
        assert job_id is not None
        result = await wait_done(node, "c", job_id)
        assert node.running is True  # the node survives
    assert result == JobResult(
        id=job_id,
        status="failed",
        result=ContainerError(container="", error="internal error: RuntimeError: bug in client"),
        intermediate=[],
    )
    assert any(f"job {job_id} crashed" in r.getMessage() for r in caplog.records)


async def test_shutdown_fails_never_ending_job() -> None:
    gate = Gate()  # never released
    node = Node(NodeConfig(shutdown_grace=0.05), containers=[LocalContainer("forever", gate)])
    started = time.monotonic()
    async with node:
        job_id = await node.submit(JobRequest(containers=["forever"], data={}), "c")
        assert job_id is not None
        await gate.started.wait()
    assert time.monotonic() - started < 3
    assert node.running is False
    assert await node.results([job_id], "c") == [
        JobResult(
            id=job_id,
            status="failed",
            result=ContainerError(container="", error="node stopped before the job finished"),
        )
    ]
    assert await node.job_ids("c", pending=True) == []


async def test_shutdown_waits_for_jobs_within_grace() -> None:
    async def short(payload: ContainerInput) -> Any:
        await anyio.sleep(0.05)
        return "finished"

    node = Node(NodeConfig(shutdown_grace=5), containers=[LocalContainer("short", short)])
    async with node:
        job_id = await node.submit(JobRequest(containers=["short"], data={}), "c")
        assert job_id is not None
    [result] = await node.results([job_id], "c")
    assert result.status == "success"
    assert result.result == ContainerOutput(container="short", output="finished")


async def test_node_not_running_before_start_and_after_stop() -> None:
    node = Node(containers=[LocalContainer("upper", upper)])
    request = JobRequest(containers=["upper"], data={"text": "x"})
    assert node.running is False
    with pytest.raises(NodeNotRunning) as info:
        await node.submit(request, "c")
    assert info.value.code == "node.not_running" and info.value.status_hint == 503
    with pytest.raises(NodeNotRunning):
        await node.submit_batch([request], "c")
    assert await node.job_ids("c") == []
    async with node:
        assert node.running is True
    assert node.running is False
    with pytest.raises(NodeNotRunning):
        await node.submit(request, "c")
    with pytest.raises(NodeNotRunning):
        await node.submit_batch([], "c")


async def test_info_shape() -> None:
    node = Node(
        NodeConfig(
            manage_containers=False,
            containers=[ContainerConfig(id="remote", image="img:1", description="far", port=3999)],
        ),
        containers=[LocalContainer("local", upper, external=False, description="near")],
    )
    async with node:
        info = await node.info()
    assert info == NodeInfo(
        version=infernet_core.__version__,
        containers=[
            ContainerInfo(id="remote", image="img:1", description="far", external=True),
            ContainerInfo(id="local", image="", description="near", external=False),
        ],
        pending=PendingCounts(offchain=0, onchain=0),
        chain=ChainInfo(enabled=False, address=""),
    )
    assert msgspec.json.decode(msgspec.json.encode(info)) == {
        "version": infernet_core.__version__,
        "containers": [
            {"id": "remote", "image": "img:1", "description": "far", "external": True},
            {"id": "local", "image": "", "description": "near", "external": False},
        ],
        "pending": {"offchain": 0, "onchain": 0},
        "chain": {"enabled": False, "address": ""},
    }


async def test_config_containers_get_guardian_rules() -> None:
    node = Node(
        NodeConfig(
            manage_containers=False,
            containers=[
                ContainerConfig(id="lan", url="http://127.0.0.1:9", allowed_ips=["10.0.0.0/8"]),
                ContainerConfig(id="inner", url="http://127.0.0.1:9", external=False),
            ],
        )
    )
    async with node:
        with pytest.raises(AdmissionError) as info:
            await node.submit(JobRequest(containers=["lan"], data={}), "192.168.1.1")
        assert (info.value.message, info.value.params) == (
            "Container not allowed for address",
            {"container": "lan", "address": "192.168.1.1"},
        )
        with pytest.raises(AdmissionError) as info:
            await node.submit(JobRequest(containers=["inner"], data={}), "10.0.0.1")
        assert info.value.message == "First container must be external"


async def test_config_error_when_managing_containers_without_an_image() -> None:
    node = Node(NodeConfig(containers=[ContainerConfig(id="a")]))
    with pytest.raises(ConfigError, match="^config: manage_containers is true, but these containers have no image: a$"):
        async with node:
            pytest.fail("must not start")  # pragma: no cover
    assert node.running is False


async def test_manage_containers_without_containers_is_fine() -> None:
    async with Node(NodeConfig(manage_containers=True)) as node:
        assert node.running is True


async def test_add_container_rules() -> None:
    node = Node(NodeConfig(manage_containers=False, containers=[ContainerConfig(id="cfg")]))
    node.add_container(LocalContainer("a", echo))
    with pytest.raises(ValueError, match="used twice"):
        node.add_container(LocalContainer("a", echo))
    with pytest.raises(ValueError, match="used twice"):
        node.add_container(LocalContainer("cfg", echo))
    async with node:
        with pytest.raises(ValueError, match="before the node starts"):
            node.add_container(LocalContainer("b", echo))


async def test_many_concurrent_jobs_all_finish() -> None:
    node = Node(containers=[LocalContainer("echo", echo)])
    async with node:
        ids = [await node.submit(JobRequest(containers=["echo", "echo"], data={"i": i}), "c") for i in range(50)]
        results = [await wait_done(node, "c", job_id) for job_id in ids if job_id is not None]
    assert [r.result for r in results] == [ContainerOutput(container="echo", output={"i": i}) for i in range(50)]
    assert len(set(ids)) == 50


async def test_a_job_that_cannot_be_dispatched_is_refused_and_not_left_running() -> None:
    from infernet_core import StoreUnavailable
    from infernet_core.dispatch import LocalDispatcher

    class DownQueue(LocalDispatcher):
        async def dispatch(self, job: Any, request: Any) -> None:
            raise StoreUnavailable("Result store unavailable: queue down")

    store = infernet_core.MemoryResultStore()
    node = Node(store=store, dispatcher=DownQueue(), containers=[LocalContainer("upper", upper)])
    async with node:
        with pytest.raises(StoreUnavailable, match="queue down"):
            await node.submit(JobRequest(containers=["upper"], data={"text": "x"}), "c")
        assert await node.job_ids("c", pending=True) == []
        [job_id] = await node.job_ids("c", pending=False)
        [result] = await node.results([job_id], "c")
    assert result.status == "failed"
    assert result.result == ContainerError(container="", error="not dispatched: Result store unavailable: queue down")


async def test_a_start_that_fails_half_way_closes_the_store() -> None:
    from infernet_core import StoreUnavailable
    from infernet_core.dispatch import LocalDispatcher

    class BrokenQueue(LocalDispatcher):
        async def start(self, task_group: Any, spawn: Any) -> None:
            raise StoreUnavailable("Result store unavailable: queue down")

    class ClosingStore(infernet_core.MemoryResultStore):
        closed = False

        async def aclose(self) -> None:
            self.closed = True

    store = ClosingStore()
    node = Node(store=store, dispatcher=BrokenQueue())
    with pytest.raises(StoreUnavailable, match="queue down"):
        async with node:
            pass  # pragma: no cover
    assert store.closed is True
    assert node.running is False
