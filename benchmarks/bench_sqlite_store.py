"""CPU per call and calls/s of the SQLite result store, next to the memory store, in one run.

Each *job* is what the node does on its off-chain path: ``put`` the running job with its
request, ``put`` the finished job, ``get`` it back (three store calls), all through the async
API on one asyncio loop. Two shapes:

* ``seq``: one job after another (every call waits for its own commit);
* ``c32``: 32 tasks doing jobs at once (calls queue up and are group-committed).

Figures per store and shape: µs of process CPU time per call (all threads: the event loop and
the store's worker thread; ``time.process_time``) and calls per second of wall time. The
SQLite file is a fresh one in a temporary directory (WAL, ``synchronous=NORMAL``, as in
production), so the commits are real. The memory store is the reference for the ratio.

``--compare PATH`` also measures another copy of the sqlite module (e.g. the code before a
change, kept outside the repository), loaded as a sibling of ``infernet_core.stores.sqlite``,
so that before and after are compared in one run on the same machine state. Kinds run in
turn, ``--rounds`` times, and the median of the rounds is reported.

Usage:
    .venv/bin/python benchmarks/bench_sqlite_store.py
    .venv/bin/python benchmarks/bench_sqlite_store.py --jobs 3000 --rounds 3 --compare /tmp/sqlite_before.py
    .venv/bin/python benchmarks/bench_sqlite_store.py --profile sqlite  # cProfile, top functions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from infernet_core.jobs import ContainerSucceeded, JobCompleted, apply, new_job
from infernet_core.models import ContainerOutput, JobRequest
from infernet_core.store import ResultStore, Retention
from infernet_core.stores.memory import MemoryResultStore
from infernet_core.stores.sqlite import SqliteResultStore

CALLS_PER_JOB = 3
CONCURRENCY = 32

Factory = Callable[[Path], ResultStore]


def load_alternative(path: str) -> type[ResultStore]:
    """Import another copy of the sqlite module (its relative imports resolve in the package)."""
    spec = importlib.util.spec_from_file_location("infernet_core.stores._bench_alternative", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    store_class: type[ResultStore] = module.SqliteResultStore
    return store_class


def make_jobs(count: int) -> list[tuple[Any, Any, JobRequest]]:
    """Pre-built (running, finished, request) triples, so the loop measures the store only."""
    jobs = []
    for n in range(count):
        request = JobRequest(containers=["echo"], data={"input": "hello", "n": n})
        job = new_job(str(uuid.uuid4()), "127.0.0.1", ["echo"], created_at=1.0)
        done = apply(job, ContainerSucceeded(output=ContainerOutput(container="echo", output={"echo": n})))
        jobs.append((job, apply(done, JobCompleted(), now=2.0), request))
    return jobs


async def one_job(store: ResultStore, job: Any, done: Any, request: JobRequest) -> None:
    await store.put(job, request)
    await store.put(done)
    got = await store.get(job.client, [job.id])
    assert got == [done], got


async def sequential(store: ResultStore, jobs: list[tuple[Any, Any, JobRequest]]) -> None:
    for job, done, request in jobs:
        await one_job(store, job, done, request)


async def concurrent(store: ResultStore, jobs: list[tuple[Any, Any, JobRequest]]) -> None:
    queue = iter(jobs)

    async def worker() -> None:
        for job, done, request in queue:
            await one_job(store, job, done, request)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


SHAPES: dict[str, Callable[[ResultStore, list[Any]], Awaitable[None]]] = {"seq": sequential, "c32": concurrent}


async def measure(factory: Factory, shape: str, jobs: list[Any], directory: Path) -> tuple[float, float]:
    """(µs of CPU per call, calls/s) of one shape on a fresh store."""
    store = factory(directory / f"{uuid.uuid4().hex}.db")
    await store.open()
    try:
        warm = make_jobs(50)
        await SHAPES[shape](store, warm)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await SHAPES[shape](store, jobs)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await store.aclose()
    calls = len(jobs) * CALLS_PER_JOB
    return cpu / calls * 1e6, calls / wall


def factories(compare: str | None) -> dict[str, Factory]:
    retention = Retention(max_finished=100_000)  # as the memory store's default bound
    kinds: dict[str, Factory] = {
        "memory": lambda _path: MemoryResultStore(retention),
        "sqlite": lambda path: SqliteResultStore(path, retention),
    }
    if compare is not None:
        other = load_alternative(compare)
        kinds[f"sqlite ({Path(compare).name})"] = lambda path: other(path, retention)  # type: ignore[call-arg]
    return kinds


async def run(args: argparse.Namespace) -> None:
    kinds = factories(args.compare)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        directory = Path(tmp)
        for round_ in range(args.rounds):
            for shape in SHAPES:
                for name, factory in kinds.items():
                    jobs = make_jobs(args.jobs)
                    results.setdefault((name, shape), []).append(await measure(factory, shape, jobs, directory))
            print(f"round {round_ + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    print(
        f"{args.jobs} jobs x {CALLS_PER_JOB} calls (put running+request, put finished, get), "
        f"median of {args.rounds} rounds, python {sys.version.split()[0]}"
    )
    print(f"{'store':<28} {'shape':<5} {'µs CPU/call':>12} {'calls/s':>10} {'CPU x mem':>10}")
    for shape in SHAPES:
        memory_cpu = statistics.median(cpu for cpu, _ in results[("memory", shape)])
        for name in kinds:
            cpu = statistics.median(c for c, _ in results[(name, shape)])
            rate = statistics.median(r for _, r in results[(name, shape)])
            print(f"{name:<28} {shape:<5} {cpu:>12.1f} {rate:>10.0f} {cpu / memory_cpu:>10.1f}")


async def profile(args: argparse.Namespace) -> None:
    """cProfile one shape (the event loop's thread and, via a hook, the worker thread)."""
    kinds = factories(args.compare)
    factory = kinds[args.profile]
    profiler = cProfile.Profile()
    import threading

    worker_profiles: list[cProfile.Profile] = []

    def trace_thread(*_: Any) -> None:  # the first call in each new thread starts its profiler
        sys.setprofile(None)
        worker = cProfile.Profile()
        worker_profiles.append(worker)
        worker.enable()

    threading.setprofile(trace_thread)
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        store = factory(Path(tmp) / "p.db")
        await store.open()
        jobs = make_jobs(args.jobs)
        profiler.enable()
        await SHAPES[args.shape](store, jobs)
        profiler.disable()
        await store.aclose()
    threading.setprofile(None)  # type: ignore[arg-type]
    for label, prof in [("event loop thread", profiler), *(("worker thread", p) for p in worker_profiles)]:
        out = io.StringIO()
        try:
            stats = pstats.Stats(prof, stream=out)
        except TypeError:  # a profiler that recorded nothing
            continue
        stats.sort_stats("tottime").print_stats(args.top)
        print(f"===== {label} =====")
        print(out.getvalue())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per measurement (3 calls each)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians are reported")
    parser.add_argument("--compare", metavar="PATH", help="another copy of stores/sqlite.py to measure too")
    parser.add_argument("--profile", metavar="KIND", help="cProfile one kind (memory, sqlite, ...) instead")
    parser.add_argument("--shape", choices=tuple(SHAPES), default="seq", help="shape profiled")
    parser.add_argument("--top", type=int, default=25, help="functions listed per thread when profiling")
    args = parser.parse_args()
    asyncio.run(profile(args) if args.profile else run(args))


if __name__ == "__main__":
    main()
