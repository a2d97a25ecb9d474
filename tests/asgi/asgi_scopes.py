"""ASGI scopes written by hand, for the tests that drive the app without a client."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def http_scope(
    method: str,
    path: str,
    *,
    client: tuple[str, int] | None = ("127.0.0.1", 1234),
    headers: Sequence[tuple[bytes, bytes]] = (),
    query: bytes = b"",
    root_path: str = "",
) -> dict[str, Any]:
    """An HTTP scope as a server would pass it (``client`` None: a server that gives none)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": root_path,
        "headers": list(headers),
        "server": ("testserver", 80),
    }
    if client is not None:
        scope["client"] = client
    return scope
