"""Our words for what went wrong in SQLite (its own messages are not our API)."""

from __future__ import annotations

import sqlite3

__all__ = ("describe",)

# Primary result codes (https://www.sqlite.org/rescode.html), the low byte of an extended code.
_WORDS = {
    5: "the file is locked by another process",  # SQLITE_BUSY
    6: "the file is locked",  # SQLITE_LOCKED
    7: "out of memory",  # SQLITE_NOMEM
    8: "the file is read-only",  # SQLITE_READONLY
    10: "the disk failed to read or write (I/O error)",  # SQLITE_IOERR
    11: "the file is damaged",  # SQLITE_CORRUPT
    13: "the disk is full",  # SQLITE_FULL
    14: "the file cannot be opened",  # SQLITE_CANTOPEN
    26: "the file is not a database",  # SQLITE_NOTADB
}


def describe(exc: BaseException) -> str:
    """A short description of an SQLite failure, in the node's own words."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _WORDS:
        return _WORDS[code & 0xFF]
    if isinstance(exc, sqlite3.ProgrammingError):
        return "the store's connection is closed"
    name = getattr(exc, "sqlite_errorname", None)
    return f"SQLite failed ({name})" if isinstance(name, str) else "SQLite failed"
