"""Result store implementations."""

from .memory import MemoryResultStore

__all__ = ("MemoryResultStore",)
