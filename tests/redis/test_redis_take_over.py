"""The TAKE_OVER script, property-checked on a real redis-server: replicas own running jobs
(put through the store's PUT script), some replicas' leases expire, some jobs end first, and
two live replicas race to take over (each calling the script twice, from its own thread and
connection). Whatever the interleaving, every running job of an expired replica is taken by
exactly one taker, and nothing else moves."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass

import msgspec
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infernet_core.jobs import JobAborted, apply, new_job
from infernet_core.models import JobRequest
from infernet_core.stores.redis import scripts
from infernet_core.stores.redis._common import client_tag

PTTL_US = 60_000_000
LEASE_MS = 60_000


@dataclass(frozen=True)
class Scenario:
    alive: tuple[bool, ...]
    """One entry per replica: does its lease hold?"""
    jobs: tuple[tuple[int, bool], ...]
    """Each job: (its replica, has it ended before the race?)."""


scenarios = st.integers(min_value=1, max_value=5).flatmap(
    lambda n: st.builds(
        Scenario,
        alive=st.tuples(*[st.booleans()] * n),
        jobs=st.lists(st.tuples(st.integers(0, n - 1), st.booleans()), max_size=12).map(tuple),
    )
)


def put(client: redis.Redis, prefix: str, job_id: str, *, replica: str, ended: bool) -> None:
    request = JobRequest(containers=["a"], data={"id": job_id})
    job = new_job(job_id, "::1", ["a"], created_at=0.0)
    if ended:
        job = apply(job, JobAborted(container="", reason="ended"), now=1.0)
    args = [prefix, client_tag("::1"), job_id, msgspec.json.encode(job), b"0" if ended else b"1"]
    args += [PTTL_US, 0, 0, 1000, "" if ended else replica, msgspec.json.encode(request)]
    client.register_script(scripts.PUT)(args=args)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scenario=scenarios)
def test_each_expired_job_is_taken_by_exactly_one_taker(redis_url: str, scenario: Scenario) -> None:
    prefix = f"prop-{uuid.uuid4().hex[:12]}"
    replicas = [f"r{n}" for n in range(len(scenario.alive))]
    takers = ["t0", "t1"]  # two live replicas racing (they may own jobs too: see below)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        renew = client.register_script(scripts.RENEW)
        for name in replicas + takers:
            renew(args=[prefix, name, LEASE_MS, "test"])
        owner: dict[str, str] = {}
        for n, (index, ended) in enumerate(scenario.jobs):
            job_id = f"j{n}"
            put(client, prefix, job_id, replica=replicas[index], ended=False)
            if ended:  # ended (through any replica) before the race: released
                put(client, prefix, job_id, replica="", ended=True)
            else:
                owner[job_id] = replicas[index]
        put(client, prefix, "t-own", replica="t0", ended=False)  # a taker's own job stays its own
        dead = {name for name, alive in zip(replicas, scenario.alive, strict=True) if not alive}
        for name in dead:
            client.delete(f"{prefix}:lease:{name}")  # its lease expired
        before = {name: client.smembers(f"{prefix}:running:{name}") for name in replicas}

        taken: dict[str, list[str]] = {name: [] for name in takers}
        barrier = threading.Barrier(len(takers))
        errors: list[BaseException] = []

        def race(name: str) -> None:
            own = redis.Redis.from_url(redis_url)
            try:
                script = own.register_script(scripts.TAKE_OVER)
                barrier.wait()
                for _ in range(2):
                    flat = script(args=[prefix, name, 0])
                    for n in range(0, len(flat), 3):
                        job = msgspec.json.decode(flat[n + 1])
                        request = msgspec.json.decode(flat[n + 2])
                        assert flat[n].decode() == owner[job["id"]]
                        assert request["data"] == {"id": job["id"]}
                        taken[name].append(job["id"])
            except BaseException as exc:  # reported by the test thread
                errors.append(exc)
            finally:
                own.close()

        threads = [threading.Thread(target=race, args=(name,)) for name in takers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert not any(thread.is_alive() for thread in threads)
        assert not errors, errors

        counts = Counter(job_id for ids in taken.values() for job_id in ids)
        expected = {job_id for job_id, name in owner.items() if name in dead}
        assert set(counts) == expected
        assert set(counts.values()) <= {1}  # exactly one taker each
        for name in takers:
            running = client.smembers(f"{prefix}:running:{name}")
            assert {m.split("\n")[1] for m in running} == set(taken[name]) | ({"t-own"} if name == "t0" else set())
            for job_id in taken[name]:
                assert client.hget(f"{prefix}:meta:{client_tag('::1').decode()}\n{job_id}", "r") == name
        registry = client.smembers(f"{prefix}:replicas")
        assert registry == (set(replicas) - dead) | set(takers)
        for name in replicas:
            now = client.smembers(f"{prefix}:running:{name}")
            assert now == (set() if name in dead else before[name])
            assert {m.split("\n")[1] for m in before[name]} == {j for j, o in owner.items() if o == name}

        # Every job ending (through any replica) empties every running set.
        for job_id in owner:
            put(client, prefix, job_id, replica="", ended=True)
        put(client, prefix, "t-own", replica="", ended=True)
        assert not [key for key in client.scan_iter(match=f"{prefix}:running:*") if client.scard(key)]
        assert list(client.scan_iter(match=f"{prefix}:meta:*")) == []
    finally:
        keys = list(client.scan_iter(match=f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
