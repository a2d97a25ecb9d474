"""Fuzz the REST API of the real ``infernet-node`` on each store: well-formed HTTP to the real
routes with odd query strings, headers and bodies (every field of JobRequest,
DelegatedSubscriptionRequest, batch arrays and PUT /api/status right, missing or wrong; huge
numbers and strings; invalid UTF-8; nesting up to msgspec's own limit).

Besides the per-request checks (``fuzz_support.send_checked``), whatever the node accepts
must be readable: a job id from POST /api/jobs, /api/jobs/batch or /api/jobs/stream is
listed by GET /api/jobs?id= with 200 (never 500) until and once it has finished, an
``echo`` job returns its data, and an id recorded by PUT /api/status can be read back."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest
from fuzz_settings import API_EXAMPLES, fuzz_settings
from fuzz_strategies import Wire, api_requests
from fuzz_support import (
    Reply,
    Target,
    brief,
    check_node_healthy,
    decode_json,
    fresh_stack,
    get_job,
    send_wire,
    wait_finished,
)
from hypothesis import given

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

MAX_BATCH_FOLLOWED = 12
"""Ids of one batch response that are read back (the first ones and the last)."""


def decoded(body: bytes) -> Any:
    """The body as the node's own JSON library reads it, or None when it is not JSON."""
    try:
        return decode_json(body)
    except (msgspec.DecodeError, RecursionError):
        return None


def check_job(target: Target, job_id: str, request: Any, context: str) -> None:
    """An accepted job finishes, is readable throughout, and an echo job returns its data."""
    assert uuid.UUID(job_id).version == 4, f"job id {job_id!r} is not a UUID4\n{context}"
    job = wait_finished(target, job_id)
    assert job["status"] in ("success", "failed"), brief(job)
    if isinstance(request, dict) and request.get("containers") == ["echo"]:
        assert job["status"] == "success", f"an echo job failed: {brief(job)}\n{context}"
        assert job["result"]["container"] == "echo", brief(job)
        same = fresh_stack(lambda: target.echo_output(job["result"]["output"]) == request["data"])
        assert same, f"echo changed the data\n{context}"


def check_accepted(target: Target, wire: Wire, reply: Reply) -> None:
    """The properties of a 200 that created or recorded something."""
    context = repr(wire)
    created = (wire.method, wire.path) in (("POST", "/api/jobs"), ("POST", "/api/jobs/batch"), ("PUT", "/api/status"))
    body = reply.json() if created else None
    if wire.method == "POST" and wire.path == "/api/jobs":
        assert isinstance(body, dict) and (body == {} or list(body) == ["id"]), f"{reply!r}\n{context}"
        if "id" in body:
            check_job(target, body["id"], decoded(wire.body), context)
    elif wire.method == "POST" and wire.path == "/api/jobs/batch":
        assert isinstance(body, list), f"{reply!r}\n{context}"
        items = decoded(wire.body)
        if isinstance(items, list):
            assert len(body) == len(items), f"{len(body)} entries for {len(items)} items\n{context}"
        accepted: list[tuple[str, Any]] = []
        for index, entry in enumerate(body):
            assert isinstance(entry, dict), brief(entry)
            if "id" in entry:
                assert list(entry) == ["id"], brief(entry)
                accepted.append((entry["id"], items[index] if isinstance(items, list) else None))
            elif entry:
                assert isinstance(entry.get("error"), str) and set(entry) <= {"error", "params"}, brief(entry)
        for job_id, item in [*accepted[: MAX_BATCH_FOLLOWED - 1], *accepted[-1:]]:
            check_job(target, job_id, item, context)
    elif wire.method == "POST" and wire.path == "/api/jobs/stream":
        first_line, newline, _ = reply.body.partition(b"\n")
        assert newline, f"a stream response without its job id line: {reply!r}\n{context}"
        job_id = first_line.decode()
        assert uuid.UUID(job_id).version == 4, f"{reply!r}\n{context}"
        # The final state is stored before the stream ends: finished at once.
        job = get_job(target, job_id)
        assert job is not None and job["status"] in ("success", "failed"), f"{brief(job)}\n{context}"
    elif wire.method == "PUT" and wire.path == "/api/status":
        assert isinstance(body, dict) and isinstance(body.get("id"), str), f"{reply!r}\n{context}"
        assert get_job(target, body["id"]) is not None, f"recorded id {body['id']!r} is not listed\n{context}"


def test_fuzz_rest_api(target: Target) -> None:
    @fuzz_settings(API_EXAMPLES)
    @given(wire=api_requests())
    def run(wire: Wire) -> None:
        reply = send_wire(target, wire)
        if reply is not None and reply.status == 200:
            check_accepted(target, wire, reply)

    run()
    check_node_healthy(target)
