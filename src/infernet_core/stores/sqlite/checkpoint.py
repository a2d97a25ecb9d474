"""Checkpoints off the event loop: a thread that copies the write-ahead log into the database.

The store's own connection never checkpoints (``wal_autocheckpoint=0``): a checkpoint flushes
the disk, which may take milliseconds or, on a busy disk, much longer, and the store's writes
run on the event loop. This thread checkpoints through a connection of its own instead, in
``PASSIVE`` mode, which never waits for (nor holds up) the store's writes.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from .errors import describe

__all__ = ("Checkpointer",)

log = logging.getLogger("infernet_core.stores.sqlite")

INTERVAL = 1.0
"""Seconds between checkpoints."""


class Checkpointer:
    """Checkpoints the database at ``path`` every ``interval`` seconds (:data:`INTERVAL`) until
    stopped."""

    def __init__(self, path: str, interval: float | None = None) -> None:
        self._path = path
        self._interval = INTERVAL if interval is None else interval
        self._stopping = threading.Event()
        self._failing = False  # a failure is logged when it starts, not once a second
        self._thread = threading.Thread(target=self._run, name=f"sqlite-checkpoint {path}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """End the thread (after the checkpoint it may be running)."""
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        try:
            while not self._stopping.wait(self._interval):
                try:
                    if db is None:
                        db = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                        db.execute("PRAGMA busy_timeout=1000")
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    if not self._failing:
                        log.warning("the result store cannot checkpoint %s: %s", self._path, describe(exc))
                    self._failing = True
                else:
                    if self._failing:
                        log.info("the result store checkpoints %s again", self._path)
                    self._failing = False
        finally:
            if db is not None:
                db.close()
