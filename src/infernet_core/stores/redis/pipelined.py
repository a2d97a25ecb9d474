"""Script calls made in one turn of the event loop go to Redis together, as one pipeline.

Each call still runs its own atomic script; only the round trip is shared. A batch's slice
of admissions, the jobs of many concurrent requests, and their rate-limit checks so cost one
write and one read on one connection instead of one connection each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ("Pipeliner",)

_Call = tuple[AsyncScript, list[Any], "asyncio.Future[Any]"]


class Pipeliner:
    """Sends the script calls of each loop turn to ``redis`` in one pipeline."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queued: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    async def call(self, script: AsyncScript, args: list[Any]) -> Any:
        """``script``'s answer to ``args`` (raises what Redis or the connection raised)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queued.append((script, args, future))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        # A caller that is cancelled cancels only its wait: a write once queued is made.
        return await future

    async def drain(self) -> None:
        """Wait for the calls already sent (before the connections close)."""
        while self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _pipeline(self, batch: list[_Call]) -> list[Any]:
        # EVALSHA by hand: a pipeline given Script objects asks SCRIPT EXISTS first, every
        # time, which doubles the round trips this class is here to save.
        pipe = self._redis.pipeline(transaction=False)
        for script, args, _ in batch:
            pipe.evalsha(script.sha, 0, *args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        return results

    async def _send(self, batch: list[_Call]) -> None:
        results: list[Any]
        try:
            if len(batch) == 1:
                script, args, _ = batch[0]
                results = [await script(args=args)]
            else:
                results = await self._pipeline(batch)
                missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
                if missing:  # Redis was restarted or its scripts flushed: load them, send those again
                    for script in {id(batch[i][0]): batch[i][0] for i in missing}.values():
                        script.sha = await self._redis.script_load(script.script)
                    for i, result in zip(missing, await self._pipeline([batch[i] for i in missing]), strict=True):
                        results[i] = result
        except BaseException as exc:  # the round trip failed: so did every call in it
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
