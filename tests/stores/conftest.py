"""Fixtures of the store tests.

``kind`` runs a test once per store kind. ``store_factory(retention)`` opens a store of that
kind (closed, and for Redis its keys deleted, at the end of the test); every Redis store gets a
prefix of its own, so tests never see each other's keys and nothing is flushed. ``timeline``
moves time for the store: the injected fake clock of memory and sqlite, real sleeping for Redis
(whose scripts read Redis's own clock), in *units* so that one test reads the same for every
kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_kit import KINDS, OpenedStore, StoreFactory, Timeline, open_store

from infernet_core.store import ResultStore, Retention


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def redis_url_if_needed(kind: str, request: pytest.FixtureRequest) -> str | None:
    """The session's Redis URL, only for the redis kind (the others start no server)."""
    return str(request.getfixturevalue("redis_url")) if kind == "redis" else None


@pytest.fixture
def timeline(kind: str) -> Timeline:
    return Timeline(kind)


@pytest.fixture
async def store_factory(
    kind: str, timeline: Timeline, tmp_path: Path, redis_url_if_needed: str | None
) -> AsyncIterator[StoreFactory]:
    """``await store_factory(retention=None)``: an open store of the test's kind."""
    opened: list[OpenedStore] = []

    async def make(retention: Retention | None = None) -> ResultStore:
        store = await open_store(
            kind, retention or Retention(), clock=timeline.clock, tmp_dir=tmp_path, redis_url=redis_url_if_needed
        )
        opened.append(store)
        return store.store

    yield make
    for store in opened:
        await store.close()
