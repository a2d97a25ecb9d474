"""Fixtures shared by every test package.

``redis_url`` (session-scoped) starts one throwaway ``redis-server`` on loopback (see
``support/redis_server.py``) and stops it by PID at the end; ``redis_url_clean`` is the same
URL with the database flushed before the test. Tests that need their own server (to stop and
restart it) call :func:`support.redis_server.start_redis` themselves.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator

import pytest
from support.chain_fixtures import active_deployment, anvil_url, chain_contracts, deployment, w3  # noqa: F401
from support.redis_server import redis_available, start_redis, stop_redis


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``redis://127.0.0.1:P/0`` of a redis-server started for this test session."""
    if not redis_available():
        pytest.fail("redis-server is not installed: run scripts/test.sh, or apt-get install -y redis-server")
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_redis(proc)


def flush_redis(url: str) -> None:
    """FLUSHALL the server at ``url`` (a ``redis://127.0.0.1:P/...`` one), over a plain socket."""
    port = int(url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        reply = sock.recv(64)
    if not reply.startswith(b"+OK"):
        raise RuntimeError(f"FLUSHALL failed: {reply!r}")


@pytest.fixture
def redis_url_clean(redis_url: str) -> str:
    """The session's Redis URL, with every key deleted before the test."""
    flush_redis(redis_url)
    return redis_url


def pytest_collection_finish(session: pytest.Session) -> None:
    """Undo py_ecc's import-time ``sys.setrecursionlimit(100_000)`` (it comes with eth-account,
    which the chain tests import directly): at that limit a deeply nested JSON body overflows
    the C stack in msgspec instead of raising RecursionError. The node itself restores the
    limit when it imports its chain module (see ``infernet_core.chain``)."""
    sys.setrecursionlimit(min(sys.getrecursionlimit(), 1000))
