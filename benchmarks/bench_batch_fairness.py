"""Big batches are fair: ``GET /health`` latency while maximal batches are being admitted.

For each variant (the embedded default; sqlite + the HTTP echo container; Redis + the HTTP
echo container), one keep-alive client times ``GET /health`` back to back, first alone
(the baseline), then while ``--posters`` other clients each post ``server.max_batch``-item
batches (1,000, the default maximum) back to back. Printed: /health p50 and p99, alone and
during the batches, and the batch items admitted per second.

Usage:
    .venv/bin/python benchmarks/bench_batch_fairness.py [--seconds 10] [--posters 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_production import http_config, start_echo, start_nodes, start_redis
from loadgen import Connection, Server, get_bytes, post_bytes, run_with_servers

ITEMS = 1000


def batch_body(items: int) -> bytes:
    return json.dumps([{"containers": ["echo"], "data": {"n": n}} for n in range(items)]).encode()


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 2),
        "samples": len(ordered),
    }


async def health_loop(node: Server, seconds: float) -> list[float]:
    conn = Connection(node.port)
    await conn.open()
    request = get_bytes("/health")
    samples: list[float] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            status, _ = await conn.request(request)
            if status != 200:
                raise RuntimeError(f"/health answered {status}")
            samples.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)
    finally:
        await conn.close()
    return samples


async def poster(node: Server, body: bytes, stop: asyncio.Event) -> int:
    conn = Connection(node.port)
    await conn.open()
    request = post_bytes("/api/jobs/batch", body)
    admitted = 0
    try:
        while not stop.is_set():
            status, raw = await conn.request(request)
            if status != 200:
                raise RuntimeError(f"batch answered {status}: {raw[:200]!r}")
            admitted += sum(1 for entry in json.loads(raw) if "id" in entry)
    finally:
        await conn.close()
    return admitted


async def measure(node: Server, args: argparse.Namespace) -> dict[str, Any]:
    alone = await health_loop(node, args.seconds / 2)
    stop = asyncio.Event()
    body = batch_body(ITEMS)
    posters = [asyncio.ensure_future(poster(node, body, stop)) for _ in range(args.posters)]
    await asyncio.sleep(0.2)  # the batches are under way
    started = time.perf_counter()
    during = await health_loop(node, args.seconds)
    stop.set()
    admitted = sum(await asyncio.gather(*posters))
    elapsed = time.perf_counter() - started
    return {
        "health_alone": percentiles(alone),
        "health_during_batches": percentiles(during),
        "batch_items_per_s": round(admitted / elapsed),
    }


async def run(args: argparse.Namespace, log_dir: Path, started: list[Server]) -> dict[str, Any]:
    echo = await start_echo("echo", log_dir, started)
    redis_url = start_redis(log_dir, started)
    variants = {
        "embedded": None,
        "sqlite+http": http_config(echo, {"kind": "sqlite", "path": str(log_dir / "jobs.db")}),
        "redis+http": http_config(echo, {"kind": "redis", "url": redis_url}),
    }
    figures = {}
    for name, config in variants.items():
        [node] = await start_nodes(name, config, 1, log_dir, started)
        print(f"  {name}: /health alone, then during {args.posters} x {ITEMS}-item batches", flush=True)
        figures[name] = await measure(node, args)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds of /health timing during the batches")
    parser.add_argument("--posters", type=int, default=4, help="clients posting batches at once")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        figures = run_with_servers(run, args, Path(tmp))
    print()
    print(f"GET /health while {args.posters} clients post {ITEMS}-item batches back to back")
    print(f"{'variant':<12} {'alone p50/p99 ms':>17} {'during p50/p99 ms':>18} {'items/s':>8}")
    for name, f in figures.items():
        alone, during = f["health_alone"], f["health_during_batches"]
        print(
            f"{name:<12} {alone['p50_ms']:>8} / {alone['p99_ms']:<6} {during['p50_ms']:>8} / {during['p99_ms']:<7}"
            f" {f['batch_items_per_s']:>8}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
