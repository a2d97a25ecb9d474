"""infernet_asgi.routing: route_path and Router.match, pure functions, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from infernet_asgi import route_path
from infernet_asgi.routing import MethodNotAllowed, Router
from infernet_core.errors import InfernetError, NotFound


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ({"path": "/api/jobs"}, "/api/jobs"),
        ({"path": "/api/jobs", "root_path": ""}, "/api/jobs"),
        ({"path": "/mnt/api/jobs", "root_path": "/mnt"}, "/api/jobs"),
        ({"path": "/a/b/health", "root_path": "/a/b"}, "/health"),
        ({"path": "/mnt", "root_path": "/mnt"}, "/"),
        ({"path": "/mnt/", "root_path": "/mnt"}, "/"),
        # Only stripped at a segment boundary.
        ({"path": "/mntx/health", "root_path": "/mnt"}, "/mntx/health"),
        # A path that does not carry the root_path (some servers strip it) is kept as is.
        ({"path": "/api/jobs", "root_path": "/mnt"}, "/api/jobs"),
        # Trailing slashes are ignored; the root stays "/".
        ({"path": "/api/jobs/"}, "/api/jobs"),
        ({"path": "/api/jobs//"}, "/api/jobs"),
        ({"path": "/"}, "/"),
        ({"path": ""}, "/"),
        ({"path": "/mnt/api/jobs/", "root_path": "/mnt"}, "/api/jobs"),
    ],
)
def test_route_path(scope: dict[str, Any], expected: str) -> None:
    before = dict(scope)
    assert route_path(scope) == expected
    assert scope == before


ROUTER: Router[str] = Router({"/a": {"GET": "get-a", "POST": "post-a"}, "/b": {"PUT": "put-b"}})


def test_match_returns_the_handler() -> None:
    assert ROUTER.match("GET", "/a") == "get-a"
    assert ROUTER.match("POST", "/a") == "post-a"
    assert ROUTER.match("PUT", "/b") == "put-b"


@pytest.mark.parametrize("path", ["/c", "/a/", "/A", ""])
def test_match_unknown_path(path: str) -> None:
    with pytest.raises(NotFound) as info:
        ROUTER.match("GET", path)
    assert info.value.message == "Not found"
    assert info.value.params == {"path": path}
    assert info.value.status_hint == 404


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("DELETE", "/a", ["GET", "POST"]), ("get", "/a", ["GET", "POST"]), ("GET", "/b", ["PUT"])],
)
def test_match_wrong_method(method: str, path: str, allowed: list[str]) -> None:
    with pytest.raises(MethodNotAllowed) as info:
        ROUTER.match(method, path)
    error = info.value
    assert isinstance(error, InfernetError)
    assert error.status_hint == 405
    assert error.code == "request.method_not_allowed"
    assert error.message == "Method not allowed"
    assert error.allowed == allowed
    assert error.params == {"method": method, "allowed": allowed}


def test_app_routes() -> None:
    from infernet_asgi.app import ROUTER as APP_ROUTER

    assert {path: sorted(methods) for path, methods in APP_ROUTER.table.items()} == {
        "/health": ["GET"],
        "/ready": ["GET"],
        "/metrics": ["GET"],
        "/openapi.json": ["GET"],
        "/info": ["GET"],
        "/api/jobs": ["GET", "POST"],
        "/api/jobs/batch": ["POST"],
        "/api/jobs/stream": ["POST"],
        "/api/status": ["PUT"],
        "/resources": ["GET"],
    }
