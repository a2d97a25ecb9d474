"""The real ``infernet-node`` with no config (the embedded default: in-process ``echo``):
jobs, /info, client scoping by source address, and PUT /api/status, over real sockets."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import CLIENT_A, CLIENT_B, NodeProcess, running_node, submit, wait_done

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    with running_node(tmp_path_factory.mktemp("embedded")) as node:
        yield node


def test_echo_job_round_trip(node: NodeProcess) -> None:
    with node.client() as http:
        job_id = submit(http, ["echo"], {"x": 1})
        assert wait_done(http, job_id) == {
            "id": job_id,
            "status": "success",
            "result": {"container": "echo", "output": {"x": 1}},
        }
        # With intermediate=true the (empty) list of earlier outputs is included.
        assert wait_done(http, job_id, intermediate=True) == {
            "id": job_id,
            "status": "success",
            "result": {"container": "echo", "output": {"x": 1}},
            "intermediate": [],
        }
        assert job_id in http.get("/api/jobs").json()
        assert job_id in http.get("/api/jobs", params={"pending": "false"}).json()
        assert job_id not in http.get("/api/jobs", params={"pending": "true"}).json()


def test_echo_chain_keeps_nested_data(node: NodeProcess) -> None:
    data = {"nested": {"list": [1, 2.5, "three", None, True]}, "unicode": "żółw ✓"}
    with node.client() as http:
        job_id = submit(http, ["echo", "echo"], data)
        result = wait_done(http, job_id, intermediate=True)
    assert result == {
        "id": job_id,
        "status": "success",
        "result": {"container": "echo", "output": data},
        "intermediate": [{"container": "echo", "output": data}],
    }


def test_several_ids_in_one_get(node: NodeProcess) -> None:
    with node.client() as http:
        ids = [submit(http, ["echo"], {"n": n}) for n in range(3)]
        for job_id in ids:
            wait_done(http, job_id)
        response = http.get("/api/jobs", params=[("id", ids[2]), ("id", "no-such-id"), ("id", ids[0])])
    assert response.status_code == 200
    assert [(r["id"], r["result"]["output"]) for r in response.json()] == [(ids[2], {"n": 2}), (ids[0], {"n": 0})]


def test_info_lists_echo(node: NodeProcess) -> None:
    with node.client() as http:
        response = http.get("/info")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert info["containers"] == [
        {"id": "echo", "image": "", "description": "Returns its input data unchanged", "external": True}
    ]
    assert set(info["pending"]) == {"offchain", "onchain"}
    assert isinstance(info["pending"]["offchain"], int) and info["pending"]["onchain"] == 0
    assert info["chain"] == {"enabled": False, "address": ""}


def test_health(node: NodeProcess) -> None:
    with node.client() as http:
        response = http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "healthy"}


def test_batch(node: NodeProcess) -> None:
    with node.client() as http:
        response = http.post(
            "/api/jobs/batch",
            json=[
                {"containers": ["echo"], "data": {"i": 0}},
                {"containers": ["nope"], "data": {}},
                {"containers": "echo", "data": {}},
            ],
        )
        assert response.status_code == 200
        first, second, third = response.json()
        assert list(first) == ["id"]
        assert second == {"error": "Container not supported", "params": {"container": "nope"}}
        assert third == {
            "error": "Invalid job request: Expected `array`, got `str`",
            "params": {"path": "$[2].containers"},
        }
        assert wait_done(http, first["id"])["result"] == {"container": "echo", "output": {"i": 0}}


# -- client scoping: jobs are visible only to the source address that made them ---------------


def test_jobs_are_scoped_to_the_source_address(node: NodeProcess) -> None:
    with node.client(CLIENT_A) as a, node.client(CLIENT_B) as b:
        job_a = submit(a, ["echo"], {"who": "a"})
        job_b = submit(b, ["echo"], {"who": "b"})
        assert wait_done(a, job_a)["result"] == {"container": "echo", "output": {"who": "a"}}
        assert wait_done(b, job_b)["result"] == {"container": "echo", "output": {"who": "b"}}

        ids_a = a.get("/api/jobs").json()
        ids_b = b.get("/api/jobs").json()
        assert job_a in ids_a and job_b not in ids_a
        assert job_b in ids_b and job_a not in ids_b

        for http, foreign in ((b, job_a), (a, job_b)):
            response = http.get("/api/jobs", params={"id": foreign})
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/json"
            assert response.json() == []

        # Asking for both ids returns only the caller's own.
        response = b.get("/api/jobs", params=[("id", job_a), ("id", job_b)])
        assert response.status_code == 200
        assert [r["id"] for r in response.json()] == [job_b]


def test_an_id_in_the_body_is_ignored(node: NodeProcess) -> None:
    """The server makes the id; a client cannot plant one another client would read."""
    with node.client(CLIENT_A) as a, node.client(CLIENT_B) as b:
        job_id = submit(a, ["echo"], {"k": 1}, id="chosen-id", ip=CLIENT_B)
        assert job_id != "chosen-id"
        wait_done(a, job_id)
        assert b.get("/api/jobs", params={"id": job_id}).json() == []
        assert b.get("/api/jobs", params={"id": "chosen-id"}).json() == []


# -- PUT /api/status -------------------------------------------------------------------------


def test_put_status_from_loopback_records_the_job(node: NodeProcess) -> None:
    with node.client(CLIENT_A) as a, node.client(CLIENT_B) as b:
        response = a.put("/api/status", json={"id": "legacy-job-1", "status": "running", "containers": ["echo"]})
        assert response.status_code == 200
        assert response.json() == {"id": "legacy-job-1", "status": "running"}
        assert "legacy-job-1" in a.get("/api/jobs").json()
        assert "legacy-job-1" in a.get("/api/jobs", params={"pending": "true"}).json()
        assert a.get("/api/jobs", params={"id": "legacy-job-1"}).json() == [
            {"id": "legacy-job-1", "status": "running", "result": None}
        ]

        response = a.put("/api/status", json={"id": "legacy-job-1", "status": "success", "containers": ["echo"]})
        assert response.status_code == 200
        assert "legacy-job-1" in a.get("/api/jobs", params={"pending": "false"}).json()
        assert a.get("/api/jobs", params={"id": "legacy-job-1"}).json() == [
            {"id": "legacy-job-1", "status": "success", "result": None}
        ]

        # A finished job cannot be moved again.
        response = a.put("/api/status", json={"id": "legacy-job-1", "status": "running", "containers": ["echo"]})
        assert response.status_code == 409
        assert response.json()["params"]["id"] == "legacy-job-1"

        # The recorded id belongs to 127.0.0.1 only.
        assert "legacy-job-1" not in b.get("/api/jobs").json()
        assert b.get("/api/jobs", params={"id": "legacy-job-1"}).json() == []


def test_put_status_bad_body(node: NodeProcess) -> None:
    with node.client() as http:
        response = http.put("/api/status", json={"id": "x", "status": "done", "containers": []})
        assert response.status_code == 400
        body = response.json()
        assert body["error"].startswith("Invalid status: ")
        assert body["params"] == {"path": "$.status"}
