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
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # loopback only, always
HERE = Path(__file__).resolve().parent
BARE_APP = HERE / "bare_app.py"

POST_TARGET_RATIO = 0.5
LATENCY_P50_TARGET_MS = 2.0

JOB_BODY = json.dumps({"containers": ["echo"], "data": {"input": "hello"}}, separators=(",", ":")).encode()


# -- HTTP/1.1 on raw asyncio streams ------------------------------------------------------


def post_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode("ascii") + body


def get_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode("ascii")


class Connection:
    """One keep-alive HTTP/1.1 connection; reopens itself when the server closes it.

    hypercorn closes a keep-alive connection after ``keep_alive_max_requests`` (1000 by
    default) requests, announcing it with ``connection: close``; ``reconnects`` counts those.
    """

    __slots__ = ("port", "reader", "writer", "reconnects")

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = 0

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(HOST, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
            self.writer = self.reader = None

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-built request; return (status, body)."""
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        start = lower.find(b"\r\ncontent-length:")
        if start < 0:
            raise RuntimeError(f"response without content-length: {head!r}")
        start += 17
        length = int(head[start : head.index(b"\r\n", start)])
        body = await self.reader.readexactly(length) if length else b""
        if b"\r\nconnection: close" in lower:
            await self.close()
            self.reconnects += 1
        return status, body


# -- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kib(self) -> int:
        return _status_field(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return _status_field(self.pid, "VmHWM")

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def _status_field(pid: int, name: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])  # kB
    raise RuntimeError(f"{name} not in /proc/{pid}/status")


def node_command() -> list[str]:
    script = Path(sys.executable).parent / "infernet-node"
    if not script.exists():
        raise SystemExit(f"infernet-node not found next to {sys.executable}; install the package first")
    return [str(script)]


async def start_server(name: str, argv: list[str], port: int, log_dir: Path, started: list[Server]) -> Server:
    log_path = log_dir / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != "INFERNET_CONFIG_PATH"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    server = Server(name, port, proc, log_path)
    started.append(server)
    deadline = time.monotonic() + 30.0
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-2000:]}")
        conn = Connection(port)
        try:
            status, _ = await conn.request(get_bytes("/health"))
            if status == 200:
                return server
        except OSError:
            pass
        finally:
            await conn.close()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on {HOST}:{port} within 30 s")
        await asyncio.sleep(0.05)


def stop_servers(servers: list[Server]) -> None:
    for server in servers:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
    for server in servers:
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)


# -- load phases ------------------------------------------------------------------------------


@dataclass
class Throughput:
    requests: int
    seconds: float
    errors: int
    reconnects: int
    server_cpu: float  # server CPU seconds / wall seconds
    client_cpu: float  # this process's CPU seconds / wall seconds
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


async def closed_loop(
    server: Server,
    raw: bytes,
    connections: int,
    *,
    duration: float,
    max_requests: int,
    warmup: float = 0.0,
) -> Throughput:
    """``connections`` clients, each sending ``raw`` sequentially on its own keep-alive connection.

    Counts requests completed after ``warmup`` seconds until ``duration`` more seconds have
    passed or ``max_requests`` were counted, whichever comes first.
    """
    conns = [Connection(server.port) for _ in range(connections)]
    await asyncio.gather(*(c.open() for c in conns))
    state = {"counting": False, "stop": False, "count": 0, "errors": 0}
    statuses: dict[int, int] = {}

    async def client(conn: Connection) -> None:
        request = conn.request
        while not state["stop"]:
            status, _ = await request(raw)
            if state["counting"]:
                state["count"] += 1
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:
                    state["errors"] += 1
                if state["count"] >= max_requests:
                    state["stop"] = True

    tasks = [asyncio.create_task(client(c)) for c in conns]
    try:
        if warmup > 0:
            await asyncio.wait(tasks, timeout=warmup)
        _check_tasks(tasks)
        cpu0, proc0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
        state["counting"] = True
        done, _ = await asyncio.wait(tasks, timeout=duration)
        state["counting"] = False
        t1, cpu1, proc1 = time.perf_counter(), server.cpu_seconds(), time.process_time()
        count = state["count"]
        state["stop"] = True
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
    wall = t1 - t0
    return Throughput(
        requests=count,
        seconds=wall,
        errors=state["errors"],
        reconnects=sum(c.reconnects for c in conns),
        server_cpu=(cpu1 - cpu0) / wall,
        client_cpu=(proc1 - proc0) / wall,
        statuses=statuses,
    )


def _check_tasks(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def submit_one(port: int) -> str:
    conn = Connection(port)
    try:
        status, body = await conn.request(post_bytes("/api/jobs", JOB_BODY))
        if status != 200:
            raise RuntimeError(f"POST /api/jobs -> {status} {body!r}")
        job_id: str = json.loads(body)["id"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            status, body = await conn.request(get_bytes(f"/api/jobs?id={job_id}"))
            if status == 200 and json.loads(body)[0]["status"] == "success":
                return job_id
            await asyncio.sleep(0.01)
        raise RuntimeError(f"job {job_id} did not succeed within 10 s")
    finally:
        await conn.close()


@dataclass
class Latency:
    samples_ms: list[float]
    polls: int
    reconnects: int

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
        return ordered[index]


async def job_latency(server: Server, samples: int, warmup: int, timeout: float) -> Latency:
    """On ONE keep-alive connection: POST an echo job, poll GET ?id= until success; time it."""
    conn = Connection(server.port)
    await conn.open()
    submit = post_bytes("/api/jobs", JOB_BODY)
    results: list[float] = []
    polls = 0
    deadline = time.monotonic() + timeout
    try:
        for index in range(warmup + samples):
            if time.monotonic() > deadline:
                raise RuntimeError(f"latency phase exceeded {timeout:g} s after {index} samples")
            t0 = time.perf_counter()
            status, body = await conn.request(submit)
            if status != 200:
                raise RuntimeError(f"POST /api/jobs -> {status} {body!r}")
            poll = get_bytes(f"/api/jobs?id={json.loads(body)['id']}")
            n = 0
            while True:
                n += 1
                status, body = await conn.request(poll)
                if status != 200:
                    raise RuntimeError(f"GET /api/jobs -> {status} {body!r}")
                job_status = json.loads(body)[0]["status"]
                if job_status == "success":
                    break
                if job_status != "running" or n > 100_000:
                    raise RuntimeError(f"job ended as {job_status!r} after {n} polls: {body!r}")
            t1 = time.perf_counter()
            if index >= warmup:
                results.append((t1 - t0) * 1000)
                polls += n
    finally:
        reconnects = conn.reconnects
        await conn.close()
    return Latency(results, polls, reconnects)


async def round_trip(server: Server, raw: bytes, samples: int) -> list[float]:
    """Single-request round trips (ms) on one keep-alive connection, for reference."""
    conn = Connection(server.port)
    await conn.open()
    times: list[float] = []
    try:
        for _ in range(samples):
            t0 = time.perf_counter()
            await conn.request(raw)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        await conn.close()
    return times


async def pending_offchain(port: int) -> int:
    conn = Connection(port)
    try:
        status, body = await conn.request(get_bytes("/info"))
        if status != 200:
            raise RuntimeError(f"GET /info -> {status} {body!r}")
        return int(json.loads(body)["pending"]["offchain"])
    finally:
        await conn.close()


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
    deadline = time.monotonic() + 60
    while (pending := await pending_offchain(server.port)) != 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{pending} jobs still pending 60 s after submission")
        await asyncio.sleep(0.05)
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


# -- the run ----------------------------------------------------------------------------------


def throughput_dict(t: Throughput) -> dict[str, Any]:
    return {
        "rps": round(t.rps, 1),
        "requests": t.requests,
        "seconds": round(t.seconds, 3),
        "errors": t.errors,
        "reconnects": t.reconnects,
        "server_cpu": round(t.server_cpu, 3),
        "client_cpu": round(t.client_cpu, 3),
    }


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

    job_id = await submit_one(node.port)
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
        node, args.latency_samples, warmup=min(200, args.latency_samples), timeout=args.latency_timeout
    )
    bare_rtt = await round_trip(bare, get, min(2000, args.latency_samples))
    node_get_rtt = await round_trip(node, get, min(2000, args.latency_samples))
    figures["latency"] = {
        "samples": len(lat.samples_ms),
        "p50_ms": round(lat.percentile(50), 3),
        "p90_ms": round(lat.percentile(90), 3),
        "p99_ms": round(lat.percentile(99), 3),
        "max_ms": round(max(lat.samples_ms), 3),
        "mean_ms": round(statistics.fmean(lat.samples_ms), 3),
        "mean_polls": round(lat.polls / len(lat.samples_ms), 3),
        "reconnects": lat.reconnects,
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
    servers: list[Server] = []
    started = time.monotonic()
    try:
        figures = asyncio.run(run(args, log_dir, servers))
    except BaseException:
        for server in servers:
            print(f"--- {server.name} log ({server.log_path}) ---", file=sys.stderr)
            with contextlib.suppress(OSError):
                print(server.log_path.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        stop_servers(servers)
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
        for server in servers:
            with contextlib.suppress(OSError):
                server.log_path.unlink()
        with contextlib.suppress(OSError):
            log_dir.rmdir()
    return 0


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
