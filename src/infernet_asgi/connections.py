"""How many client connections a node may hold open: its descriptor limit and its cap.

Every open connection costs a file descriptor, and so do the node's own needs (its store,
Redis, container calls, the chain's RPC). :func:`raise_descriptor_limit` lifts the process's
soft ``RLIMIT_NOFILE`` to the hard limit, and :func:`connection_cap` keeps the connections
below what is left once a reserve for the node's own descriptors is set aside, so that a
crowd of clients can never starve the node of descriptors (``accept()`` failing with
EMFILE, a store that cannot open a file).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass
from typing import Final

__all__ = ("DescriptorLimit", "RESERVED_DESCRIPTORS", "connection_cap", "raise_descriptor_limit")

RESERVED_DESCRIPTORS: Final = 128
"""Descriptors kept for the node itself (store, Redis, containers, RPC, logs), or half the
limit when the limit is below twice this."""

_UNLIMITED_TARGET: Final = 1 << 20
"""The soft limit asked for when the hard limit is unlimited."""


@dataclass(frozen=True)
class DescriptorLimit:
    """The process's ``RLIMIT_NOFILE`` before and after :func:`raise_descriptor_limit`."""

    before: int
    """The soft limit the process started with."""
    soft: int
    """The soft limit now in force: what the process may open."""
    hard: int
    """The hard limit (``resource.RLIM_INFINITY`` when unlimited)."""
    error: str | None = None
    """Why the soft limit could not be raised, if it could not."""


def raise_descriptor_limit() -> DescriptorLimit:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (or 2**20 when that is unlimited).

    Never lowers it, and never raises: if the kernel refuses, the limit stays as it was and
    the result says why.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (OSError, ValueError) as exc:
            return DescriptorLimit(soft, soft, hard, str(exc))
    now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return DescriptorLimit(soft, now, hard)


def connection_cap(max_connections: int, descriptors: int) -> int:
    """The connections a node serves at once: ``max_connections``, but never more than the
    descriptor limit minus the node's own reserve (:data:`RESERVED_DESCRIPTORS`, or half
    the limit when that is small). Always at least 1."""
    if descriptors == resource.RLIM_INFINITY:
        return max_connections
    reserve = min(RESERVED_DESCRIPTORS, descriptors // 2)
    return max(1, min(max_connections, descriptors - reserve))
