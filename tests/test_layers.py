"""The architecture's layering rules, checked on the source: imports point downwards only."""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PURE_MODULES = (
    "models",
    "config",
    "errors",
    "jobs",
    "guardian",
    "parsing",
    "store",
    "subscriptions",
    "eip712",
    "delivery",
)
IO_LIBRARIES = {"anyio", "httpx", "docker", "redis", "web3", "hypercorn", "sqlite3", "socket", "asyncio"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", PURE_MODULES)
def test_pure_modules_do_no_io(module: str) -> None:
    imported = _imports(SRC / "infernet_core" / f"{module}.py")
    assert imported & IO_LIBRARIES == set()
    assert "infernet_asgi" not in imported


def test_core_never_imports_the_asgi_face() -> None:
    offenders = [p for p in (SRC / "infernet_core").rglob("*.py") if "infernet_asgi" in _imports(p)]
    assert offenders == []


def _public_modules() -> list[str]:
    names = []
    for package in ("infernet_core", "infernet_asgi"):
        names.append(package)
        pkg = importlib.import_module(package)
        for info in pkgutil.walk_packages(pkg.__path__, f"{package}."):
            if not info.name.rsplit(".", 1)[-1].startswith("_"):
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _public_modules())
def test_every_public_module_declares_all(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert isinstance(exported, tuple), f"{name} has no __all__ tuple"
    missing = [symbol for symbol in exported if not hasattr(module, symbol)]
    assert missing == []
