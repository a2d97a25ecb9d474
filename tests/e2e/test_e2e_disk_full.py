"""A full disk under the sqlite store, on the real ``infernet-node``: requests are answered
503 (never hung), the node recovers by itself when space returns, and SIGTERM stops it.
The test mounts a 3 MB tmpfs of its own (it needs the privilege to; else it is skipped)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from e2e_support import client, start_node

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

SIZE = "3m"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte with one file; return it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


@pytest.mark.parametrize("space_returns", [True, False], ids=["recovers", "stops-while-full"])
def test_a_full_disk_is_answered_503_and_the_node_recovers_and_stops(
    small_disk: Path, tmp_path: Path, space_returns: bool
) -> None:
    config = {
        "manage_containers": False,
        "shutdown_grace": 2.0,
        "store": {"kind": "sqlite", "path": str(small_disk / "jobs.db")},
        "containers": [],
    }
    node = start_node(tmp_path, config)
    try:
        with client(base_url=node.base_url) as http:
            # PUT /api/status writes a job without running a container.
            def report(n: int) -> httpx.Response:
                return http.put("/api/status", json={"id": f"j{n}", "status": "running", "containers": ["x"]})

            assert report(0).status_code == 200
            filler = fill(small_disk)
            statuses = []
            for n in range(1, 200):  # every request answered (a hang would time out)
                response = report(n)
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.json()["error"].startswith("Result store unavailable: ")
                    assert "the disk is full" in response.json()["error"], response.text
            assert 503 in statuses, statuses
            assert set(statuses) <= {200, 503}
            assert http.get("/health").status_code == 200
            if not space_returns:
                return  # SIGTERM with the disk still full
            filler.unlink()  # space returns: the node recovers by itself
            deadline = time.monotonic() + 10
            while report(1000).status_code != 200:
                assert time.monotonic() < deadline, "the node did not recover when space returned"
                time.sleep(0.1)
            assert report(1001).status_code == 200
            listed = http.get("/api/jobs", params={"pending": "true"}).json()
            assert "j0" in listed and "j1001" in listed
    finally:
        node.proc.send_signal(signal.SIGTERM)
        try:
            status = node.proc.wait(2.0 + 5.0)  # shutdown_grace plus a few seconds
        except subprocess.TimeoutExpired:
            node.proc.kill()
            raise AssertionError(f"SIGTERM did not stop the node:\n{node.output()}") from None
        node.stop()
    assert status == 0, node.output()
