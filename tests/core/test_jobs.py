"""The job state machine, driven directly (no I/O), in the style of h11's test_state.py."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from infernet_core import InvalidTransition
from infernet_core.jobs import (
    TERMINAL_STATES,
    TRANSITIONS,
    ContainerFailed,
    ContainerSucceeded,
    Job,
    JobAborted,
    JobCompleted,
    JobState,
    StatusReported,
    apply,
    new_job,
)
from infernet_core.models import ContainerError, ContainerOutput, JobResult

OUT_A = ContainerOutput(container="a", output={"n": 1})
OUT_B = ContainerOutput(container="b", output=[1, 2, 3])
ERR_B = ContainerError(container="b", error="HTTP 500 from http://b/service_output: boom")


def running(outputs: tuple[ContainerOutput, ...] = ()) -> Job:
    job = new_job("job-1", "10.0.0.1", ["a", "b"], created_at=100.0)
    for output in outputs:
        job = apply(job, ContainerSucceeded(output=output))
    return job


def succeeded() -> Job:
    return apply(running((OUT_A, OUT_B)), JobCompleted(), now=200.0)


def failed() -> Job:
    return apply(running((OUT_A,)), ContainerFailed(error=ERR_B), now=200.0)


ALL_EVENTS: list[Any] = [
    ContainerSucceeded(output=OUT_A),
    ContainerFailed(error=ERR_B),
    JobCompleted(),
    JobAborted(container="a", reason="node stopped before the job finished"),
    StatusReported(status="running"),
    StatusReported(status="success"),
    StatusReported(status="failed"),
]


# -- new_job ------------------------------------------------------------------------------


def test_new_job_is_running_with_nothing_produced() -> None:
    job = new_job("id-1", "client", ["a", "b"], created_at=12.5)
    assert job == Job(
        id="id-1",
        client="client",
        state=JobState.RUNNING,
        containers=("a", "b"),
        outputs=(),
        error=None,
        created_at=12.5,
        finished_at=None,
    )
    assert job.status == "running"
    assert job.pending is True


@pytest.mark.parametrize(
    ("status", "state", "pending", "finished_at"),
    [
        ("running", JobState.RUNNING, True, None),
        ("success", JobState.SUCCEEDED, False, 7.0),
        ("failed", JobState.FAILED, False, 7.0),
    ],
)
def test_new_job_in_reported_status(status: Any, state: JobState, pending: bool, finished_at: float | None) -> None:
    job = new_job("x", "c", ("a",), created_at=7.0, status=status)
    assert job.state is state
    assert job.status == status
    assert job.pending is pending
    assert job.finished_at == finished_at
    assert job.containers == ("a",)


def test_state_values_are_wire_statuses() -> None:
    assert [s.value for s in JobState] == ["running", "success", "failed"]
    assert frozenset({JobState.SUCCEEDED, JobState.FAILED}) == TERMINAL_STATES
    assert set(TRANSITIONS) == set(JobState)
    for state in TERMINAL_STATES:
        assert TRANSITIONS[state] == {}


# -- legal transitions, table-driven -------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            ContainerSucceeded(output=OUT_B),
            {"state": JobState.RUNNING, "outputs": (OUT_A, OUT_B), "error": None, "finished_at": None},
            id="container-succeeded",
        ),
        pytest.param(
            ContainerFailed(error=ERR_B),
            {"state": JobState.FAILED, "outputs": (OUT_A,), "error": ERR_B, "finished_at": 300.0},
            id="container-failed",
        ),
        pytest.param(
            JobCompleted(),
            {"state": JobState.SUCCEEDED, "outputs": (OUT_A,), "error": None, "finished_at": 300.0},
            id="job-completed",
        ),
        pytest.param(
            JobAborted(container="b", reason="internal error: RuntimeError: x"),
            {
                "state": JobState.FAILED,
                "outputs": (OUT_A,),
                "error": ContainerError(container="b", error="internal error: RuntimeError: x"),
                "finished_at": 300.0,
            },
            id="job-aborted",
        ),
        pytest.param(
            StatusReported(status="running"),
            {"state": JobState.RUNNING, "outputs": (OUT_A,), "error": None, "finished_at": None},
            id="status-running",
        ),
        pytest.param(
            StatusReported(status="success"),
            {"state": JobState.SUCCEEDED, "outputs": (OUT_A,), "error": None, "finished_at": 300.0},
            id="status-success",
        ),
        pytest.param(
            StatusReported(status="failed"),
            {"state": JobState.FAILED, "outputs": (OUT_A,), "error": None, "finished_at": 300.0},
            id="status-failed",
        ),
    ],
)
def test_transition_from_running(event: Any, expected: dict[str, Any]) -> None:
    before = running((OUT_A,))
    snapshot = msgspec.structs.replace(before)
    after = apply(before, event, now=300.0)
    assert after.state is expected["state"]
    assert after.outputs == expected["outputs"]
    assert after.error == expected["error"]
    assert after.finished_at == expected["finished_at"]
    # identity fields never change
    assert (after.id, after.client, after.containers, after.created_at) == ("job-1", "10.0.0.1", ("a", "b"), 100.0)
    # the input job is untouched
    assert before == snapshot


def test_status_running_on_running_job_returns_equal_job() -> None:
    job = running((OUT_A,))
    assert apply(job, StatusReported(status="running"), now=999.0) == job


def test_outputs_accumulate_in_chain_order() -> None:
    job = running()
    outputs = [ContainerOutput(container=f"c{i}", output=i) for i in range(5)]
    for index, output in enumerate(outputs):
        job = apply(job, ContainerSucceeded(output=output))
        assert job.outputs == tuple(outputs[: index + 1])
        assert job.state is JobState.RUNNING


# -- illegal transitions -------------------------------------------------------------------


@pytest.mark.parametrize("make_job", [succeeded, failed], ids=["succeeded", "failed"])
@pytest.mark.parametrize("event", ALL_EVENTS, ids=lambda e: f"{type(e).__name__}-{getattr(e, 'status', '')}")
def test_terminal_states_reject_every_event(make_job: Any, event: Any) -> None:
    job = make_job()
    snapshot = msgspec.structs.replace(job)
    with pytest.raises(InvalidTransition) as info:
        apply(job, event, now=500.0)
    assert job == snapshot
    error = info.value
    assert error.message == f"Can't handle {type(event).__name__} when job is {job.state.value}"
    assert error.params == {"id": "job-1", "state": job.state.value, "event": type(event).__name__}
    assert error.code == "job.invalid_transition"
    assert error.status_hint == 409
    # raised "from None", like h11's lookup misses
    assert error.__cause__ is None
    assert error.__suppress_context__ is True


def test_terminal_state_is_sticky_after_repeated_attempts() -> None:
    job = succeeded()
    for event in ALL_EVENTS * 2:
        with pytest.raises(InvalidTransition):
            apply(job, event)
    assert job.state is JobState.SUCCEEDED
    assert job.outputs == (OUT_A, OUT_B)
    assert job.finished_at == 200.0


# -- to_result --------------------------------------------------------------------------------


def encode(result: JobResult) -> Any:
    return msgspec.json.decode(msgspec.json.encode(result))


def test_to_result_running_without_outputs() -> None:
    job = running()
    assert job.to_result() == JobResult(id="job-1", status="running", result=None)
    assert encode(job.to_result()) == {"id": "job-1", "status": "running", "result": None}
    assert encode(job.to_result(intermediate=True)) == {
        "id": "job-1",
        "status": "running",
        "result": None,
        "intermediate": [],
    }


def test_to_result_running_shows_progress_only_as_intermediate() -> None:
    job = running((OUT_A,))
    assert encode(job.to_result()) == {"id": "job-1", "status": "running", "result": None}
    assert encode(job.to_result(intermediate=True)) == {
        "id": "job-1",
        "status": "running",
        "result": None,
        "intermediate": [{"container": "a", "output": {"n": 1}}],
    }


def test_to_result_success_last_output_is_result() -> None:
    job = succeeded()
    result = job.to_result()
    assert result.result == OUT_B
    assert result.intermediate is msgspec.UNSET
    assert encode(result) == {"id": "job-1", "status": "success", "result": {"container": "b", "output": [1, 2, 3]}}
    assert encode(job.to_result(intermediate=True)) == {
        "id": "job-1",
        "status": "success",
        "result": {"container": "b", "output": [1, 2, 3]},
        "intermediate": [{"container": "a", "output": {"n": 1}}],
    }


def test_to_result_success_single_container_has_empty_intermediate() -> None:
    job = apply(running((OUT_A,)), JobCompleted())
    assert job.to_result(intermediate=True) == JobResult(id="job-1", status="success", result=OUT_A, intermediate=[])


def test_to_result_failed_error_is_result_and_outputs_are_intermediate() -> None:
    job = failed()
    assert encode(job.to_result()) == {
        "id": "job-1",
        "status": "failed",
        "result": {"container": "b", "error": ERR_B.error},
    }
    assert encode(job.to_result(intermediate=True)) == {
        "id": "job-1",
        "status": "failed",
        "result": {"container": "b", "error": ERR_B.error},
        "intermediate": [{"container": "a", "output": {"n": 1}}],
    }


def test_to_result_aborted_job() -> None:
    job = apply(running(), JobAborted(container="", reason="node stopped before the job finished"), now=1.0)
    assert encode(job.to_result(intermediate=True)) == {
        "id": "job-1",
        "status": "failed",
        "result": {"container": "", "error": "node stopped before the job finished"},
        "intermediate": [],
    }


@pytest.mark.parametrize(("status", "wire"), [("success", "success"), ("failed", "failed")])
def test_to_result_status_reported_has_no_result(status: Any, wire: str) -> None:
    job = apply(running(), StatusReported(status=status), now=1.0)
    assert encode(job.to_result(intermediate=True)) == {
        "id": "job-1",
        "status": wire,
        "result": None,
        "intermediate": [],
    }
    created = new_job("z", "c", ["a"], created_at=0.0, status=status)
    assert encode(created.to_result()) == {"id": "z", "status": wire, "result": None}


def test_job_round_trips_through_msgspec() -> None:
    # stores serialise jobs; make sure every state survives encode/decode
    for job in (running((OUT_A,)), succeeded(), failed()):
        assert msgspec.json.decode(msgspec.json.encode(job), type=Job) == job


# -- stateful property test --------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3),
    max_leaves=6,
)
container_ids = st.sampled_from(["a", "b", "c", ""])
outputs = st.builds(ContainerOutput, container=container_ids, output=json_values)
errors = st.builds(ContainerError, container=container_ids, error=st.text(max_size=10))
events = st.one_of(
    st.builds(ContainerSucceeded, output=outputs),
    st.builds(ContainerFailed, error=errors),
    st.builds(JobCompleted),
    st.builds(JobAborted, container=container_ids, reason=st.text(max_size=10)),
    st.builds(StatusReported, status=st.sampled_from(["running", "success", "failed"])),
)
clock = st.floats(min_value=0, max_value=1e9, allow_nan=False)


class JobMachine(RuleBasedStateMachine):
    job: Job
    history: list[Job]
    became_terminal: Job | None

    @initialize(status=st.sampled_from(["running", "running", "running", "success", "failed"]))
    def start(self, status: Any) -> None:
        self.job = new_job("j", "client", ["a", "b", "c"], created_at=1.0, status=status)
        self.history = [self.job]
        self.became_terminal = None if self.job.pending else self.job

    @rule(event=events, now=clock)
    def apply_event(self, event: Any, now: float) -> None:
        before = self.job
        snapshot = msgspec.structs.replace(before)
        legal = before.state is JobState.RUNNING
        if not legal:
            with pytest.raises(InvalidTransition) as info:
                apply(before, event, now=now)
            assert before == snapshot
            assert info.value.params == {"id": "j", "state": before.state.value, "event": type(event).__name__}
            return
        after = apply(before, event, now=now)
        assert before == snapshot  # never mutated
        # each event has exactly one effect
        match event:
            case ContainerSucceeded(output=output):
                assert after.state is JobState.RUNNING
                assert after.outputs == (*before.outputs, output)
            case ContainerFailed(error=error):
                assert after.state is JobState.FAILED
                assert after.error == error
            case JobCompleted():
                assert after.state is JobState.SUCCEEDED
            case JobAborted(container=container, reason=reason):
                assert after.state is JobState.FAILED
                assert after.error == ContainerError(container=container, error=reason)
            case StatusReported(status=status):
                assert after.status == status
                if status == "running":
                    assert after == before
        if not after.pending:
            assert after.finished_at == now
            self.became_terminal = after
        self.job = after
        self.history.append(after)

    @invariant()
    def outputs_only_grow(self) -> None:
        for older, newer in zip(self.history, self.history[1:], strict=False):
            assert newer.outputs[: len(older.outputs)] == older.outputs
            assert len(newer.outputs) >= len(older.outputs)

    @invariant()
    def terminal_stays_terminal(self) -> None:
        if self.became_terminal is not None:
            assert self.job == self.became_terminal
            assert self.job.state in TERMINAL_STATES

    @invariant()
    def status_matches_state(self) -> None:
        assert self.job.status == self.job.state.value
        assert self.job.pending is (self.job.state is JobState.RUNNING)
        assert (self.job.finished_at is None) is self.job.pending
        if self.job.state is not JobState.FAILED:
            assert self.job.error is None
        assert (self.job.id, self.job.client, self.job.containers) == ("j", "client", ("a", "b", "c"))

    @invariant()
    def result_consistent_with_outputs(self) -> None:
        job = self.job
        plain = job.to_result()
        full = job.to_result(intermediate=True)
        assert plain.intermediate is msgspec.UNSET
        assert (
            (plain.id, plain.status, plain.result)
            == (full.id, full.status, full.result)
            == (
                job.id,
                job.status,
                full.result,
            )
        )
        assert isinstance(full.intermediate, list)
        if job.state is JobState.RUNNING:
            assert full.result is None
            assert full.intermediate == list(job.outputs)
        elif job.state is JobState.FAILED:
            assert full.result == job.error
            assert full.intermediate == list(job.outputs)
        elif job.outputs:
            assert full.result == job.outputs[-1]
            assert full.intermediate == list(job.outputs[:-1])
        else:
            assert full.result is None
            assert full.intermediate == []
        assert "intermediate" not in msgspec.json.decode(msgspec.json.encode(plain))


TestJobMachine = JobMachine.TestCase
TestJobMachine.settings = settings(max_examples=60, stateful_step_count=15, deadline=None)
