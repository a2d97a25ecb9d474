"""The production path, side by side in one run, with wrk as the load generator.

Variants (all on 127.0.0.1, each its own ``infernet-node`` process(es), started here):

* ``embedded``   -- ``infernet-node`` with no config: memory store, in-process ``echo``;
* ``memory+http``, ``sqlite+http`` -- a config with the HTTP echo container service;
* ``redis x1``   -- a Redis store, one replica, the HTTP echo container;
* ``redis x2``   -- two replicas on one Redis; the load is split over both (one wrk per
  replica, half the connections each: a round-robin client at connection level).

Every HTTP variant calls the same container, ``benchmarks/echo_container.py`` (an asyncio
echo service that counts the calls it answers), and Redis is a throwaway ``redis-server``
(no persistence).

Phases:

1. **Throughput** (interleaved rounds): ``wrk -c32`` POST /api/jobs for ``--duration`` s on
   each variant in turn; then the node is left to finish its backlog (``GET /info`` until
   nothing is pending). *accepted/s* is what wrk got answered 200; *finished/s* is the jobs
   accepted divided by the time until the last of them finished (load plus backlog).
   The container's call count must equal the jobs accepted (up to the requests wrk left in
   flight when it stopped, whose answers it does not count): every job ran once.
2. **Latency**: one job at a time on one keep-alive connection (POST, then GET until done).
3. **Overload**: ``wrk -c256`` and ``wrk -c1024`` for ``--overload-duration`` s on each
   variant: every answer must be 2xx (zero 5xx, zero socket errors).
4. **Backpressure**: a node with ``server.max_pending`` 64 and a container that takes
   50 ms, ``wrk -c256``: the excess is answered 503 with ``Retry-After``, and every job
   accepted finishes (container calls = accepted).
5. **Memory**: RSS of a node with 10,000 jobs pending on a container that holds each call.

Usage:
    .venv/bin/python benchmarks/bench_production.py            # full run, about 15 minutes
    .venv/bin/python benchmarks/bench_production.py --quick    # about 4 minutes
    .venv/bin/python benchmarks/bench_production.py --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadgen import (
    HOST,
    Connection,
    Server,
    free_port,
    get_bytes,
    job_latency,
    node_command,
    pending_offchain,
    post_bytes,
    run_with_servers,
    start_server,
)

ROOT = Path(__file__).resolve().parent.parent
ECHO_SCRIPT = Path(__file__).resolve().parent / "echo_container.py"
JOB_BODY = b'{"containers":["echo"],"data":{"input":"hello"}}'
VARIANTS = ("embedded", "memory+http", "sqlite+http", "redis x1", "redis x2")
TARGETS = {"redis x1": 0.50, "memory+http": 0.70, "sqlite+http": 0.60}
"""Jobs finished per second, as a share of the embedded default's in the same run."""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '@BODY@'
wrk.headers["Content-Type"] = "application/json"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) statuses = {} ; retry_after = 0 end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 503 and headers["retry-after"] ~= nil then retry_after = retry_after + 1 end
end
function done(summary, latency, requests)
  local total, with_retry = {}, 0
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do total[k] = (total[k] or 0) + v end
    with_retry = with_retry + t:get("retry_after")
  end
  for k, v in pairs(total) do io.write(string.format("STATUS %d %d\\n", k, v)) end
  io.write(string.format("RETRY_AFTER %d\\n", with_retry))
  io.write(string.format("LATENCY %f %f\\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
""".replace("@BODY@", JOB_BODY.decode())


@dataclass
class Variant:
    """One setup under test: its node process(es) and the container service it calls."""

    name: str
    nodes: list[Server]
    echo: Server | None


@dataclass
class Load:
    """What one wrk run (or several at once, for replicas) saw."""

    seconds: float
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: int = 0
    retry_after: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0

    @property
    def accepted(self) -> int:
        return self.statuses.get(200, 0)

    @property
    def errors_5xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


async def run_wrk(targets: list[Server], connections: int, seconds: float, script: Path) -> Load:
    """wrk on each target at once, ``connections`` split evenly; the counts added up."""
    per_target = max(1, connections // len(targets))
    threads = min(2, per_target)
    procs = [
        await asyncio.create_subprocess_exec(
            "wrk",
            f"-t{threads}",
            f"-c{per_target}",
            f"-d{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://{HOST}:{target.port}/api/jobs",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        for target in targets
    ]
    outputs = [(await proc.communicate())[0].decode() for proc in procs]
    load = Load(seconds)
    p50s, p99s = [], []
    for text in outputs:
        for status, count in re.findall(r"^STATUS (\d+) (\d+)$", text, re.M):
            load.statuses[int(status)] = load.statuses.get(int(status), 0) + int(count)
        for match in re.findall(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text):
            load.socket_errors += sum(int(n) for n in match)
        load.retry_after += sum(int(n) for n in re.findall(r"^RETRY_AFTER (\d+)$", text, re.M))
        for p50, p99 in re.findall(r"^LATENCY ([\d.]+) ([\d.]+)$", text, re.M):
            p50s.append(float(p50))
            p99s.append(float(p99))
        if "STATUS" not in text and "RETRY_AFTER" not in text:
            raise RuntimeError(f"wrk failed:\n{text}")
    load.p50_ms = max(p50s, default=0.0)
    load.p99_ms = max(p99s, default=0.0)
    return load


async def echo_calls(echo: Server | None) -> int:
    """How many calls the echo service has answered (0 for the in-process container)."""
    if echo is None:
        return 0
    conn = Connection(echo.port)
    try:
        status, raw = await conn.request(get_bytes("/count"))
    finally:
        await conn.close()
    if status != 200:
        raise RuntimeError(f"GET /count -> {status}")
    return int(json.loads(raw)["calls"])


async def drain(variant: Variant, timeout: float) -> float:
    """Seconds until no job is pending on any of the variant's nodes."""
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    for node in variant.nodes:
        while (pending := await pending_offchain(node.port)) != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{variant.name}: {pending} jobs still pending {timeout:g} s later")
            await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def start_echo(name: str, log_dir: Path, started: list[Server], delay: float = 0.0) -> Server:
    port = free_port()
    argv = [sys.executable, str(ECHO_SCRIPT), "--port", str(port), "--delay", str(delay)]
    return await start_server(name, argv, port, log_dir, started, ready_path="/count")


async def start_nodes(
    name: str,
    config: dict[str, Any] | None,
    count: int,
    log_dir: Path,
    started: list[Server],
) -> list[Server]:
    slug = re.sub(r"[^a-z0-9]+", "-", name)
    argv_config: list[str] = []
    if config is not None:
        path = log_dir / f"config-{slug}.json"
        path.write_text(json.dumps(config))
        argv_config = ["--config", str(path)]
    nodes = []
    for index in range(count):
        port = free_port()
        argv = [*node_command(), *argv_config, "--host", HOST, "--port", str(port), "--log-level", "WARNING"]
        nodes.append(await start_server(f"node-{slug}-{index + 1}", argv, port, log_dir, started))
    return nodes


def http_config(echo: Server, store: dict[str, Any], **server: Any) -> dict[str, Any]:
    return {
        "manage_containers": False,
        "containers": [{"id": "echo", "url": f"http://{HOST}:{echo.port}"}],
        "store": store,
        **({"server": server} if server else {}),
    }


def start_redis(log_dir: Path, started: list[Server]) -> str:
    port = free_port()
    log_path = log_dir / "redis.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    started.append(Server("redis-server", port, proc, log_path))
    deadline = time.monotonic() + 10
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() != b"PONG":
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not start")
        time.sleep(0.05)
    return f"redis://{HOST}:{port}/0"


async def start_variants(log_dir: Path, started: list[Server]) -> dict[str, Variant]:
    echo = await start_echo("echo", log_dir, started)
    redis_url = start_redis(log_dir, started)
    return {
        "embedded": Variant("embedded", await start_nodes("embedded", None, 1, log_dir, started), None),
        "memory+http": Variant(
            "memory+http",
            await start_nodes("memory+http", http_config(echo, {"kind": "memory"}), 1, log_dir, started),
            echo,
        ),
        "sqlite+http": Variant(
            "sqlite+http",
            await start_nodes(
                "sqlite+http",
                http_config(echo, {"kind": "sqlite", "path": str(log_dir / "results.db")}),
                1,
                log_dir,
                started,
            ),
            echo,
        ),
        "redis x1": Variant(
            "redis x1",
            await start_nodes(
                "redis x1", http_config(echo, {"kind": "redis", "url": redis_url, "prefix": "x1"}), 1, log_dir, started
            ),
            echo,
        ),
        "redis x2": Variant(
            "redis x2",
            await start_nodes(
                "redis x2", http_config(echo, {"kind": "redis", "url": redis_url, "prefix": "x2"}), 2, log_dir, started
            ),
            echo,
        ),
    }


async def throughput_phase(
    variants: dict[str, Variant], args: argparse.Namespace, script: Path
) -> dict[str, list[dict[str, float]]]:
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
    for rnd in range(args.rounds):
        for name in VARIANTS:
            variant = variants[name]
            print(f"  throughput: {name}, c={args.connections}, {args.duration:g} s (round {rnd + 1})", flush=True)
            before = await echo_calls(variant.echo)
            load = await run_wrk(variant.nodes, args.connections, args.duration, script)
            backlog = await drain(variant, args.drain_timeout)
            calls = await echo_calls(variant.echo) - before
            if load.errors_5xx or load.socket_errors:
                raise RuntimeError(f"{name}: {load.statuses} socket errors {load.socket_errors}")
            # wrk stops with up to one request in flight per connection: the node may have
            # accepted (and run) those, but wrk never counts their answers.
            if variant.echo is not None and not 0 <= calls - load.accepted <= args.connections:
                raise RuntimeError(f"{name}: {load.accepted} jobs accepted but {calls} container calls")
            rounds[name].append(
                {
                    "accepted_per_s": load.accepted / args.duration,
                    "finished_per_s": load.accepted / (args.duration + backlog),
                    "backlog_s": backlog,
                    "post_p50_ms": load.p50_ms,
                    "post_p99_ms": load.p99_ms,
                    "container_calls_minus_accepted": calls - load.accepted if variant.echo else 0,
                }
            )
            await asyncio.sleep(0.5)
    return rounds


async def overload_phase(variants: dict[str, Variant], args: argparse.Namespace, script: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for connections in (256, 1024):
        for name in VARIANTS:
            variant = variants[name]
            print(f"  overload: {name}, c={connections}, {args.overload_duration:g} s", flush=True)
            load = await run_wrk(variant.nodes, connections, args.overload_duration, script)
            await drain(variant, args.drain_timeout)
            result[f"{name} c={connections}"] = {
                "answered": sum(load.statuses.values()),
                "accepted_per_s": round(load.accepted / args.overload_duration, 1),
                "5xx": load.errors_5xx,
                "socket_errors": load.socket_errors,
                "p99_ms": load.p99_ms,
            }
    return result


async def backpressure_phase(args: argparse.Namespace, log_dir: Path, started: list[Server], script: Path) -> Any:
    print("  backpressure: max_pending 64, a 50 ms container, c=256", flush=True)
    echo = await start_echo("echo-slow", log_dir, started, delay=0.05)
    [node] = await start_nodes(
        "backpressure", http_config(echo, {"kind": "memory"}, max_pending=64), 1, log_dir, started
    )
    variant = Variant("backpressure", [node], echo)
    load = await run_wrk([node], 256, args.backpressure_duration, script)
    await drain(variant, args.drain_timeout)
    calls = await echo_calls(echo)
    refused = load.statuses.get(503, 0)
    return {
        "accepted": load.accepted,
        "refused_503": refused,
        "refused_with_retry_after": load.retry_after,
        "other_statuses": {s: n for s, n in load.statuses.items() if s not in (200, 503)},
        "container_calls": calls,
        "every_accepted_job_ran": 0 <= calls - load.accepted <= 256,
    }


async def memory_phase(args: argparse.Namespace, log_dir: Path, started: list[Server]) -> dict[str, Any]:
    print(f"  memory: {args.memory_jobs:,} jobs pending on a container that holds each call", flush=True)
    echo = await start_echo("echo-hold", log_dir, started, delay=600.0)
    config = http_config(echo, {"kind": "memory"}, max_pending=args.memory_jobs, max_queued=args.memory_jobs)
    config["containers"][0]["max_concurrency"] = 32
    [node] = await start_nodes("memory", config, 1, log_dir, started)
    rss_before = node.rss_kib()
    body = post_bytes("/api/jobs", JOB_BODY)
    conns = [Connection(node.port) for _ in range(16)]

    async def submit(conn: Connection, count: int) -> None:
        for _ in range(count):
            status, raw = await conn.request(body)
            if status != 200:
                raise RuntimeError(f"POST -> {status} {raw!r}")

    per_conn = args.memory_jobs // len(conns)
    await asyncio.gather(*(submit(conn, per_conn) for conn in conns))
    await asyncio.gather(*(conn.close() for conn in conns))
    pending = await pending_offchain(node.port)
    rss_after = node.rss_kib()
    return {
        "pending": pending,
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
        "kib_per_pending_job": round((rss_after - rss_before) / max(pending, 1), 2),
    }


async def run(args: argparse.Namespace, log_dir: Path, started: list[Server]) -> dict[str, Any]:
    script = log_dir / "post.lua"
    script.write_text(WRK_SCRIPT)
    print("starting the echo container, redis-server and 6 nodes on 127.0.0.1 ...", flush=True)
    variants = await start_variants(log_dir, started)
    figures: dict[str, Any] = {}
    rounds = await throughput_phase(variants, args, script)
    figures["throughput"] = {
        name: {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
        | {"finished_per_s_rounds": [round(r["finished_per_s"]) for r in runs]}
        for name, runs in rounds.items()
    }
    embedded = [r["finished_per_s"] for r in rounds["embedded"]]
    figures["ratios_to_embedded"] = {
        name: round(statistics.median(r["finished_per_s"] / e for r, e in zip(runs, embedded, strict=True)), 3)
        for name, runs in rounds.items()
        if name != "embedded"
    }
    figures["redis_x2_over_x1"] = round(
        statistics.median(
            b["finished_per_s"] / a["finished_per_s"]
            for a, b in zip(rounds["redis x1"], rounds["redis x2"], strict=True)
        ),
        3,
    )
    figures["finished_over_accepted"] = {
        name: round(statistics.median(r["finished_per_s"] / r["accepted_per_s"] for r in runs), 3)
        for name, runs in rounds.items()
    }
    print("  latency: one keep-alive connection, one job at a time", flush=True)
    figures["latency_ms"] = {}
    for name in VARIANTS:
        lat = await job_latency(variants[name].nodes[0], JOB_BODY, args.latency_samples, 50, timeout=120)
        figures["latency_ms"][name] = {"p50": round(lat.percentile(50), 2), "p99": round(lat.percentile(99), 2)}
    figures["overload"] = await overload_phase(variants, args, script)
    figures["backpressure"] = await backpressure_phase(args, log_dir, started, script)
    figures["memory"] = await memory_phase(args, log_dir, started)
    return figures


def print_report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print()
    print(
        f"infernet-core production path, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"wrk c={args.connections}, {args.rounds} rounds of {args.duration:g} s, medians"
    )
    print(f"{'variant':<12} {'accepted/s':>10} {'finished/s':>10} {'backlog s':>9} {'vs embedded':>11}  rounds")
    for name in VARIANTS:
        t = figures["throughput"][name]
        ratio = figures["ratios_to_embedded"].get(name)
        target = TARGETS.get(name)
        mark = "" if ratio is None else f"{ratio:.0%}" + (f" (>= {target:.0%})" if target else "")
        print(
            f"{name:<12} {t['accepted_per_s']:>10.0f} {t['finished_per_s']:>10.0f} {t['backlog_s']:>9.2f} "
            f"{mark:>11}  {t['finished_per_s_rounds']}"
        )
    print(f"redis x2 / redis x1 finished/s: {figures['redis_x2_over_x1']:.2f}x (target 1.5x)")
    print(f"finished/s over accepted/s (target >= 95%): {figures['finished_over_accepted']}")
    print("job latency, one keep-alive connection (ms):", figures["latency_ms"])
    print("overload (every answer must be 2xx):")
    for key, value in figures["overload"].items():
        print(f"  {key:<22} {value}")
    print("backpressure:", figures["backpressure"])
    print("memory:", figures["memory"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter phases (about 4 minutes)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--duration", type=float, help="seconds per throughput run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--overload-duration", type=float)
    parser.add_argument("--backpressure-duration", type=float)
    parser.add_argument("--latency-samples", type=int)
    parser.add_argument("--memory-jobs", type=int, default=10_000)
    parser.add_argument("--drain-timeout", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    quick = args.quick
    defaults = {
        "rounds": 2 if quick else 5,
        "duration": 4.0 if quick else 10.0,
        "overload_duration": 8.0 if quick else 30.0,
        "backpressure_duration": 5.0 if quick else 10.0,
        "latency_samples": 300 if quick else 2000,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    # c=1024 needs more descriptors than the usual soft limit (the nodes inherit it).
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"descriptor limit: soft {soft} -> {hard}")
    with tempfile.TemporaryDirectory(prefix="bench-production-") as tmp:
        figures = run_with_servers(run, args, Path(tmp))
    print_report(figures, args)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
