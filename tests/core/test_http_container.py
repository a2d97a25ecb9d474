"""HttpContainer's own logic: at most max_concurrency calls in flight to one container."""

from __future__ import annotations

import anyio
import httpx
import pytest

from infernet_core import ContainerConfig, ContainerInput, HttpContainer, Source

pytestmark = pytest.mark.anyio


async def test_calls_beyond_max_concurrency_wait_their_turn() -> None:
    in_flight = 0
    peak = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await anyio.sleep(0.02)
        in_flight -= 1
        return httpx.Response(200, json={"ok": True})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        container = HttpContainer(ContainerConfig(id="c", url="http://127.0.0.1:1", max_concurrency=2), client)
        payload = ContainerInput(source=Source.OFFCHAIN, destination=Source.OFFCHAIN, data={})
        outputs: list[object] = []

        async def call() -> None:
            outputs.append(await container.run(payload))

        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(call)
    assert outputs == [{"ok": True}] * 6
    assert peak == 2
