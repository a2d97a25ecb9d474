"""A node replica as a separate process, for tests that kill one with SIGKILL.

Usage: ``python replica.py REDIS_URL MARKER_DIR CLAIM_IDLE``. It runs a Node on the Redis
store and lease dispatcher (no HTTP face) with one in-process container, ``slow``, that
creates ``MARKER_DIR/<data["name"]>`` when it starts and then sleeps ``data["sleep"]``
seconds. Once the node runs it submits one job itself, as client ``::1``, with the data
``{"name": "k1", "sleep": 60}``, prints ``ready <job id>``, and runs until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

from infernet_core import ContainerInput, JobRequest, Node, NodeConfig
from infernet_core.stores.redis import RedisBackend


async def main(url: str, marker_dir: Path, claim_idle: float) -> None:
    backend = RedisBackend(url)
    node = Node(NodeConfig(), store=backend.store, dispatcher=backend.dispatcher(claim_idle=claim_idle))

    @node.container("slow")
    async def slow(payload: ContainerInput) -> Any:
        (marker_dir / str(payload.data["name"])).touch()
        await anyio.sleep(float(payload.data.get("sleep", 60)))
        return payload.data

    async with node:
        job_id = await node.submit(JobRequest(containers=["slow"], data={"name": "k1", "sleep": 60}), "::1")
        print(f"ready {job_id}", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]))
