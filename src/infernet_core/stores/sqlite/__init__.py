"""The SQLite result store: durable jobs in one file, for a node that runs alone."""

from .store import SqliteResultStore

__all__ = ("SqliteResultStore",)
