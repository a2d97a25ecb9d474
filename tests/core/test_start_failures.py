"""A start that fails half-way releases everything it opened (the SQLite file's lock, pools):
the next node on the same file starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from infernet_core import ConfigError, MemoryRateLimiter, Node, RateLimit, SqliteResultStore, parse_config

pytestmark = pytest.mark.anyio

CHAIN = {
    "enabled": True,
    "rpc_url": "http://127.0.0.1:9",
    "coordinator_address": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
    "wallet": {"private_key": "0x" + "1" * 64},
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def starts_on(path: Path) -> bool:
    async with Node(store=SqliteResultStore(path)) as node:
        return node.running


async def test_a_missing_chain_extra_leaves_no_lock_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "infernet_core.chain", None)  # as if web3 were not installed
    path = tmp_path / "jobs.db"
    node = Node(parse_config({"chain": CHAIN}), store=SqliteResultStore(path))
    with pytest.raises(ConfigError, match="the chain extra is missing"):
        async with node:
            pass
    assert await starts_on(path)


class FailingLimiter(MemoryRateLimiter):
    async def open(self) -> None:
        raise OSError("cannot open")


async def test_a_part_that_fails_to_open_closes_those_opened_before_it(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    node = Node(store=SqliteResultStore(path), rate_limiter=FailingLimiter(RateLimit(1, 1.0)))
    with pytest.raises(OSError, match="cannot open"):
        async with node:
            pass
    assert await starts_on(path)  # the store opened first was closed, its lock released
