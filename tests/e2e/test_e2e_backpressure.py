"""Backpressure on the real ``infernet-node``: with ``server.max_pending`` low and a slow
container, the excess of a burst gets 503 + Retry-After, and every accepted job finishes."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from e2e_support import SLOW_DELAY, client, running_node, start_services, wait_done

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

MAX_PENDING = 8
BURST = 40


def test_a_burst_past_max_pending_is_refused_and_the_rest_finish(tmp_path: Path) -> None:
    services = start_services({"slow": "slow"})
    try:
        config = {
            "manage_containers": False,
            "server": {"max_pending": MAX_PENDING},
            "store": {"kind": "sqlite", "path": str(tmp_path / "jobs.db")},
            "containers": [{"id": "slow", "url": services["slow"].url}],
        }
        with running_node(tmp_path, config) as node:

            def post(n: int) -> httpx.Response:
                with client(base_url=node.base_url) as http:
                    return http.post("/api/jobs", json={"containers": ["slow"], "data": {"n": n}})

            with ThreadPoolExecutor(BURST) as pool:
                responses = list(pool.map(post, range(BURST)))
            accepted = [r.json()["id"] for r in responses if r.status_code == 200]
            refused = [r for r in responses if r.status_code != 200]
            # The container takes SLOW_DELAY per call, so the burst outruns it: exactly the
            # bound is accepted, and every other request is told to come back.
            assert len(accepted) == MAX_PENDING
            assert len(refused) == BURST - MAX_PENDING
            for response in refused:
                assert response.status_code == 503
                assert response.headers["retry-after"] == "1"
                assert response.json()["error"] == "Too many pending jobs"
            with client(base_url=node.base_url) as http:
                for job_id in accepted:
                    result = wait_done(http, job_id, timeout=SLOW_DELAY * BURST)
                    assert result["status"] == "success"
                # With the backlog gone there is room again.
                response = http.post("/api/jobs", json={"containers": ["slow"], "data": {}})
                assert response.status_code == 200
    finally:
        for service in services.values():
            service.kill()
