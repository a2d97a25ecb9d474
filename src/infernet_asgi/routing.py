"""Pure routing: which handler serves a method and path, computed without I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from infernet_core.errors import InfernetError, NotFound

from .types import Scope

__all__ = ("MethodNotAllowed", "Router", "route_path")

H = TypeVar("H")


class MethodNotAllowed(InfernetError):
    """The path exists but not for this method."""

    code = "request.method_not_allowed"
    status_hint = 405

    def __init__(self, method: str, allowed: list[str]) -> None:
        super().__init__("Method not allowed", {"method": method, "allowed": allowed})
        self.allowed = allowed


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted.

    Servers and frameworks put the mount point in ``root_path`` and (per the ASGI spec)
    keep it at the front of ``path``; strip it, as Starlette's ``get_route_path`` does. A
    trailing slash is ignored.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path) and path[len(root_path) : len(root_path) + 1] in ("", "/"):
        path = path[len(root_path) :]
    if len(path) > 1:
        path = path.rstrip("/")
    return path or "/"


@dataclass(frozen=True, slots=True)
class Router(Generic[H]):
    """A table of ``path -> method -> handler``."""

    table: Mapping[str, Mapping[str, H]]

    def match(self, method: str, path: str) -> H:
        """Return the handler for ``method`` and ``path``.

        Raises:
            NotFound: No such path.
            MethodNotAllowed: The path exists but not for this method.
        """
        methods = self.table.get(path)
        if methods is None:
            raise NotFound("Not found", {"path": path})
        handler = methods.get(method)
        if handler is None:
            raise MethodNotAllowed(method, sorted(methods))
        return handler
