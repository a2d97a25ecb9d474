"""What the HTTP face tells about each request: metrics by route and status, and the access log.

Both are off unless asked for (``server.metrics``, ``log.access``); a request then costs one
wrapped ``send`` that notes the status and adds any extra headers (the rate limit's).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

from infernet_core.metrics import NodeMetrics

from .types import Message, Send

__all__ = ("UNMATCHED", "RequestObserver")

access_log = logging.getLogger("infernet_asgi.access")

UNMATCHED: Final = "unmatched"
"""The route label of a request that matched no route (so junk paths make no new series)."""

_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestObserver:
    """Counts and logs requests for one app.

    Args:
        metrics: Where to count them (``None``: not counted).
        access: Whether to write one INFO line per request to the ``infernet_asgi.access`` logger.
    """

    def __init__(self, metrics: NodeMetrics | None, access: bool) -> None:
        self.metrics = metrics
        self.access = access
        self.active = metrics is not None or access
        # Bound children by label values: labels() costs more than the count itself.
        self._counts: dict[tuple[str, str, int], Any] = {}
        self._durations: dict[str, Any] = {}

    def wrap(self, send: Send, headers: list[tuple[bytes, bytes]]) -> tuple[Send, list[int]]:
        """``send``, adding ``headers`` to the response head and noting its status (in the
        returned one-item list)."""
        status = [0]

        async def observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                if headers:
                    message = {**message, "headers": [*message.get("headers", ()), *headers]}
            await send(message)

        return observed, status

    def record(self, method: str, route: str, path: str, status: int, started: float, client: str) -> None:
        """Count one request and write its access line (as configured)."""
        seconds = time.perf_counter() - started
        metrics = self.metrics
        if metrics is not None:
            label = method if method in _METHODS else "OTHER"
            key = (label, route, status)
            count = self._counts.get(key)
            if count is None:
                count = self._counts[key] = metrics.http_requests.labels(label, route, str(status))
            count.inc()
            duration = self._durations.get(route)
            if duration is None:
                duration = self._durations[route] = metrics.http_seconds.labels(route)
            duration.observe(seconds)
        if self.access:
            access_log.info(
                "%s %s %d %.1fms %s",
                method,
                path,
                status,
                seconds * 1000,
                client,
                extra={
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client,
                },
            )

    def rate_limited(self, route: str) -> None:
        if self.metrics is not None:
            self.metrics.rate_limited.labels(route).inc()
