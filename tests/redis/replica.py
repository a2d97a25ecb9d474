"""A node replica as a separate process, for tests that kill one with SIGKILL.

Usage: ``python replica.py REDIS_URL MARKER_DIR``. It runs a Node on the Redis store and job
stream (no HTTP face: it only takes jobs from the stream) with one in-process container,
``slow``, that creates ``MARKER_DIR/<job id>`` when it starts and then sleeps
``data["sleep"]`` seconds. It prints ``ready`` once the node runs, and runs until killed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import anyio

from infernet_core import ContainerInput, Node, NodeConfig
from infernet_core.stores.redis import RedisBackend


async def main(url: str, marker_dir: Path) -> None:
    backend = RedisBackend(url)
    node = Node(NodeConfig(), store=backend.store, dispatcher=backend.dispatcher(claim_idle=60))

    @node.container("slow")
    async def slow(payload: ContainerInput) -> Any:
        (marker_dir / str(payload.data["name"])).touch()
        await anyio.sleep(float(payload.data.get("sleep", 60)))
        return payload.data

    async with node:
        print("ready", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]))
