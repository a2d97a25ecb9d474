"""Shared fixtures of the end-to-end tests; the helpers they use live in ``e2e_support``.

``services`` (module-scoped) starts one real container service per mode (see
``container_service.py``) and kills them all, by PID, at teardown; ``echo_service`` just one.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from e2e_support import ServiceProcess, start_services


@pytest.fixture(scope="module")
def services() -> Iterator[dict[str, ServiceProcess]]:
    """One container service per mode (``fast`` twice: ``fast`` and ``fast2``)."""
    started = start_services(
        {
            "fast": "fast",
            "fast2": "fast",
            "slow": "slow",
            "fail500": "fail500",
            "nonjson": "nonjson",
            "hang": "hang",
        }
    )
    try:
        yield started
    finally:
        for service in started.values():
            service.kill()


@pytest.fixture(scope="module")
def echo_service() -> Iterator[ServiceProcess]:
    """One ``fast`` container service (it echoes its input), for tests that need just that."""
    services = start_services({"echo": "fast"})
    try:
        yield services["echo"]
    finally:
        services["echo"].kill()
