"""Big batches on the real ``infernet-node``: more than ``server.max_batch`` items is 413 naming
the limit; while maximal batches are admitted another client keeps being answered (between
slices, not only between batches), and every item of every batch gets its answer."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from e2e_support import CLIENT_B, client, running_node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ITEM = {"containers": ["echo"], "data": {"n": 1}}
BATCHES = 4


def test_batches_are_bounded_and_do_not_hold_up_other_clients(tmp_path: Path) -> None:
    with running_node(tmp_path) as node:  # the embedded default: memory store, in-process echo
        with client(base_url=node.base_url) as http:
            big = http.post("/api/jobs/batch", json=[ITEM] * 1001)
            assert big.status_code == 413
            assert big.json() == {"error": "Too many requests in one batch", "params": {"limit": 1000, "count": 1001}}
        done = threading.Event()
        answered_during: list[int] = []

        def batch() -> httpx.Response:
            with client(base_url=node.base_url) as http:
                return http.post("/api/jobs/batch", json=[ITEM] * 1000)

        def probe() -> None:
            with client(CLIENT_B, base_url=node.base_url) as http:
                while not done.is_set():
                    assert http.get("/health").json() == {"status": "healthy"}
                    if not done.is_set():
                        answered_during.append(1)

        with ThreadPoolExecutor(BATCHES + 1) as pool:
            prober = pool.submit(probe)
            batches = [pool.submit(batch) for _ in range(BATCHES)]
            responses = [b.result() for b in batches]
            done.set()
            prober.result()
    for response in responses:
        assert response.status_code == 200
        entries = response.json()
        assert len(entries) == 1000 and all(list(entry) == ["id"] for entry in entries)
    # A node that admitted a batch in one go would answer the probe only between batches.
    assert len(answered_during) > BATCHES + 1, len(answered_during)
