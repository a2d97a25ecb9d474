"""What rate limiting and metrics cost on ``POST /api/jobs``, side by side in one run, with wrk.

Variants, each an ``infernet-node`` process calling the HTTP echo container, interleaved in
rounds of ``wrk -c32``: with neither (``server.metrics: false``, no ``server.rate_limit``),
with metrics, with a rate limit every request stays under (so each is checked and allowed),
and with both; on a memory store and on Redis (where the limit's buckets live in Redis, one
more script per request, shared by replicas). Printed: accepted requests per second, median
of the rounds, and each variant's cost against its store's plain variant.

Targets (issue 12): a request under the limit costs at most 5 %; limit and metrics together
at most 10 %.

Usage:
    .venv/bin/python benchmarks/bench_operator_cost.py [--rounds 5] [--duration 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench_production import WRK_SCRIPT, http_config, run_wrk, start_echo, start_nodes, start_redis
from loadgen import Server, run_with_servers

UNLIMITED = {"num_requests": 1_000_000_000, "period": 1.0}
"""A rate limit no benchmark reaches: every request is checked and allowed."""

SETTINGS = {
    "plain": {"metrics": False},
    "metrics": {"metrics": True},
    "rate limit": {"metrics": False, "rate_limit": UNLIMITED},
    "both": {"metrics": True, "rate_limit": UNLIMITED},
}


async def run(args: argparse.Namespace, log_dir: Path, started: list[Server]) -> dict[str, Any]:
    script = log_dir / "post.lua"
    script.write_text(WRK_SCRIPT)
    echo = await start_echo("echo", log_dir, started)
    redis_url = start_redis(log_dir, started)
    stores = {"memory": {"kind": "memory"}, "redis": {"kind": "redis", "url": redis_url}}
    nodes: dict[str, Server] = {}
    for store_name, store in stores.items():
        for setting, server in SETTINGS.items():
            name = f"{store_name} {setting}"
            config = http_config(echo, {**store, "prefix": name.replace(" ", "-")}, **server)
            [nodes[name]] = await start_nodes(name, config, 1, log_dir, started)
    rates: dict[str, list[float]] = {name: [] for name in nodes}
    for round_number in range(args.rounds):
        for name, node in nodes.items():
            print(f"  {name} (round {round_number + 1})", flush=True)
            load = await run_wrk([node], 32, args.duration, script)
            if set(load.statuses) != {200} or load.socket_errors:
                raise RuntimeError(f"{name}: {load.statuses}, socket errors {load.socket_errors}")
            rates[name].append(load.accepted / args.duration)
            await asyncio.sleep(1.0)  # let the backlog drain
    return {name: values for name, values in rates.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        rates = run_with_servers(run, args, Path(tmp))
    print()
    print(f"POST /api/jobs accepted/s, wrk -c32, HTTP echo container, median of {args.rounds} rounds")
    for store in ("memory", "redis"):
        plain = rates[f"{store} plain"]
        for setting in SETTINGS:
            values = rates[f"{store} {setting}"]
            cost = statistics.median(1 - v / p for v, p in zip(values, plain, strict=True))
            print(f"  {store:<7} {setting:<11} {statistics.median(values):>8.0f}/s   cost {cost:>6.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
