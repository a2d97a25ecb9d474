"""What an operator runs next to the real ``infernet-node``, end to end on loopback:

* a real Prometheus scraping ``GET /metrics`` and answering queries on the node's counters;
* ``server.rate_limit`` held across two replicas that share one real ``redis-server``;
* JSON logs and the access log, and secrets from the environment never written out;
* ``infernet-node check-config`` as a subprocess: each check's line and the exit status of
  the first class that failed (config 2, store 3, containers 4, chain 5).

Every process is started here and stopped by its PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    CLIENT_A,
    CLIENT_B,
    ServiceProcess,
    client,
    free_port,
    node_command,
    running_node,
    submit,
    subprocess_env,
    wait_done,
    write_config,
)
from support.chain_kit import NODE_KEYS, Deployment, address_of
from support.processes import stop_process, wait_ready
from support.redis_server import redis_available, start_redis, stop_redis

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
"""Debian's package (``apt-get install prometheus``); scripts/test.sh installs it."""
SCRAPE_WAIT = 20.0
"""Seconds Prometheus has to report what the node counted (it scrapes every second)."""
CHECK_CONFIG_TIMEOUT = 30.0


def echo_config(service: ServiceProcess, **extra: Any) -> dict[str, Any]:
    """A node config serving container ``echo`` from the HTTP container service."""
    return {"manage_containers": False, "containers": [{"id": "echo", "url": service.url}], **extra}


def eventually(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s: {what}"
        time.sleep(interval)


# -- Prometheus ---------------------------------------------------------------------------------


class Prometheus:
    """A real Prometheus on 127.0.0.1, scraping one target every second."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log
        self._http = client(base_url=url)

    @classmethod
    def start(cls, directory: Path, target: str) -> Prometheus:
        directory.mkdir(parents=True, exist_ok=True)
        config = directory / "prometheus.yml"
        # JSON is YAML: the scrape config without a YAML writer.
        config.write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [{"job_name": "infernet", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        last = ""
        for _ in range(3):  # the port can be taken between free_port() and Prometheus's bind
            port = free_port()
            log = directory / f"prometheus-{port}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    [
                        PROMETHEUS,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={directory / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--log.level=warn",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=subprocess_env(),
                    cwd=directory,
                )
            prometheus = cls(proc, f"http://127.0.0.1:{port}", log)
            if wait_ready(proc, prometheus.ready, 20.0, 0.1):
                return prometheus
            last = log.read_text(errors="replace")[-2000:]
            prometheus.stop()
        raise AssertionError(f"prometheus did not start:\n{last}")

    def ready(self) -> bool:
        try:
            return self._http.get("/-/ready", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to, as the HTTP API gives it."""
        response = self._http.get("/api/v1/query", params={"query": promql})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "success", body
        assert body["data"]["resultType"] == "vector", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_value(self, promql: str, expected: float, timeout: float = SCRAPE_WAIT) -> list[dict[str, Any]]:
        """Query until ``promql`` has one series with ``expected`` as its value; that vector."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if len(result) == 1 and float(result[0]["value"][1]) == expected:
                return result
            assert time.monotonic() < deadline, f"{promql} is {result} after {timeout}s, not {expected}"
            time.sleep(0.2)

    def stop(self) -> None:
        """SIGTERM by PID (SIGKILL if it lingers)."""
        self._http.close()
        stop_process(self.proc, timeout=10.0)


def test_prometheus_scrapes_the_nodes_job_counts(tmp_path: Path) -> None:
    if not Path(PROMETHEUS).is_file():
        pytest.skip(f"prometheus is not installed at {PROMETHEUS} (apt-get install prometheus)")
    jobs = 7
    (tmp_path / "node").mkdir()
    with running_node(tmp_path / "node") as node:  # the embedded default: metrics on, echo in-process
        prometheus = Prometheus.start(tmp_path / "prometheus", f"127.0.0.1:{node.port}")
        try:
            prometheus.wait_value('up{job="infernet"}', 1)
            with node.client() as http:
                ids = [submit(http, ["echo"], {"n": n}) for n in range(jobs)]
                for job_id in ids:
                    assert wait_done(http, job_id)["status"] == "success"
            (accepted,) = prometheus.wait_value("infernet_jobs_accepted_total", jobs)
            assert accepted["metric"] == {
                "__name__": "infernet_jobs_accepted_total",
                "container": "echo",
                "instance": f"127.0.0.1:{node.port}",
                "job": "infernet",
            }
            prometheus.wait_value('infernet_jobs_finished_total{status="success"}', jobs)
            prometheus.wait_value('infernet_http_requests_total{method="POST",route="/api/jobs",status="200"}', jobs)
            # Prometheus's own scrapes are counted too, under their route.
            scrapes = prometheus.query('infernet_http_requests_total{method="GET",route="/metrics",status="200"}')
            assert len(scrapes) == 1 and float(scrapes[0]["value"][1]) >= 1
        finally:
            prometheus.stop()
        assert prometheus.proc.returncode == 0, prometheus.log.read_text(errors="replace")[-2000:]


# -- rate limits across replicas ----------------------------------------------------------------


@pytest.fixture
def redis_port(tmp_path: Path) -> Iterator[int]:
    if not redis_available():
        pytest.fail("redis-server is not installed: run scripts/test.sh, or apt-get install -y redis-server")
    proc, port = start_redis(tmp_path / "redis")
    try:
        yield port
    finally:
        stop_redis(proc)


def test_rate_limit_is_shared_by_replicas_on_one_redis(
    tmp_path: Path, redis_port: int, echo_service: ServiceProcess
) -> None:
    config = echo_config(
        echo_service,
        store={"kind": "redis", "url": f"redis://127.0.0.1:{redis_port}/0", "prefix": f"rl-{uuid.uuid4().hex[:8]}"},
        server={"rate_limit": {"num_requests": 5, "period": 60}},
    )
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with (
        running_node(tmp_path / "a", config) as a,
        running_node(tmp_path / "b", config) as b,
        a.client() as http_a,
        b.client() as http_b,
    ):
        replicas = [("a", http_a), ("b", http_b)]
        job = {"containers": ["echo"], "data": {"x": 1}}
        # Ten POSTs from 127.0.0.1, alternating a, b, a, b, ...: one bucket for the endpoint
        # and the client, wherever the request lands. The first five are accepted (three by
        # a, two by b), every one after them refused, by both replicas.
        answers = [(name, http.post("/api/jobs", json=job)) for _ in range(5) for name, http in replicas]
        assert [response.status_code for _, response in answers] == [200] * 5 + [429] * 5
        accepted = [response for _, response in answers[:5]]
        assert [r.headers["ratelimit-remaining"] for r in accepted] == ["4", "3", "2", "1", "0"]
        for response in accepted:
            assert response.headers["ratelimit-limit"] == "5"
            assert 1 <= int(response.headers["ratelimit-reset"]) <= 60
        for _, response in answers[5:]:
            assert response.json() == {"error": "Too many requests", "params": {"limit": 5, "period": 60.0}}
            # GCRA at 5 per 60 s: the next request is allowed one interval (12 s) after the burst.
            assert 1 <= int(response.headers["retry-after"]) <= 12, response.headers
            assert response.headers["ratelimit-limit"] == "5"
            assert response.headers["ratelimit-remaining"] == "0"
            assert 1 <= int(response.headers["ratelimit-reset"]) <= 60

        # Another endpoint has a bucket of its own (shared as well): GET /api/jobs is allowed,
        # and b finds the jobs a accepted (one store).
        ids = [response.json()["id"] for response in accepted]
        found = http_b.get("/api/jobs", params=[("id", job_id) for job_id in ids])
        listed = http_a.get("/api/jobs")
        assert (found.status_code, listed.status_code) == (200, 200), (found.text, listed.text)
        assert sorted(result["id"] for result in found.json()) == sorted(ids)
        assert set(ids) <= set(listed.json())
        assert [found.headers["ratelimit-remaining"], listed.headers["ratelimit-remaining"]] == ["4", "3"]

        # Another client address has its own bucket.
        with client(CLIENT_B, base_url=a.base_url) as other:
            assert other.post("/api/jobs", json=job).status_code == 200

        # PUT /api/status is never limited, nor are the probes and the scrapes.
        for n in range(12):
            name, http = replicas[n % 2]
            update = {"id": f"status-{name}-{n}", "status": "running", "containers": ["echo"]}
            response = http.put("/api/status", json=update)
            assert response.status_code == 200, response.text
            assert "ratelimit-limit" not in response.headers
        for path in ("/health", "/ready", "/metrics", "/openapi.json"):
            for _ in range(6):
                response = http_a.get(path)
                assert response.status_code == 200, (path, response.text)
                assert "ratelimit-limit" not in response.headers

        # Each replica counted the 429s it gave.
        assert {name: rate_limited(http) for name, http in replicas} == {"a": 2, "b": 3}


def rate_limited(http: httpx.Client) -> float:
    """``infernet_http_rate_limited_total{route="/api/jobs"}`` on the node ``http`` talks to."""
    text = http.get("/metrics").text
    for line in text.splitlines():
        if line.startswith('infernet_http_rate_limited_total{route="/api/jobs"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


# -- logs ---------------------------------------------------------------------------------------


def json_lines(output: str) -> list[dict[str, Any]]:
    """Every line of a node's output, each of which must be one JSON log object."""
    lines = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}\nin:\n{output}") from None
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= set(record), line
        assert isinstance(record["message"], str) and record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR"}
        assert datetime.fromisoformat(record["time"]).utcoffset() is not None, line
        lines.append(record)
    assert lines, "the node wrote nothing"
    return lines


def access_lines(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in records if record["logger"] == "infernet_asgi.access"]


def test_json_log_and_access_lines(tmp_path: Path, echo_service: ServiceProcess) -> None:
    config = echo_config(echo_service, log={"format": "json", "access": True})
    with running_node(tmp_path, config) as node, node.client() as http:
        job_id = submit(http, ["echo"], {"secret-free": True})
        wait_done(http, job_id)
        assert http.get("/nowhere").status_code == 404
        assert http.post("/api/jobs", json={"containers": ["nope"], "data": {}}).status_code == 400
        assert http.get("/info").status_code == 200
        with client(CLIENT_B, base_url=node.base_url) as other:
            assert other.get("/health").status_code == 200
        # Each access line is written once its response has been sent.
        eventually(lambda: '"path":"/health"' in node.output(), 5.0, "the access line of GET /health")
    records = json_lines(node.output())
    assert any(r["message"].startswith("infernet-node listening on 127.0.0.1:") for r in records)
    access = access_lines(records)
    by_request = {(r["method"], r["path"], r["status"]) for r in access}
    assert {
        ("POST", "/api/jobs", 200),
        ("GET", "/api/jobs", 200),  # the query string (job ids) is not logged
        ("GET", "/nowhere", 404),
        ("POST", "/api/jobs", 400),
        ("GET", "/info", 200),
        ("GET", "/health", 200),
    } <= by_request
    for record in access:
        assert record["level"] == "INFO"
        assert record["client"] in {CLIENT_A, CLIENT_B}, record
        assert isinstance(record["duration_ms"], float | int) and 0 <= record["duration_ms"] < 5000
        assert "?" not in record["path"] and job_id not in json.dumps(record)
        assert record["message"].startswith(f"{record['method']} {record['path']} {record['status']} ")
    assert {r["client"] for r in access if r["path"] != "/health"} == {CLIENT_A}
    assert CLIENT_B in {r["client"] for r in access if r["path"] == "/health"}


def test_log_format_flag_without_config(tmp_path: Path) -> None:
    """``--log-format json`` on the embedded default: JSON from the first line to the last."""
    port = free_port()
    log = tmp_path / "node.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*node_command(), "--host", "127.0.0.1", "--port", str(port), "--log-format", "json"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=subprocess_env(),
            cwd=tmp_path,
        )
    try:
        with client(base_url=f"http://127.0.0.1:{port}") as http:

            def healthy() -> bool:
                try:
                    return http.get("/health", timeout=1.0).status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_ready(proc, healthy, 15.0, 0.05), log.read_text(errors="replace")
            submit(http, ["echo"], {})
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(10) == 0, log.read_text(errors="replace")
    records = json_lines(log.read_text())
    assert access_lines(records) == []  # the access log is off unless log.access
    assert records[-1]["message"] == "node stopped"


def test_json_log_includes_the_config_loading_lines(tmp_path: Path, echo_service: ServiceProcess) -> None:
    config = echo_config(echo_service, log={"format": "json"})
    env = {**subprocess_env(), "INFERNET_SERVER__MAX_BATCH": "3"}
    with running_node(tmp_path, config, env=env) as node:
        pass
    records = json_lines(node.output())
    assert any(r["message"] == "config: server.max_batch is set by the environment" for r in records)


def test_environment_overrides_reach_the_running_node(tmp_path: Path, echo_service: ServiceProcess) -> None:
    """``INFERNET_<KEY>__<KEY>`` and ``<key>_FILE`` set the config, end to end."""
    bearer = tmp_path / "bearer.txt"
    bearer.write_text("token-from-a-file\n")
    env = {
        **subprocess_env(),
        "INFERNET_SERVER__MAX_BATCH": "2",
        "INFERNET_CONTAINERS__0__BEARER_FILE": str(bearer),
    }
    with running_node(tmp_path, echo_config(echo_service), env=env) as node, node.client() as http:
        job = {"containers": ["echo"], "data": {}}
        response = http.post("/api/jobs/batch", json=[job] * 3)
        assert response.status_code == 413, response.text
        assert response.json()["params"] == {"limit": 2, "count": 3}
        job_id = submit(http, ["echo"], {"via": "env"})
        result = wait_done(http, job_id)
    assert result["result"]["output"]["auth"] == "Bearer token-from-a-file"
    assert "token-from-a-file" not in node.output()


@pytest.mark.chain
def test_private_key_from_the_environment_is_never_shown(
    tmp_path: Path, anvil_url: str, active_deployment: Deployment, echo_service: ServiceProcess
) -> None:
    key = NODE_KEYS[0]
    config = echo_config(
        echo_service,
        log={"format": "json", "access": True},
        chain={
            "enabled": True,
            "rpc_url": anvil_url,
            "trail_head_blocks": 0,
            "coordinator_address": active_deployment.coordinator.address,
            "wallet": {"max_gas_limit": 2_000_000},  # the key comes from the environment only
            "snapshot_sync": {"sync_period": 0.1, "sleep": 0.0},
        },
    )
    env = {**subprocess_env(), "INFERNET_CHAIN__WALLET__PRIVATE_KEY": key}
    with running_node(tmp_path, config, env=env) as node, node.client() as http:
        info = http.get("/info")
        wait_done(http, submit(http, ["echo"], {}))
        metrics = http.get("/metrics").text
    assert info.json()["chain"] == {"enabled": True, "address": address_of(key)}
    bare = key.removeprefix("0x").lower()
    for text in (info.text, metrics, node.output()):
        assert bare not in text.lower()
    assert "config: chain.wallet.private_key is set by the environment" in node.output()


# -- check-config -------------------------------------------------------------------------------


def check_config(path: Path, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    """Run ``infernet-node check-config --config PATH``; its exit status and output lines."""
    done = subprocess.run(
        [*node_command(), "check-config", "--config", str(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env if env is not None else subprocess_env(),
        cwd=path.parent,
        timeout=CHECK_CONFIG_TIMEOUT,
        check=False,
    )
    return done.returncode, done.stdout.decode().splitlines()


def checks(lines: list[str]) -> dict[str, str]:
    """``{"ok"|"FAIL" + " " + what: detail}`` of each check line (``what`` as ``store sqlite``)."""
    found: dict[str, str] = {}
    for line in lines:
        verdict, _, rest = line.partition(" ")
        assert verdict in {"ok", "FAIL"}, line
        what, _, detail = rest.strip().partition(": ")
        found[f"{verdict} {what}"] = detail
    return found


def unused_url(scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{free_port()}"


def test_check_config_passes_a_config_it_can_run(tmp_path: Path, echo_service: ServiceProcess) -> None:
    db = tmp_path / "results.db"
    config = echo_config(echo_service, store={"kind": "sqlite", "path": str(db)})
    path = write_config(tmp_path, config)
    status, lines = check_config(path)
    assert status == 0, lines
    assert checks(lines) == {
        "ok config": f"{path} is valid",
        "ok store sqlite": f"{db} will be created",
        "ok containers echo": f"{echo_service.url} accepts connections",
    }
    # The file of a node that is running (and holds its lock) is checked too, read-only.
    with running_node(tmp_path, config) as node, node.client() as http:
        wait_done(http, submit(http, ["echo"], {}))
        status, lines = check_config(path)
    assert status == 0, lines
    assert checks(lines)["ok store sqlite"] == f"{db} is readable (1 jobs)"


def test_check_config_names_the_container_nobody_answers_for(tmp_path: Path, echo_service: ServiceProcess) -> None:
    dead = unused_url()
    config = {
        "manage_containers": False,
        "containers": [{"id": "echo", "url": echo_service.url}, {"id": "gone", "url": dead}],
        "store": {"kind": "sqlite", "path": str(tmp_path / "results.db")},
    }
    status, lines = check_config(write_config(tmp_path, config))
    assert status == 4, lines
    found = checks(lines)
    assert set(found) == {"ok config", "ok store sqlite", "ok containers echo", "FAIL containers gone"}
    assert dead.removeprefix("http://") in found["FAIL containers gone"]
    assert "refuses connections" in found["FAIL containers gone"]


def test_check_config_unreachable_redis_is_a_store_failure(tmp_path: Path, echo_service: ServiceProcess) -> None:
    redis_url = unused_url("redis") + "/0"
    config = echo_config(echo_service, store={"kind": "redis", "url": redis_url})
    status, lines = check_config(write_config(tmp_path, config))
    assert status == 3, lines
    found = checks(lines)
    assert set(found) == {"ok config", "FAIL store redis", "ok containers echo"}
    assert redis_url in found["FAIL store redis"]
    # Store and containers both failing: the store's status (the first class that failed).
    config["containers"] = [{"id": "gone", "url": unused_url()}]
    status, lines = check_config(write_config(tmp_path, config))
    assert status == 3, lines
    assert set(checks(lines)) == {"ok config", "FAIL store redis", "FAIL containers gone"}


def test_check_config_real_redis_passes(tmp_path: Path, redis_port: int, echo_service: ServiceProcess) -> None:
    config = echo_config(echo_service, store={"kind": "redis", "url": f"redis://127.0.0.1:{redis_port}/0"})
    status, lines = check_config(write_config(tmp_path, config))
    assert status == 0, lines
    assert checks(lines)["ok store redis"] == "answers (0 jobs pending)"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"server": {"port": "4000"}}', "expected `int`, got `str` at server.port"),
        ("{not json", "is not valid JSON"),
        ('{"store": {"kind": "postgres"}}', "store.kind"),
    ],
)
def test_check_config_invalid_config_is_status_2(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(text)
    status, lines = check_config(path)
    assert status == 2, lines
    assert len(lines) == 1 and lines[0].startswith("FAIL config: "), lines
    assert problem in lines[0]


def test_check_config_missing_file_and_no_config(tmp_path: Path) -> None:
    status, lines = check_config(tmp_path / "absent.json")
    assert status == 2 and len(lines) == 1 and "absent.json" in lines[0], lines
    done = subprocess.run(
        [*node_command(), "check-config"],
        capture_output=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=CHECK_CONFIG_TIMEOUT,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout.decode().startswith("FAIL config: no config given")


def test_check_config_unreachable_rpc_is_a_chain_failure(tmp_path: Path, echo_service: ServiceProcess) -> None:
    rpc_url = unused_url()
    config = echo_config(
        echo_service,
        store={"kind": "sqlite", "path": str(tmp_path / "results.db")},
        chain={
            "enabled": True,
            "rpc_url": rpc_url,
            "coordinator_address": "0x" + "11" * 20,
            "wallet": {"private_key": NODE_KEYS[0]},
        },
    )
    status, lines = check_config(write_config(tmp_path, config))
    assert status == 5, lines
    found = checks(lines)
    assert {"ok config", "ok store sqlite", "ok containers echo", "FAIL chain rpc", "FAIL chain coordinator"} == set(
        found
    )


def chain_check_config(anvil_url: str, deployment: Deployment, service: ServiceProcess, **chain: Any) -> dict[str, Any]:
    return echo_config(
        service,
        chain={
            "enabled": True,
            "rpc_url": anvil_url,
            "coordinator_address": deployment.coordinator.address,
            "wallet": {"private_key": NODE_KEYS[0]},
            **chain,
        },
    )


@pytest.mark.chain
def test_check_config_with_the_chain(
    tmp_path: Path, anvil_url: str, deployment: Deployment, echo_service: ServiceProcess
) -> None:
    config = chain_check_config(anvil_url, deployment, echo_service, chain_id=31337)
    config["store"] = {"kind": "sqlite", "path": str(tmp_path / "results.db")}
    status, lines = check_config(write_config(tmp_path, config))
    assert status == 0, lines
    found = checks(lines)
    assert set(found) == {"ok config", "ok store sqlite", "ok containers echo", "ok chain rpc", "ok chain coordinator"}
    assert found["ok chain rpc"].startswith("chain id 31337, block ")
    assert found["ok chain coordinator"] == f"{deployment.coordinator.address} is a v0.1 Coordinator"

    # The wrong chain: only the RPC check fails, with status 5.
    config["chain"]["chain_id"] = 1
    status, lines = check_config(write_config(tmp_path, config, "wrong-chain.json"))
    assert status == 5, lines
    found = checks(lines)
    assert found["FAIL chain rpc"] == "chain id 31337, but chain.chain_id is 1"
    assert "ok chain coordinator" in found

    # No contract at the Coordinator address.
    config["chain"] = {**config["chain"], "chain_id": None, "coordinator_address": address_of(NODE_KEYS[1])}
    status, lines = check_config(write_config(tmp_path, config, "no-contract.json"))
    assert status == 5, lines
    found = checks(lines)
    assert "ok chain rpc" in found
    assert "has no contract code" in found["FAIL chain coordinator"]
