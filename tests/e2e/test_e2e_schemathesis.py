"""Schemathesis against the real ``infernet-node`` (the embedded default: in-process ``echo``,
metrics on): every operation of its own ``/openapi.json``, fuzzed with valid and invalid data,
then stateful sequences that follow the document's link (``POST /api/jobs`` -> ``GET
/api/jobs?id=``).

Both assert no 5xx and that every response conforms to the document: a documented status
code, content type and headers, and a body matching the response schema. Two of
schemathesis's default checks are left out because they judge the node's semantics rather
than the document's accuracy:

* ``positive_data_acceptance`` (a schema-valid request must not get a 400): the node refuses
  requests the schema cannot describe, such as ``containers: []``, a container it does not
  serve, or a delegated subscription with the chain off.
* ``negative_data_rejection`` (a schema-invalid request must get a 4xx): ``POST
  /api/jobs/batch`` answers 200 with one error entry per invalid item, and ``GET /api/jobs``
  reads ``intermediate`` only with ``id`` and ``pending`` only without.

Budgets (``hypothesis`` settings, derandomized, no example database) keep the module well under
90 s on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from e2e_support import NodeProcess, running_node
from hypothesis import HealthCheck, settings
from schemathesis import Case, GenerationMode, Response
from schemathesis.config import SchemathesisConfig

from infernet_asgi.openapi import openapi_document

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

FUZZ_EXAMPLES = 100
"""Generated examples per operation (schemathesis adds its coverage cases to them)."""
STATEFUL_SCENARIOS = 60
STATEFUL_STEPS = 8
"""Calls per stateful scenario, at most."""

CONFIG = {
    "generation": {"mode": "all"},
    "operations": [
        {
            "include-name": ["POST /api/jobs", "POST /api/jobs/stream"],
            "checks": {"positive_data_acceptance": {"enabled": False}},
        },
        {
            "include-name": ["POST /api/jobs/batch", "GET /api/jobs"],
            "checks": {"negative_data_rejection": {"enabled": False}},
        },
    ],
}


def load_schema() -> Any:
    """The document the node serves, as generated (a test below holds the two equal).

    Loaded at import, so that each operation is a test of its own, with no node running yet.
    (``schemathesis.pytest.from_fixture``, which would load it from the running node, fails on
    pytest 9.2 in schemathesis 4.32: it reads ``Item._nodeid``, which pytest 9.2 no longer has.)
    """
    return schemathesis.openapi.from_dict(openapi_document(), config=SchemathesisConfig.from_dict(CONFIG))


def echo_chain(request: Any) -> Any:
    """A job request whose ``containers`` list has an odd length, pointed at ``echo`` (as many
    times): the node's one container, so that such requests are accepted and run."""
    if isinstance(request, dict) and isinstance(request.get("containers"), list) and len(request["containers"]) % 2:
        return {**request, "containers": ["echo"] * len(request["containers"])}
    return request


def map_case(context: schemathesis.HookContext, case: Case) -> Case:
    """Schema-valid submissions (single, batch, stream) with an odd number of containers are
    pointed at ``echo``; the others keep their generated names (which the node refuses)."""
    if (
        case.meta is not None
        and case.meta.generation.mode is GenerationMode.POSITIVE
        and case.operation.method.upper() == "POST"
        and case.operation.path.startswith("/api/jobs")
    ):
        body = case.body
        case.body = [echo_chain(item) for item in body] if isinstance(body, list) else echo_chain(body)
    return case


schema = load_schema()
schema.hook(map_case)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("schemathesis")) as node:
        yield node


def test_served_document_is_the_one_tested(node: NodeProcess) -> None:
    with node.client() as http:
        served = http.get("/openapi.json").json()
    assert served == openapi_document()
    links = served["paths"]["/api/jobs"]["post"]["responses"]["200"]["links"]
    assert links == {"GetResult": {"operationId": "getJobs", "parameters": {"id": "$response.body#/id"}}}


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms(node: NodeProcess, case: Case) -> None:
    case.call_and_validate(base_url=node.base_url, timeout=10)


def test_stateful_links_conform(node: NodeProcess) -> None:
    """Random sequences of calls, following ``GetResult`` from each accepted job to its result.

    Each walk must find the job it was given (see :func:`map_case` for how jobs are accepted).
    """
    api = load_schema()
    api.config.update(base_url=node.base_url)

    api.hook(map_case)

    created: set[str] = set()
    found: list[str] = []

    class Machine(api.as_state_machine()):
        def after_call(self, response: Response, case: Case) -> None:
            super().after_call(response, case)
            label = case.operation.label
            if label == "POST /api/jobs" and response.status_code == 200:
                job_id = response.json().get("id")
                if isinstance(job_id, str):
                    created.add(job_id)
            elif label == "GET /api/jobs" and response.status_code == 200:
                asked = (case.query or {}).get("id")
                if isinstance(asked, str) and asked in created:
                    ids = [result["id"] for result in response.json()]
                    assert ids == [asked], f"GET /api/jobs?id={asked} answered {ids}"
                    found.append(asked)

    Machine.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            print_blob=False,
            phases=[hypothesis.Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    assert created, "no POST /api/jobs was accepted: the stateful test never had a job to follow"
    assert found, f"the GetResult link was never followed to one of the {len(created)} jobs created"
