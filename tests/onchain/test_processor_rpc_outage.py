"""The processor during an RPC outage: failed reads count no attempt against the interval, so
an outage longer than three sweeps does not make it give up (the real-chain behaviour is in
tests/e2e/test_e2e_chain.py; here the RPC is a stand-in that fails on command)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import anyio
import pytest

from infernet_core.chain.processor import SubscriptionProcessor
from infernet_core.guardian import ContainerRules, Guardian
from infernet_core.jobs import ContainerSucceeded, JobCompleted, apply, new_job
from infernet_core.models import ContainerOutput, Source
from infernet_core.subscriptions import Subscription

pytestmark = pytest.mark.anyio

NODE = "0x" + "77" * 20
SUBSCRIPTION = Subscription(
    id=1,
    owner="0x" + "11" * 20,
    active_at=0,
    period=0,
    frequency=1,
    redundancy=1,
    max_gas_price=10**9,
    max_gas_limit=10**6,
    container_id="echo",
    inputs=b"\x01",
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FlakyChain:
    """Coordinator and wallet stand-ins whose reads fail while ``down`` is set."""

    address = "0x" + "cc" * 20

    def __init__(self) -> None:
        self.down = True
        self.failed_reads = 0
        self.sent: list[bytes] = []
        self.w3 = SimpleNamespace(eth=self)

    async def _check(self) -> None:
        if self.down:
            self.failed_reads += 1
            raise ConnectionError("RPC unreachable")

    async def get_block(self, _: str) -> dict[str, int]:
        return {"timestamp": 100}

    @property
    async def gas_price(self) -> int:
        await self._check()
        return 1

    async def node_responded(self, *_: Any) -> bool:
        await self._check()
        return False

    async def redundancy_count(self, *_: Any) -> int:
        await self._check()
        return 0

    def deliver_compute(self, subscription_id: int, interval: int, payload: Any) -> bytes:
        return f"{subscription_id}:{interval}".encode()

    async def transact(self, to: str, data: bytes, **_: Any) -> bytes:
        self.sent.append(data)
        return b"\x01" * 32

    async def wait(self, tx_hash: bytes, timeout: float) -> dict[str, int]:
        return {"status": 1}


async def run_echo(containers: Any, data: Any, source: Source) -> Any:
    job = new_job("j", "onchain", list(containers), created_at=0.0)
    job = apply(job, ContainerSucceeded(output=ContainerOutput(container="echo", output=data)))
    return apply(job, JobCompleted(), now=0.0)


async def test_an_outage_longer_than_three_sweeps_counts_no_attempt() -> None:
    chain = FlakyChain()
    wallet = SimpleNamespace(address=NODE, transact=chain.transact, wait=chain.wait)
    guardian = Guardian({"echo": ContainerRules.build("echo")})
    processor = SubscriptionProcessor(chain, wallet, guardian, run_echo, period=0.01)  # type: ignore[arg-type]
    processor.track(SUBSCRIPTION)
    async with anyio.create_task_group() as group:
        group.start_soon(processor.run, group)
        with anyio.fail_after(10):
            while chain.failed_reads < 3 * 5:  # five slots' worth of exhausted retries
                await anyio.sleep(0.05)
        assert chain.sent == []
        chain.down = False
        with anyio.fail_after(10):
            while not chain.sent:
                await anyio.sleep(0.01)
        group.cancel_scope.cancel()
    assert chain.sent == [b"1:1"]
