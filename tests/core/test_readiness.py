"""Readiness: the node says what keeps it from doing its job (store, containers), each check
bounded in time; empty when ready."""

from __future__ import annotations

import socket

import anyio
import pytest

from infernet_core import ContainerConfig, MemoryResultStore, Node, NodeConfig
from infernet_core.errors import StoreUnavailable
from infernet_core.readiness import run_checks

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class BrokenStore(MemoryResultStore):
    broken = False

    async def pending_count(self) -> int:
        if self.broken:
            raise StoreUnavailable("Result store unavailable: cannot reach it")
        return await super().pending_count()


async def test_ready_when_the_store_and_every_container_answer() -> None:
    port = closed_port()
    store = BrokenStore()
    config = NodeConfig(manage_containers=False, containers=[ContainerConfig(id="web", url=f"http://127.0.0.1:{port}")])
    node = Node(config, store=store)
    assert await node.readiness() == {"node": "not running"}
    async with node:
        problems = await node.readiness()
        assert list(problems) == ["container web"]
        assert problems["container web"].startswith(f"127.0.0.1:{port} refuses connections")
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with listener:
            assert await node.readiness() == {}
            store.broken = True
            assert await node.readiness() == {"store": "Result store unavailable: cannot reach it"}


async def test_a_check_that_hangs_or_crashes_is_not_ready() -> None:
    async def hangs() -> str | None:
        await anyio.sleep(10)
        return None

    async def crashes() -> str | None:
        raise KeyError("x")

    async def fine() -> str | None:
        return None

    with anyio.fail_after(2):
        problems = await run_checks({"slow": hangs, "bad": crashes, "ok": fine}, timeout=0.2)
    assert problems == {"bad": "failed (KeyError)", "slow": "no answer within 0.2 s"}
