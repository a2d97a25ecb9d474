"""Job submission throughput and end-to-end latency of ``infernet-node`` per result store.

Runs the real ``infernet-node --config`` once per store kind, all on the same container:

* ``memory``: ``"store": {"kind": "memory"}``;
* ``sqlite``: ``"store": {"kind": "sqlite", "path": ...}`` (a fresh file);
* ``redis x1``: one node on ``"store": {"kind": "redis", ...}``;
* ``redis x2``: two nodes on one Redis (another key prefix), the load split evenly across both.

A configured node has no in-process ``echo`` container (only the embedded default does), so
every node here calls the same real HTTP container: ``tests/e2e/container_service.py --mode
fast`` (started with ``--no-record``), so the comparison is fair. The Redis server is a
throwaway ``redis-server`` (no persistence), started with ``tests/support/redis_server.py``.
All processes are subprocesses on 127.0.0.1, started here and stopped by PID at the end.

Per round, each kind in turn gets a closed-loop ``POST /api/jobs`` phase, then is left to
finish every job (``GET /info`` until nothing is pending) before the next kind starts; the
ratios (sqlite/memory, redis x2 / redis x1) are taken per round and the median reported.
Then the end-to-end latency of one job at a time on each kind. See benchmarks/README.md.

Usage:
    .venv/bin/python benchmarks/bench_stores.py            # full run, about 3 minutes
    .venv/bin/python benchmarks/bench_stores.py --quick    # about a minute
    .venv/bin/python benchmarks/bench_stores.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loadgen import (
    HOST,
    Server,
    Throughput,
    closed_loop,
    free_port,
    job_body,
    job_latency,
    latency_dict,
    node_command,
    post_bytes,
    run_with_servers,
    start_server,
    submit_one,
    throughput_dict,
    wait_idle,
)

ROOT = Path(__file__).resolve().parent.parent
SERVICE_SCRIPT = ROOT / "tests" / "e2e" / "container_service.py"
sys.path.insert(0, str(ROOT / "tests"))
from support.redis_server import start_redis  # noqa: E402 - after the path it lives on

SQLITE_TARGET_RATIO = 0.5
"""sqlite submission throughput should be within 2x of memory's."""

CONTAINER = "fast"
JOB_BODY = job_body(CONTAINER)
KINDS = ("memory", "sqlite", "redis x1", "redis x2")


@dataclass
class Kind:
    """One store kind under test: its node(s)."""

    name: str
    nodes: list[Server]


async def start_nodes(
    name: str, store: dict[str, Any], count: int, service_url: str, log_dir: Path, started: list[Server]
) -> Kind:
    config = {
        "manage_containers": False,
        "containers": [{"id": CONTAINER, "url": service_url}],
        "store": store,
    }
    slug = name.replace(" ", "-")
    path = log_dir / f"config-{slug}.json"
    path.write_text(json.dumps(config))
    nodes = []
    for index in range(count):
        port = free_port()
        argv = [*node_command(), "--config", str(path), "--host", HOST, "--port", str(port), "--log-level", "WARNING"]
        nodes.append(await start_server(f"node-{slug}-{index + 1}", argv, port, log_dir, started))
    kind = Kind(name, nodes)
    for node in nodes:  # every node runs a job end to end before anything is measured
        _, output = await submit_one(node.port, JOB_BODY)
        if output.get("echo") != {"input": "hello"}:
            raise RuntimeError(f"{name}: unexpected job output {output!r}")
    return kind


async def run(args: argparse.Namespace, log_dir: Path, started: list[Server]) -> dict[str, Any]:
    print("starting the container service, redis-server and 5 nodes on 127.0.0.1 ...", flush=True)
    service_port = free_port()
    service = await start_server(
        "container-fast",
        [sys.executable, str(SERVICE_SCRIPT), "--mode", "fast", "--port", str(service_port), "--no-record"],
        service_port,
        log_dir,
        started,
        ready_path="/calls",
    )
    redis_proc, redis_port = start_redis(log_dir / "redis")
    redis = Server("redis-server", redis_port, redis_proc, log_dir / "redis" / f"redis-{redis_port}.log")
    started.append(redis)
    redis_url = f"redis://{HOST}:{redis_port}/0"
    service_url = f"http://{HOST}:{service_port}"
    kinds = {
        "memory": await start_nodes("memory", {"kind": "memory"}, 1, service_url, log_dir, started),
        "sqlite": await start_nodes(
            "sqlite", {"kind": "sqlite", "path": str(log_dir / "results.db")}, 1, service_url, log_dir, started
        ),
        "redis x1": await start_nodes(
            "redis x1", {"kind": "redis", "url": redis_url, "prefix": "bench-x1"}, 1, service_url, log_dir, started
        ),
        "redis x2": await start_nodes(
            "redis x2", {"kind": "redis", "url": redis_url, "prefix": "bench-x2"}, 2, service_url, log_dir, started
        ),
    }
    await asyncio.sleep(0.5)

    post = post_bytes("/api/jobs", JOB_BODY)
    bound = dict(duration=args.duration, max_requests=args.max_requests, warmup=args.warmup)
    rounds: dict[str, list[Throughput]] = {name: [] for name in KINDS}
    drains: dict[str, list[float]] = {name: [] for name in KINDS}
    for rnd in range(args.rounds):
        for name in KINDS:
            kind = kinds[name]
            print(
                f"  POST /api/jobs, {name}, {args.connections} connections, {args.duration:g} s "
                f"(round {rnd + 1}/{args.rounds})",
                flush=True,
            )
            load = await closed_loop(kind.nodes, post, args.connections, watch=[service, redis], **bound)
            if load.errors:
                raise RuntimeError(f"{name}: {load.errors} submissions failed: {load.statuses}")
            rounds[name].append(load)
            drains[name].append(await wait_idle(kind.nodes[0].port, timeout=args.drain_timeout))

    figures: dict[str, Any] = {"kinds": {}}
    for name in KINDS:
        runs = rounds[name]
        median_run = sorted(runs, key=lambda t: t.rps)[len(runs) // 2]
        figures["kinds"][name] = {
            "nodes": len(kinds[name].nodes),
            "post": {**throughput_dict(median_run), "rounds_rps": [round(t.rps, 1) for t in runs]},
            "drain_seconds": [round(d, 2) for d in drains[name]],
        }
    figures["sqlite_memory_rounds"] = [
        round(s.rps / m.rps, 3) for s, m in zip(rounds["sqlite"], rounds["memory"], strict=True)
    ]
    figures["redis_x2_x1_rounds"] = [
        round(b.rps / a.rps, 3) for b, a in zip(rounds["redis x2"], rounds["redis x1"], strict=True)
    ]

    for name in KINDS:
        kind = kinds[name]
        print(f"  end-to-end job latency, {name}, {args.latency_samples} samples", flush=True)
        lat = await job_latency(
            kind.nodes,
            JOB_BODY,
            args.latency_samples,
            warmup=min(100, args.latency_samples),
            timeout=args.latency_timeout,
        )
        figures["kinds"][name]["latency"] = latency_dict(lat)
    for name in KINDS:
        figures["kinds"][name]["rss_mib"] = [round(node.rss_kib() / 1024, 1) for node in kinds[name].nodes]
    return figures


def verdicts(figures: dict[str, Any]) -> dict[str, Any]:
    sqlite_ratio = statistics.median(figures["sqlite_memory_rounds"])
    return {
        "sqlite_memory_ratio": round(sqlite_ratio, 3),
        "sqlite_memory_met": sqlite_ratio >= SQLITE_TARGET_RATIO,
        "redis_x2_x1_ratio": round(statistics.median(figures["redis_x2_x1_rounds"]), 3),
    }


def print_table(figures: dict[str, Any], checks: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"infernet-node per result store: POST /api/jobs over {args.connections} keep-alive connections, "
        f"{args.rounds} round(s) of {args.duration:g} s (median round shown); container '{CONTAINER}' "
        f"(tests/e2e/container_service.py); loopback {HOST}"
    )
    header = (
        f"{'store':<10} {'POST req/s':>10}  {'job p50':>9} {'job p99':>9}  "
        f"{'node cpu':>8} {'svc cpu':>7} {'redis cpu':>9}  {'drain s':>7}  rounds req/s"
    )
    print("-" * len(header))
    print(header)
    print("-" * len(header))
    for name in KINDS:
        kind = figures["kinds"][name]
        post, lat = kind["post"], kind["latency"]
        other = post.get("other_cpu", {})
        print(
            f"{name:<10} {post['rps']:>10,.0f}  {lat['p50_ms']:>6.2f} ms {lat['p99_ms']:>6.2f} ms  "
            f"{post['server_cpu']:>8.0%} {other.get('container-fast', 0):>7.0%} {other.get('redis-server', 0):>9.0%}  "
            f"{statistics.median(kind['drain_seconds']):>7.2f}  {[round(r) for r in post['rounds_rps']]}"
        )
    print("-" * len(header))
    ok = "MET" if checks["sqlite_memory_met"] else "MISSED"
    print(
        f"sqlite / memory submission throughput: {checks['sqlite_memory_ratio']:.1%} "
        f"(target >= {SQLITE_TARGET_RATIO:.0%}: {ok}); per round {_pct(figures['sqlite_memory_rounds'])}"
    )
    print(
        f"redis x2 / redis x1 submission throughput: {checks['redis_x2_x1_ratio']:.1%} "
        f"(no target); per round {_pct(figures['redis_x2_x1_rounds'])}"
    )
    print(
        "node cpu: the kind's node process(es) summed, as a share of one core; svc/redis cpu: the container "
        "service and redis-server over the same period; drain s: median wait after a phase until no job was pending"
    )


def _pct(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.0%}" for v in values) + "]"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short run (~1 minute): 2 rounds of 1.5 s, 200 samples")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--duration", type=float, help="seconds counted per POST phase (default 3, quick 1.5)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of load before counting starts (0.5)")
    parser.add_argument(
        "--rounds", type=int, help="rounds over the four kinds; medians are reported (default 5, quick 2)"
    )
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="cap on requests counted per phase")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="cap on waiting for a phase's jobs, seconds")
    parser.add_argument(
        "--latency-samples", type=int, help="end-to-end latency samples per kind (default 1000, quick 200)"
    )
    parser.add_argument("--latency-timeout", type=float, default=120.0, help="cap on each latency phase, seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs and the sqlite file")
    args = parser.parse_args(argv)
    defaults = {
        "duration": 1.5 if args.quick else 3.0,
        "rounds": 2 if args.quick else 5,
        "latency_samples": 200 if args.quick else 1000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.connections < 2 or args.rounds < 1 or args.latency_samples < 1:
        parser.error("--connections must be at least 2 (split over two replicas); other counts at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log_dir = Path(tempfile.mkdtemp(prefix="bench_stores_"))
    began = time.monotonic()
    figures = run_with_servers(run, args, log_dir)
    checks = verdicts(figures)
    print_table(figures, checks, args)
    print(f"total time {time.monotonic() - began:.0f} s" + (f"; logs in {log_dir}" if args.keep_logs else ""))
    if args.json:
        report = {
            "figures": figures,
            "checks": checks,
            "targets": {"sqlite_memory_ratio_min": SQLITE_TARGET_RATIO},
            "params": {k: v for k, v in vars(args).items() if k != "json"},
            "environment": {
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            },
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
