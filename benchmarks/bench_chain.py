"""On-chain figures: delivery latency and start-up snapshot speed, against a real anvil.

1. **Latency**: a node (in-process ``Node`` with the chain enabled and one in-process
   container) serves 50 callback subscriptions created one after another, each at a random
   point of the node's poll cycle; for each, the
   time from the ``SubscriptionCreated`` transaction's receipt to the receipt of the node's
   delivery (seen through the consumer's record). Reported as p50 / p90 / max, for the
   default ``sync_period`` (0.5 s) and for 0.1 s.
2. **Snapshot**: ``--subscriptions`` recurring subscriptions (not yet active, so nothing
   is delivered) are created first; a fresh node is started and its listener's snapshot is
   timed (``batch_size`` 500, no pause between batches): subscriptions read per second.

Everything runs on loopback: anvil on a free 127.0.0.1 port, started and stopped here.

Usage: ``.venv/bin/python benchmarks/bench_chain.py [--quick] [--subscriptions N]``
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support import chain_kit as kit  # noqa: E402
from support.anvil import start_anvil, stop_anvil  # noqa: E402

from infernet_core import LocalContainer, Node  # noqa: E402
from infernet_core.config import NodeConfig, parse_config  # noqa: E402


def node_config(rpc_url: str, coordinator: str, sync_period: float) -> NodeConfig:
    """A chain-enabled node config for the benchmark's wallet and Coordinator."""
    return parse_config(
        {
            "manage_containers": False,
            "chain": {
                "enabled": True,
                "rpc_url": rpc_url,
                "trail_head_blocks": 0,
                "coordinator_address": coordinator,
                "wallet": {"private_key": kit.NODE_KEYS[0]},
                "snapshot_sync": {"sync_period": sync_period, "batch_size": 500, "sleep": 0.0},
            },
        }
    )


async def echo(payload: Any) -> Any:
    """The benchmark's container: returns its input."""
    return {"input": payload.data}


async def latency(deployment: kit.Deployment, rpc_url: str, sync_period: float, count: int) -> dict[str, float]:
    """Seconds from SubscriptionCreated's receipt to the delivery, over ``count`` callbacks."""
    w3, consumer = deployment.w3, deployment.consumer
    config = node_config(rpc_url, deployment.coordinator.address, sync_period)
    samples: list[float] = []
    async with Node(config, containers=[LocalContainer("echo", echo)]) as node:
        assert node.chain is not None
        await node.chain.listener.synced.wait()
        for index in range(count):
            # Arrive at a random point of the node's poll cycle, as real subscriptions do;
            # back to back, every creation would land just after a poll and wait a whole one.
            await anyio.sleep(random.uniform(0, sync_period))
            before = consumer.functions.deliveryCount().call()
            call = consumer.functions.requestCallback("echo", f"job {index}".encode(), 10**12, 1_000_000, 1)
            kit.send(w3, call, kit.DEPLOYER_KEY)
            created = time.perf_counter()
            deadline = created + 30
            while consumer.functions.deliveryCount().call() == before:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"subscription {index} was not delivered within 30 s")
                await anyio.sleep(0.005)
            samples.append(time.perf_counter() - created)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples) * 1000, 1),
        "p90_ms": round(samples[int(len(samples) * 0.9) - 1] * 1000, 1),
        "max_ms": round(samples[-1] * 1000, 1),
    }


async def snapshot(deployment: kit.Deployment, rpc_url: str, count: int) -> dict[str, float]:
    """Create ``count`` future subscriptions, then time a fresh node's snapshot of them."""
    w3, consumer = deployment.w3, deployment.consumer
    sender = kit.address_of(kit.DEPLOYER_KEY)
    for _ in range(count):
        # A long period: active only after a day, so the snapshot reads and tracks them all
        # and the processor has nothing to deliver.
        call = consumer.functions.createRecurring("echo", 10**12, 1_000_000, 10, 86_400, 1)
        w3.eth.send_transaction(call.build_transaction({"from": sender}))
    config = node_config(rpc_url, deployment.coordinator.address, 0.5)
    async with Node(config, containers=[LocalContainer("echo", echo)]) as node:
        assert node.chain is not None
        await node.chain.listener.synced.wait()
        stats = node.chain.listener.stats
        assert stats is not None
    return {
        "subscriptions": stats.subscriptions,
        "tracked": stats.tracked,
        "seconds": round(stats.seconds, 3),
        "per_second": round(stats.subscriptions / stats.seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10 latency samples, 500 subscriptions")
    parser.add_argument("--subscriptions", type=int, default=None, help="subscriptions for the snapshot")
    args = parser.parse_args()
    samples = 10 if args.quick else 50
    subscriptions = args.subscriptions or (500 if args.quick else 3000)
    with tempfile.TemporaryDirectory() as workdir:
        proc, _, rpc_url = start_anvil(workdir)
        try:
            w3 = kit.connect(rpc_url)
            contracts = kit.compile_contracts()
            results: dict[str, Any] = {}
            for period in (0.5, 0.1):
                deployment = kit.deploy_contracts(w3, contracts)
                kit.register_and_activate(w3, deployment.coordinator, kit.NODE_KEYS[0])
                results[f"latency_sync_{period}s"] = anyio.run(latency, deployment, rpc_url, period, samples)
                kit.rpc(w3, "anvil_reset", [])
            deployment = kit.deploy_contracts(w3, contracts)
            results["snapshot"] = anyio.run(snapshot, deployment, rpc_url, subscriptions)
        finally:
            stop_anvil(proc)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
