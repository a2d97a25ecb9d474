"""Off-chain throughput, latency and memory of the ``infernet-node`` command.

Starts two servers as subprocesses on free 127.0.0.1 ports, both under hypercorn with the
same settings and both from a TCP_NODELAY listening socket handed over as ``fd://``:

* the node: the real ``infernet-node`` command on its embedded default (in-process
  ``echo`` container, in-memory store);
* the baseline: ``benchmarks/bare_app.py``, a raw-ASGI app that answers every request with
  a constant small JSON body.

Then drives them from this process over loopback with a small asyncio load generator
(pre-built HTTP/1.1 request bytes, minimal response parsing) and prints a table; see
benchmarks/README.md for what each figure means. Only loopback addresses are used, and
every loop is bounded in count and time.

Usage:
    .venv/bin/python benchmarks/bench_offchain.py            # full run, a few minutes
    .venv/bin/python benchmarks/bench_offchain.py --quick    # under a minute
    .venv/bin/python benchmarks/bench_offchain.py --json out.json
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
import time
from pathlib import Path
from typing import Any

from loadgen import (
    HOST,
    Server,
    Throughput,
    closed_loop,
    free_port,
    get_bytes,
    job_body,
    job_latency,
    latency_dict,
    node_command,
    post_bytes,
    round_trip,
    run_with_servers,
    start_server,
    stop_servers,
    submit_one,
    throughput_dict,
    wait_idle,
)

HERE = Path(__file__).resolve().parent
BARE_APP = HERE / "bare_app.py"

POST_TARGET_RATIO = 0.5
LATENCY_P50_TARGET_MS = 2.0

JOB_BODY = job_body("echo")


# -- the memory phase ----------------------------------------------------------------------


async def memory_phase(server: Server, jobs: int, connections: int, timeout: float) -> dict[str, Any]:
    """RSS of a fresh node before and after ``jobs`` finished echo jobs."""
    await asyncio.sleep(0.5)  # let start-up settle
    rss_start = server.rss_kib()
    started = time.perf_counter()
    load = await closed_loop(
        server, post_bytes("/api/jobs", JOB_BODY), connections, duration=timeout, max_requests=jobs
    )
    if load.requests < jobs:
        raise RuntimeError(f"only {load.requests} of {jobs} jobs submitted within {timeout:g} s")
    if load.errors:
        raise RuntimeError(f"{load.errors} submissions failed: {load.statuses}")
    await wait_idle(server.port, timeout=60)
    elapsed = time.perf_counter() - started
    rss_end = server.rss_kib()
    return {
        "jobs": jobs,
        "submit_rps": round(load.rps, 1),
        "seconds_to_all_finished": round(elapsed, 2),
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_after_mib": round(rss_end / 1024, 1),
        "rss_growth_mib": round((rss_end - rss_start) / 1024, 1),
        "rss_per_job_bytes": round((rss_end - rss_start) * 1024 / jobs),
        "peak_rss_mib": round(server.hwm_kib() / 1024, 1),
    }


# -- the run --------------------------------------------------------------------------------


async def run(args: argparse.Namespace, log_dir: Path, servers: list[Server]) -> dict[str, Any]:
    conns = args.connections
    node_port, bare_port = free_port(), free_port()
    while bare_port == node_port:
        bare_port = free_port()
    print(f"starting infernet-node on {HOST}:{node_port} and bare_app on {HOST}:{bare_port} ...", flush=True)
    node = await start_server(
        "node",
        [*node_command(), "--host", HOST, "--port", str(node_port), "--log-level", "WARNING"],
        node_port,
        log_dir,
        servers,
    )
    bare = await start_server(
        "bare", [sys.executable, str(BARE_APP), str(bare_port), HOST], bare_port, log_dir, servers
    )
    await asyncio.sleep(0.5)
    node_rss_start = node.rss_kib()

    job_id, _ = await submit_one(node.port, JOB_BODY)
    post = post_bytes("/api/jobs", JOB_BODY)
    get = get_bytes(f"/api/jobs?id={job_id}")
    figures: dict[str, Any] = {}

    def phase(label: str) -> None:
        print(f"  {label} ...", flush=True)

    bound = dict(duration=args.duration, max_requests=args.max_requests, warmup=args.warmup)
    results: dict[str, list[Throughput]] = {k: [] for k in ("node_post", "bare_post", "node_get", "bare_get")}
    for rnd in range(args.rounds):
        suffix = f" (round {rnd + 1}/{args.rounds})" if args.rounds > 1 else ""
        phase(f"POST /api/jobs, node, {conns} connections, {args.duration:g} s{suffix}")
        results["node_post"].append(await closed_loop(node, post, conns, **bound))
        phase(f"POST /api/jobs, bare{suffix}")
        results["bare_post"].append(await closed_loop(bare, post, conns, **bound))
        phase(f"GET /api/jobs?id=..., node{suffix}")
        results["node_get"].append(await closed_loop(node, get, conns, **bound))
        phase(f"GET /api/jobs?id=..., bare{suffix}")
        results["bare_get"].append(await closed_loop(bare, get, conns, **bound))
    for key, runs in results.items():
        # The median round by requests/s.
        best = sorted(runs, key=lambda t: t.rps)[len(runs) // 2]
        figures[key] = throughput_dict(best)
        figures[key]["rounds_rps"] = [round(t.rps, 1) for t in runs]
        for run_ in runs:
            if run_.errors:
                raise RuntimeError(f"{key}: {run_.errors} non-200 responses: {run_.statuses}")
    # node/bare per round (the two phases of a round run back to back, so they share the
    # machine's state); the median of these is the ratio reported.
    for kind in ("post", "get"):
        figures[f"{kind}_ratio_rounds"] = [
            round(n.rps / b.rps, 3) for n, b in zip(results[f"node_{kind}"], results[f"bare_{kind}"], strict=True)
        ]

    phase(f"end-to-end job latency, 1 connection, {args.latency_samples} samples")
    lat = await job_latency(
        node, JOB_BODY, args.latency_samples, warmup=min(200, args.latency_samples), timeout=args.latency_timeout
    )
    bare_rtt = await round_trip(bare, get, min(2000, args.latency_samples))
    node_get_rtt = await round_trip(node, get, min(2000, args.latency_samples))
    figures["latency"] = {
        **latency_dict(lat),
        "node_get_rtt_p50_ms": round(statistics.median(node_get_rtt), 3),
        "bare_rtt_p50_ms": round(statistics.median(bare_rtt), 3),
    }
    figures["node_rss_after_load_mib"] = round(node.rss_kib() / 1024, 1)
    figures["node_rss_start_mib"] = round(node_rss_start / 1024, 1)

    # Memory on a fresh node, so exactly --rss-jobs jobs have run on it.
    stop_servers([node])
    phase(f"memory: fresh node, {args.rss_jobs} echo jobs over {conns} connections")
    mem_port = free_port()
    mem_node = await start_server(
        "node-memory",
        [*node_command(), "--host", HOST, "--port", str(mem_port), "--log-level", "WARNING"],
        mem_port,
        log_dir,
        servers,
    )
    figures["memory"] = await memory_phase(mem_node, args.rss_jobs, conns, timeout=args.rss_timeout)
    return figures


def verdicts(figures: dict[str, Any]) -> dict[str, Any]:
    post_ratio = statistics.median(figures["post_ratio_rounds"])
    get_ratio = statistics.median(figures["get_ratio_rounds"])
    return {
        "post_ratio": round(post_ratio, 3),
        "get_ratio": round(get_ratio, 3),
        "post_ratio_met": post_ratio >= POST_TARGET_RATIO,
        "latency_p50_met": figures["latency"]["p50_ms"] <= LATENCY_P50_TARGET_MS,
    }


def print_table(figures: dict[str, Any], checks: dict[str, Any], args: argparse.Namespace) -> None:
    def ok(met: bool) -> str:
        return "MET" if met else "MISSED"

    np, bp, ng, bg = (figures[k] for k in ("node_post", "bare_post", "node_get", "bare_get"))
    lat, mem = figures["latency"], figures["memory"]
    rows = [
        (
            "POST /api/jobs  node req/s",
            f"{np['rps']:,.0f}",
            f"server cpu {np['server_cpu']:.0%}, client cpu {np['client_cpu']:.0%}",
        ),
        (
            "POST /api/jobs  bare req/s",
            f"{bp['rps']:,.0f}",
            f"server cpu {bp['server_cpu']:.0%}, client cpu {bp['client_cpu']:.0%}",
        ),
        (
            "POST node / bare",
            f"{checks['post_ratio']:.1%}",
            f"target >= {POST_TARGET_RATIO:.0%}: {ok(checks['post_ratio_met'])}; "
            f"median of rounds {_pct(figures['post_ratio_rounds'])}",
        ),
        (
            "GET ?id=        node req/s",
            f"{ng['rps']:,.0f}",
            f"server cpu {ng['server_cpu']:.0%}, client cpu {ng['client_cpu']:.0%}",
        ),
        (
            "GET ?id=        bare req/s",
            f"{bg['rps']:,.0f}",
            f"server cpu {bg['server_cpu']:.0%}, client cpu {bg['client_cpu']:.0%}",
        ),
        (
            "GET node / bare",
            f"{checks['get_ratio']:.1%}",
            f"(no target); median of rounds {_pct(figures['get_ratio_rounds'])}",
        ),
        (
            "job latency p50",
            f"{lat['p50_ms']:.3f} ms",
            f"target <= {LATENCY_P50_TARGET_MS:g} ms: {ok(checks['latency_p50_met'])}",
        ),
        (
            "job latency p99",
            f"{lat['p99_ms']:.3f} ms",
            f"p90 {lat['p90_ms']:.3f}, max {lat['max_ms']:.3f}, {lat['samples']} samples, "
            f"{lat['mean_polls']:.2f} GETs/job",
        ),
        (
            "  one GET round trip p50",
            f"{lat['node_get_rtt_p50_ms']:.3f} ms",
            f"bare app: {lat['bare_rtt_p50_ms']:.3f} ms",
        ),
        (
            "node RSS at start",
            f"{figures['node_rss_start_mib']:.1f} MiB",
            f"after the load phases: {figures['node_rss_after_load_mib']:.1f} MiB",
        ),
        (
            f"node RSS after {mem['jobs']:,} jobs",
            f"{mem['rss_after_mib']:.1f} MiB",
            f"fresh node: {mem['rss_start_mib']:.1f} MiB at start, +{mem['rss_growth_mib']:.1f} MiB "
            f"(~{mem['rss_per_job_bytes']} B/job), peak {mem['peak_rss_mib']:.1f} MiB",
        ),
        (
            "  submit rate while filling",
            f"{mem['submit_rps']:,.0f} req/s",
            f"all finished after {mem['seconds_to_all_finished']:.1f} s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    vwidth = max(len(r[1]) for r in rows)
    print()
    print(
        f"infernet-node off-chain benchmark: {args.connections} keep-alive connections, "
        f"{args.rounds} round(s) of {args.duration:g} s per throughput phase (median shown), loopback {HOST}"
    )
    print("-" * (width + vwidth + 50))
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:>{vwidth}}  {note}")
    print("-" * (width + vwidth + 50))


def _pct(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.0%}" for v in values) + "]"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short run (< ~60 s): 3 rounds of 1.5 s phases, 500 latency samples, 20k jobs",
    )
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections (default 16)")
    parser.add_argument("--duration", type=float, help="seconds counted per throughput phase (default 3, quick 1.5)")
    parser.add_argument("--warmup", type=float, help="seconds of load before counting starts (default 0.5)")
    parser.add_argument(
        "--rounds", type=int, help="rounds of the four throughput phases; medians are reported (default 8, quick 3)"
    )
    parser.add_argument("--max-requests", type=int, default=5_000_000, help="cap on requests counted per phase")
    parser.add_argument("--latency-samples", type=int, help="end-to-end job latency samples (default 2000, quick 500)")
    parser.add_argument("--latency-timeout", type=float, default=120.0, help="cap on the latency phase in seconds")
    parser.add_argument(
        "--rss-jobs", type=int, help="jobs run before the second RSS reading (default 100000, quick 20000)"
    )
    parser.add_argument("--rss-timeout", type=float, default=600.0, help="cap on submitting the RSS jobs, seconds")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (printed path)")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "duration": 1.5 if quick else 3.0,
        "warmup": 0.5,
        "rounds": 3 if quick else 8,
        "latency_samples": 500 if quick else 2000,
        "rss_jobs": 20_000 if quick else 100_000,
    }
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.connections < 1 or args.rounds < 1 or args.latency_samples < 1 or args.rss_jobs < 1:
        parser.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import tempfile

    log_dir = Path(tempfile.mkdtemp(prefix="bench_offchain_"))
    started = time.monotonic()
    figures = run_with_servers(run, args, log_dir)
    checks = verdicts(figures)
    print_table(figures, checks, args)
    print(f"total time {time.monotonic() - started:.0f} s" + (f"; server logs in {log_dir}" if args.keep_logs else ""))
    if args.json:
        import hypercorn

        report = {
            "figures": figures,
            "checks": checks,
            "targets": {"post_ratio_min": POST_TARGET_RATIO, "latency_p50_max_ms": LATENCY_P50_TARGET_MS},
            "params": {k: v for k, v in vars(args).items() if k != "json"},
            "environment": {
                "python": platform.python_version(),
                "hypercorn": getattr(hypercorn, "__version__", None) or _dist_version("hypercorn"),
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
            },
        }
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    if not args.keep_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return 0


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
