"""A durable result store in one SQLite file: no service to run, survives restarts.

The file belongs to one node at a time (an exclusive lock on ``<path>.lock``), which is what
lets :meth:`SqliteResultStore.interrupted` treat every running job it finds at start as one
that a previous run of the node left behind. The calls made in one turn of the event loop run
as one batch in one transaction (group commit, :mod:`.batch`; from the second write of a batch
on, each under its own savepoint, so that one failing call is undone alone), so many
concurrent submissions cost one commit. The database is in WAL mode with
``synchronous=NORMAL``: a commit survives the node being killed (only a power cut can lose the
last commits), a put returns only after its commit, and a commit writes to the operating
system, not through to the disk, which is why it may run on the event loop. The flushes to the
disk happen in checkpoints, on a thread of their own (:mod:`.checkpoint`).

Because the store is the file's only writer, it also knows what the file holds for the jobs
it put last: a bounded cache of their committed records (updated when a commit is delivered,
in commit order, whether or not the caller is still waiting) answers
:meth:`~SqliteResultStore.get` for them without SQL. Anything it does not hold is read from the
file.

Retention is indexed: expired rows are found through an index on their deadline, and the
oldest finished rows through an index on finish order, so no operation scans every job. The
store keeps a lower bound of the deadlines in the file, so that a put looks for expired rows
only once one may exist.

A failure of the file (a full disk, an I/O error) fails the calls of its batch with
:class:`~infernet_core.errors.StoreUnavailable` (a 503), in the node's words; the next batch
tries again, so the store recovers by itself when the disk does.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import msgspec

from ...codec import decode_job as _decode_job
from ...codec import decode_request as _decode_request
from ...codec import encode as _encode
from ...errors import StoreUnavailable
from ...jobs import Job
from ...models import JobRequest
from ...store import OVERDUE_GRACE, ResultStore, Retention, expired
from .batch import READ, WRITE, GroupCommit
from .checkpoint import Checkpointer
from .errors import describe

__all__ = ("SqliteResultStore",)

log = logging.getLogger("infernet_core.stores.sqlite")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    client      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    pending     INTEGER NOT NULL,   -- 1 running, 0 finished
    created     INTEGER NOT NULL,   -- order of first insertion (listing order)
    finished    INTEGER,            -- order of finishing (eviction order); running: of its last put
    expires_at  REAL,               -- wall-clock deadline (running: pending_ttl + grace); NULL = kept
    record      BLOB    NOT NULL,   -- the Job, msgspec JSON
    request     BLOB,               -- the JobRequest while running, for a rerun
    PRIMARY KEY (client, id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_client ON jobs (client, pending, created);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_finish ON jobs (finished) WHERE pending = 0;
CREATE INDEX IF NOT EXISTS jobs_pending ON jobs (expires_at) WHERE pending = 1;
"""

# Insert, or update a running job; a finished row is left alone (rowcount 0). A running job put
# again without its request (a progress or status update) keeps the request that started it.
_UPSERT = """
INSERT INTO jobs (client, id, pending, created, finished, expires_at, record, request)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (client, id) DO UPDATE SET
    pending = excluded.pending, finished = excluded.finished, expires_at = excluded.expires_at,
    record = excluded.record,
    request = CASE WHEN excluded.pending = 1 THEN coalesce(excluded.request, jobs.request) END
WHERE jobs.pending = 1
"""
_DROP_EXPIRED_KEY = "DELETE FROM jobs WHERE client = ? AND id = ? AND expires_at <= ? RETURNING pending"
_PURGE_FINISHED = "DELETE FROM jobs WHERE expires_at <= ? AND pending = 0"
_PURGE_PENDING = "DELETE FROM jobs WHERE expires_at <= ? AND pending = 1"
_NEXT_DEADLINE = "SELECT min(expires_at) FROM jobs WHERE expires_at IS NOT NULL"
_TRIM = (
    "DELETE FROM jobs WHERE (client, id) IN "
    "(SELECT client, id FROM jobs WHERE pending = 0 ORDER BY finished LIMIT ?) RETURNING client, id"
)

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_GET_ONE = f"SELECT id, record FROM jobs WHERE client = ? AND id = ? AND {_LIVE}"
_IDS = f"SELECT id FROM jobs WHERE client = ? AND pending = ? AND {_LIVE} ORDER BY created"
_PENDING_COUNT = "SELECT count(*) FROM jobs WHERE pending = 1 AND expires_at > ?"
_OVERDUE = (
    "SELECT record FROM jobs WHERE pending = 1 AND expires_at > ? AND expires_at <= ?"
    " ORDER BY expires_at, finished LIMIT ?"
)
_PURGE_EVERY = 1.0  # seconds between deletions of all expired rows

_CACHE_BYTES: Final = 8 << 20
"""Bytes of records the read cache holds at most (the most recently put jobs)."""
_CACHE_ENTRY_BYTES: Final = 256 << 10
"""A record larger than this is not cached (a get reads it from the file)."""


_Key = tuple[str, str]
_Cached = tuple[bytes, float]  # (committed record, its deadline; inf = kept)
_Stored = tuple[bool, bytes, float, list[_Key] | None]  # what a put tells the read cache


class SqliteResultStore(ResultStore):
    """Keeps jobs in an SQLite file.

    Args:
        path: The database file (created if missing). ``":memory:"`` is allowed for tests.
        retention: How long jobs are kept.
        clock: Wall clock (injectable for tests); deadlines are stored as its readings.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        retention: Retention | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = str(path)
        self._retention = retention or Retention()
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._batches: GroupCommit | None = None
        self._checkpointer: Checkpointer | None = None
        # Counters of what the file holds (rolled back with a failing call; see _snapshot).
        self._next_seq = 0
        self._finished_count = 0
        self._next_purge = -math.inf
        self._next_deadline = -math.inf  # no row in the file expires before this
        self._interrupted: list[tuple[Job, JobRequest | None]] = []
        # Committed records of recently put jobs, oldest first.
        self._cache: dict[_Key, _Cached] = {}
        self._cache_bytes = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._db is not None:
            return
        db: sqlite3.Connection | None = None
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
                self._lock_fd = _lock(self.path + ".lock")
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer's thread does it
            db.execute("PRAGMA busy_timeout=5000")
            db.executescript(_SCHEMA)
            created, finished = db.execute("SELECT max(created), max(finished) FROM jobs").fetchone()
            self._finished_count = db.execute("SELECT count(*) FROM jobs WHERE pending = 0").fetchone()[0]
            rows = db.execute(
                f"SELECT record, request FROM jobs WHERE pending = 1 AND {_LIVE}", (self._clock(),)
            ).fetchall()
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                db.close()
            self._release_lock()
            reason = describe(exc) if isinstance(exc, sqlite3.Error) else exc.strerror or str(exc)
            raise StoreUnavailable(f"Result store unavailable: cannot open {self.path}: {reason}") from None
        self._next_seq = max(created or 0, finished or 0) + 1
        self._next_purge = self._next_deadline = -math.inf
        self._interrupted = [job for job in map(_interrupted_job, rows) if job is not None]
        self._db = db
        self._batches = GroupCommit(db, self._snapshot, self._restore)
        if self.path != ":memory:":
            self._checkpointer = Checkpointer(self.path)

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        found, self._interrupted = self._interrupted, []
        return found

    async def aclose(self) -> None:
        batches, self._batches = self._batches, None
        if batches is not None:
            batches.db = None  # calls still queued fail (StoreUnavailable), none hangs
        self._cache.clear()
        self._cache_bytes = 0
        checkpointer, self._checkpointer = self._checkpointer, None
        if checkpointer is not None:
            checkpointer.stop()
        if self._db is not None:
            self._db.close()  # the last connection to close checkpoints what is left
            self._db = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- protocol ----------------------------------------------------------------------------

    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        stored: bool = await self._call(self._put, job, request, kind=WRITE, then=self._stored)
        return stored

    def _put(self, db: sqlite3.Connection, job: Job, request: JobRequest | None) -> _Stored:
        now = self._clock()
        seq = self._next_seq
        self._next_seq += 1
        retention = self._retention
        record = _encode(job)
        if job.pending:
            blob = _encode(request) if request is not None else None  # SQL NULL, not JSON null
            # Kept a grace period past its deadline, for expire_running to fail it.
            expires: float | None = now + retention.pending_ttl + OVERDUE_GRACE
            values: tuple[object, ...] = (job.client, job.id, 1, seq, seq, expires, record, blob)
        else:
            expires = now + retention.finished_ttl if retention.finished_ttl is not None else None
            values = (job.client, job.id, 0, seq, seq, expires, record, None)
        if now >= self._next_deadline:  # some row may have expired (else none has: skip this)
            self._drop_expired(db, job, now)
        stored = db.execute(_UPSERT, values).rowcount == 1
        dropped = None
        if stored:
            if expires is not None and expires < self._next_deadline:
                self._next_deadline = expires
            if not job.pending:
                self._finished_count += 1
                dropped = self._trim(db)
        return stored, record, math.inf if expires is None else expires, dropped

    async def expire_running(self, limit: int = 1000) -> int:
        failed: int = await self._call(self._expire_running, limit, kind=WRITE, then=self._all_stored)
        return failed

    def _expire_running(self, db: sqlite3.Connection, limit: int) -> list[tuple[Job, _Stored]]:
        now = self._clock()
        rows = db.execute(_OVERDUE, (now, now + OVERDUE_GRACE, limit)).fetchall()
        jobs = [expired(job, now) for job in (_decode_record(record) for (record,) in rows) if job is not None]
        return [(job, self._put(db, job, None)) for job in jobs]

    def _all_stored(self, outcomes: list[tuple[Job, _Stored]], args: tuple[Any, ...]) -> int:
        return sum(self._stored(outcome, (job,)) for job, outcome in outcomes)

    def _drop_expired(self, db: sqlite3.Connection, job: Job, now: float) -> None:
        """Delete expired rows: all of them (at most once a second), else ``job``'s own."""
        if now >= self._next_purge:
            self._next_purge = now + _PURGE_EVERY
            self._finished_count -= db.execute(_PURGE_FINISHED, (now,)).rowcount
            db.execute(_PURGE_PENDING, (now,))
            (deadline,) = db.execute(_NEXT_DEADLINE).fetchone()
            self._next_deadline = math.inf if deadline is None else deadline
            return
        # An expired row that no purge has deleted yet is gone all the same: drop it, so that
        # this put makes a new job (not one refused as finished, or listed at its old place).
        gone = db.execute(_DROP_EXPIRED_KEY, (job.client, job.id, now)).fetchall()
        if gone and gone[0][0] == 0:
            self._finished_count -= 1

    def _trim(self, db: sqlite3.Connection) -> list[_Key] | None:
        limit = self._retention.max_finished
        if limit is None or self._finished_count <= limit:
            return None
        excess = self._finished_count - limit
        dropped: list[_Key] = db.execute(_TRIM, (excess,)).fetchall()
        self._finished_count -= excess
        return dropped

    def _stored(self, outcome: _Stored, args: tuple[Any, ...]) -> bool:
        """In commit order: what a committed put changed, into the cache."""
        stored, record, expires, dropped = outcome
        if stored:
            job: Job = args[0]
            key = (job.client, job.id)
            cache = self._cache
            old = cache.pop(key, None)
            if old is not None:
                self._cache_bytes -= len(old[0])
            if len(record) <= _CACHE_ENTRY_BYTES:
                cache[key] = (record, expires)
                self._cache_bytes += len(record)
                while self._cache_bytes > _CACHE_BYTES:
                    self._cache_bytes -= len(cache.pop(next(iter(cache)))[0])
            for key in dropped or ():
                old = self._cache.pop(key, None)
                if old is not None:
                    self._cache_bytes -= len(old[0])
        return stored

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        if self._batches is not None:
            # The cache holds exactly what the file holds for its keys: if it knows every id,
            # it answers (an expired record is a job that is gone), with no SQL.
            cache = self._cache
            entries = [cache.get((client, job_id)) for job_id in unique]
            if None not in entries:
                now = self._clock()
                return [_decode_job(entry[0]) for entry in entries if entry is not None and entry[1] > now]
        found: list[Job] = await self._call(self._get, client, unique)
        return found

    def _get(self, db: sqlite3.Connection, client: str, ids: list[str]) -> list[Job]:
        now = self._clock()
        if len(ids) == 1:
            rows: Any = db.execute(_GET_ONE, (client, ids[0], now))
            return [_decode_job(record) for _, record in rows]
        found: dict[str, Job] = {}
        # SQLite limits bound parameters per statement; look ids up in chunks.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT id, record FROM jobs WHERE client = ? AND id IN ({marks}) AND {_LIVE}",
                (client, *chunk, now),
            )
            found.update((job_id, _decode_job(record)) for job_id, record in rows)
        return [found[job_id] for job_id in ids if job_id in found]

    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        listed: list[str] = await self._call(self._ids, client, pending)
        return listed

    def _ids(self, db: sqlite3.Connection, client: str, pending: bool | None) -> list[str]:
        now = self._clock()
        states = [1] if pending is True else [0] if pending is False else [1, 0]
        listed: list[str] = []
        for state in states:
            listed.extend(job_id for (job_id,) in db.execute(_IDS, (client, state, now)))
        return listed

    async def pending_count(self) -> int:
        count: int = await self._call(self._pending_count)
        return count

    def _pending_count(self, db: sqlite3.Connection) -> int:
        count: int = db.execute(_PENDING_COUNT, (self._clock(),)).fetchone()[0]
        return count

    # -- plumbing ----------------------------------------------------------------------------

    def _snapshot(self) -> tuple[int, float, float]:
        return self._finished_count, self._next_purge, self._next_deadline

    def _restore(self, state: tuple[int, float, float]) -> None:
        self._finished_count, self._next_purge, self._next_deadline = state

    async def _call(
        self,
        function: Callable[..., Any],
        *args: Any,
        kind: int = READ,
        then: Callable[[Any, tuple[Any, ...]], Any] | None = None,
    ) -> Any:
        """Run ``function(db, *args)`` in the next batch (a write in its transaction)."""
        if self._batches is None:
            raise StoreUnavailable("Result store unavailable: the store is not open")
        try:
            return await self._batches.call(function, *args, kind=kind, then=then)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"Result store unavailable: {self.path}: {describe(exc)}") from None


def _decode_record(record: bytes) -> Job | None:
    try:
        return _decode_job(record)
    except msgspec.DecodeError as exc:  # a damaged row must not stop the sweep
        log.error("skipping an unreadable running job in the result store: %s", exc)
        return None


def _interrupted_job(row: tuple[bytes, bytes | None]) -> tuple[Job, JobRequest | None] | None:
    record, request = row
    try:
        return _decode_job(record), _decode_request(request) if request is not None else None
    except msgspec.DecodeError as exc:  # a damaged row must not stop the node from starting
        log.error("skipping an unreadable running job in the result store: %s", exc)
        return None


def _lock(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise OSError(f"another node is using it (lock {path} is held)") from None
    return fd
