"""No silent expiry, on the real ``infernet-node``: jobs queued for a container slot past
``store.pending_ttl`` end ``failed`` with the expiry reason (never unknown ids), on every
store, and stay so across a kill -9 and a restart."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import ServiceProcess, client, get_result, start_node, start_services, submit, wait_done
from support.redis_server import redis_available, start_redis

from infernet_core.store import EXPIRED_REASON

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SLOW = 1.5
"""Seconds each container call takes."""
SLOTS = 2
"""The container's max_concurrency: jobs beyond it queue for a slot."""
PENDING_TTL = 1.0
JOBS = 12


@pytest.fixture(scope="module")
def slow() -> Iterator[ServiceProcess]:
    services = start_services({"slow": "slow"}, delay=SLOW)
    try:
        yield services["slow"]
    finally:
        services["slow"].kill()


def store_config(kind: str, tmp_path: Path, redis_port: int | None) -> dict[str, Any]:
    store: dict[str, Any] = {"kind": kind, "pending_ttl": PENDING_TTL}
    if kind == "sqlite":
        store["path"] = str(tmp_path / "jobs.db")
    if kind == "redis":
        store["url"] = f"redis://127.0.0.1:{redis_port}/0"
    return store


@pytest.mark.parametrize("kind", ["memory", "sqlite", "redis"])
def test_jobs_queued_past_pending_ttl_fail_as_expired_never_vanish(
    kind: str, slow: ServiceProcess, tmp_path: Path
) -> None:
    redis = None
    if kind == "redis":
        if not redis_available():
            pytest.skip("redis-server is not installed")
        redis, port = start_redis(tmp_path)
    config = {
        "manage_containers": False,
        "store": store_config(kind, tmp_path, port if redis else None),
        "containers": [{"id": "slow", "url": slow.url, "max_concurrency": SLOTS}],
    }
    node = start_node(tmp_path, config)
    try:
        with client(base_url=node.base_url) as http:
            ids = [submit(http, ["slow"], {"n": n}) for n in range(JOBS)]
            results = [wait_done(http, job_id, timeout=JOBS * SLOW) for job_id in ids]
        # Two slots, 1.5 s a call, 1 s to live: no job finishes in time, and none is lost.
        assert [r["status"] for r in results] == ["failed"] * JOBS
        assert all(r["result"] == {"container": "", "error": EXPIRED_REASON} for r in results)
        # The expired calls were given up: the node has nothing left to wait for.
        if kind == "memory":
            assert node.stop() == 0
            return
        os.kill(node.pid, signal.SIGKILL)
        node.proc.wait(5)
        node.stop()
        node = start_node(tmp_path, config)  # the same file or Redis: every id is still there
        with client(base_url=node.base_url) as http:
            assert [get_result(http, job_id) for job_id in ids] == results
    finally:
        node.stop()
        if redis is not None:
            redis.kill()
            redis.wait(5)
