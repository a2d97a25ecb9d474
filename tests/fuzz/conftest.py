"""Fixtures of the fuzz suite: one real ``infernet-node`` per store, started once for the session.

``target`` is parametrized over the stores:

* ``memory`` -- the embedded default (no config): in-memory store, in-process ``echo``;
* ``sqlite`` -- a config with ``{"store": {"kind": "sqlite", ...}}`` and HTTP container services;
* ``redis``  -- the same on the session's ``redis-server`` (``redis_url``, tests/conftest.py).

The configured nodes serve these containers (``tests/e2e/container_service.py``, started
with ``--no-record`` so that thousands of fuzzed calls do not pile up in memory): ``echo``
(mode ``fast``), ``fail500``, ``nonjson``, ``internal`` (``external: false``) and ``proof``
(``generates_proofs: true``). Everything is stopped by PID at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fuzz_support import SERVICE_SCRIPT, Target, check_node_healthy, running_node, subprocess_env

STORES = ("memory", "sqlite", "redis")


class Service:
    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVICE_SCRIPT), "--mode", mode, "--no-record"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            env=subprocess_env(),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()  # bounded by the test timeout
        if not line.startswith("LISTENING "):
            self.stop()
            raise AssertionError(f"container service ({mode}) did not start: {line!r}")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture(scope="session")
def fuzz_services() -> Iterator[dict[str, Service]]:
    started: dict[str, Service] = {}
    try:
        for mode in ("fast", "fail500", "nonjson"):
            started[mode] = Service(mode)
        yield started
    finally:
        for service in started.values():
            service.stop()


def _containers(services: dict[str, Service]) -> list[dict[str, Any]]:
    fast = services["fast"].url
    return [
        {"id": "echo", "url": fast, "description": "echo over HTTP"},
        {"id": "fail500", "url": services["fail500"].url},
        {"id": "nonjson", "url": services["nonjson"].url},
        {"id": "internal", "url": fast, "external": False},
        {"id": "proof", "url": fast, "generates_proofs": True},
    ]


@pytest.fixture(scope="session", params=STORES)
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A running node on one store; at the end it must still serve, and exit 0 on SIGTERM."""
    store: str = request.param
    directory = tmp_path_factory.mktemp(f"fuzz-{store}")
    config: dict[str, Any] | None = None
    if store != "memory":
        services: dict[str, Service] = request.getfixturevalue("fuzz_services")
        if store == "sqlite":
            store_config = {"kind": "sqlite", "path": str(directory / "results.db")}
        else:
            redis_url: str = request.getfixturevalue("redis_url")
            store_config = {"kind": "redis", "url": redis_url, "prefix": f"fuzz-{uuid.uuid4().hex[:8]}"}
        config = {"manage_containers": False, "containers": _containers(services), "store": store_config}
    with running_node(directory, config) as node:
        fuzzed = Target(store=store, node=node, echo_wraps=store != "memory")
        yield fuzzed
        check_node_healthy(fuzzed)
