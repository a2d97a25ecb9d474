"""A durable result store in one SQLite file: no service to run, survives restarts.

The file belongs to one node at a time (an exclusive lock on ``<path>.lock``), which is what
lets :meth:`SqliteResultStore.interrupted` treat every running job it finds at start as one
that a previous run of the node left behind. SQLite calls are blocking, so they run on one
worker thread that owns the connection, never on the event loop. Calls that queue up while
it works are run as one batch in one transaction (group commit, each call under its own
savepoint), so many concurrent submissions cost one commit and one thread hand-off, not
one each. The database is in WAL mode with ``synchronous=NORMAL``: a commit survives the
node being killed (only a power cut can lose the last commits), and a put returns only
after its commit.

Retention is indexed: expired rows are found through an index on their deadline, and the
oldest finished rows through an index on finish order, so no operation scans every job.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from ..errors import StoreUnavailable
from ..jobs import Job
from ..models import JobRequest
from ..store import ResultStore, Retention

__all__ = ("SqliteResultStore",)

log = logging.getLogger("infernet_core.stores.sqlite")

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    client      TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    pending     INTEGER NOT NULL,   -- 1 running, 0 finished
    created     INTEGER NOT NULL,   -- order of first insertion (listing order)
    finished    INTEGER,            -- order of finishing (eviction order)
    expires_at  REAL,               -- wall-clock deadline; NULL = kept
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

_LIVE = "(expires_at IS NULL OR expires_at > ?)"
_PURGE_EVERY = 1.0  # seconds between deletions of expired rows

_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(Job).decode
_decode_request = msgspec.json.Decoder(JobRequest).decode


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
        self._worker: _Worker | None = None
        self._next_seq = 0
        self._finished_count = 0
        self._next_purge = 0.0
        self._interrupted: list[tuple[Job, JobRequest | None]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._worker is None:
            self._worker = _Worker(f"sqlite-store {self.path}")
        try:
            await self._worker.call(self._open, transactional=False)
        except BaseException:
            self._worker.stop()
            self._worker = None
            raise

    def _open(self) -> None:
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
            raise StoreUnavailable(f"Result store unavailable: cannot open {self.path}: {exc}") from None
        self._next_seq = max(created or 0, finished or 0) + 1
        self._interrupted = [job for job in map(_interrupted_job, rows) if job is not None]
        self._db = db
        assert self._worker is not None
        self._worker.db = db

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        found, self._interrupted = self._interrupted, []
        return found

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.call(self._close, transactional=False)
            worker.stop()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._release_lock()

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- protocol ----------------------------------------------------------------------------

    async def put(self, job: Job, request: JobRequest | None = None) -> bool:
        return await self._call(self._put, job, request)

    def _put(self, db: sqlite3.Connection, job: Job, request: JobRequest | None) -> bool:
        now = self._clock()
        seq = self._next_seq
        self._next_seq += 1
        retention = self._retention
        if job.pending:
            blob = _encode(request) if request is not None else None  # SQL NULL, not JSON null
            values: tuple[object, ...] = (
                job.client,
                job.id,
                1,
                seq,
                None,
                now + retention.pending_ttl,
                _encode(job),
                blob,
            )
        else:
            expires = now + retention.finished_ttl if retention.finished_ttl is not None else None
            values = (job.client, job.id, 0, seq, seq, expires, _encode(job), None)
        # An expired row that no purge has deleted yet is gone all the same: drop it, so that
        # this put makes a new job (not one refused as finished, or listed at its old place).
        gone = db.execute(
            "DELETE FROM jobs WHERE client = ? AND id = ? AND expires_at <= ? RETURNING pending",
            (job.client, job.id, now),
        ).fetchall()
        if gone and gone[0][0] == 0:
            self._finished_count -= 1
        stored = db.execute(_UPSERT, values).rowcount == 1
        if stored and not job.pending:
            self._finished_count += 1
            self._trim(db)
        self._purge_if_due(db, now)
        return stored

    def _trim(self, db: sqlite3.Connection) -> None:
        limit = self._retention.max_finished
        if limit is None or self._finished_count <= limit:
            return
        excess = self._finished_count - limit
        db.execute(
            "DELETE FROM jobs WHERE (client, id) IN "
            "(SELECT client, id FROM jobs WHERE pending = 0 ORDER BY finished LIMIT ?)",
            (excess,),
        )
        self._finished_count -= excess

    def _purge_if_due(self, db: sqlite3.Connection, now: float) -> None:
        if now < self._next_purge:
            return
        self._next_purge = now + _PURGE_EVERY
        gone = db.execute("DELETE FROM jobs WHERE expires_at <= ? AND pending = 0", (now,)).rowcount
        db.execute("DELETE FROM jobs WHERE expires_at <= ? AND pending = 1", (now,))
        self._finished_count -= gone

    async def get(self, client: str, ids: Sequence[str]) -> list[Job]:
        unique = list(dict.fromkeys(ids))
        if not unique:
            return []
        return await self._call(self._get, client, unique)

    def _get(self, db: sqlite3.Connection, client: str, ids: list[str]) -> list[Job]:
        found: dict[str, Job] = {}
        # SQLite limits bound parameters per statement; look ids up in chunks.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(
                f"SELECT id, record FROM jobs WHERE client = ? AND id IN ({marks}) AND {_LIVE}",
                (client, *chunk, self._clock()),
            )
            found.update((job_id, _decode_job(record)) for job_id, record in rows)
        return [found[job_id] for job_id in ids if job_id in found]

    async def ids(self, client: str, pending: bool | None = None) -> list[str]:
        return await self._call(self._ids, client, pending)

    def _ids(self, db: sqlite3.Connection, client: str, pending: bool | None) -> list[str]:
        now = self._clock()
        states = [1] if pending is True else [0] if pending is False else [1, 0]
        listed: list[str] = []
        for state in states:
            rows = db.execute(
                f"SELECT id FROM jobs WHERE client = ? AND pending = ? AND {_LIVE} ORDER BY created",
                (client, state, now),
            )
            listed.extend(job_id for (job_id,) in rows)
        return listed

    async def pending_count(self) -> int:
        return await self._call(self._pending_count)

    def _pending_count(self, db: sqlite3.Connection) -> int:
        count: int = db.execute(
            "SELECT count(*) FROM jobs WHERE pending = 1 AND expires_at > ?", (self._clock(),)
        ).fetchone()[0]
        return count

    # -- plumbing ----------------------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function(db, *args)`` on the store's worker thread, inside its transaction."""
        if self._worker is None or self._db is None:
            raise StoreUnavailable("Result store unavailable: the store is not open")
        try:
            return await self._worker.call(function, *args)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"Result store unavailable: {self.path}: {exc}") from None


_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]
_Call = tuple[Callable[..., Any], tuple[Any, ...], bool, "asyncio.Future[Any]", asyncio.AbstractEventLoop]
_BATCH = 512


class _Worker:
    """A thread that owns one connection and runs queued calls in batches.

    Transactional calls in a batch share one ``BEGIN IMMEDIATE`` ... ``COMMIT``, each under a
    savepoint so that one failing call is undone alone. Results reach the event loop in one
    hand-off per batch, and only after the commit.
    """

    def __init__(self, name: str) -> None:
        self.db: sqlite3.Connection | None = None
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., T], *args: Any, transactional: bool = True) -> T:
        """Run ``function(db, *args)`` (``function(*args)`` if not transactional) on the thread."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.put((function, args, transactional, future, loop))
        return await future

    def stop(self) -> None:
        """Let the thread finish what is queued, then end."""
        self._queue.put(None)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _BATCH:
                try:
                    following = self._queue.get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stopping = True
                    break
                batch.append(following)
            self._run_batch(batch)

    def _run_batch(self, batch: list[_Call]) -> None:
        outcomes: list[_Outcome] = []
        in_transaction: list[int] = []  # indexes of outcomes that wait for the commit
        for function, args, transactional, future, _ in batch:
            if not transactional:
                self._commit(outcomes, in_transaction)
                outcomes.append(_outcome(future, function, args))
                continue
            db = self.db
            if db is None:
                outcomes.append((future, None, sqlite3.OperationalError("the store is closed")))
                continue
            if not in_transaction:
                db.execute("BEGIN IMMEDIATE")
            db.execute("SAVEPOINT call")
            outcome = _outcome(future, function, (db, *args))
            if outcome[2] is not None:
                db.execute("ROLLBACK TO call")
            db.execute("RELEASE call")
            in_transaction.append(len(outcomes))
            outcomes.append(outcome)
        self._commit(outcomes, in_transaction)
        batch[0][4].call_soon_threadsafe(_deliver, outcomes)

    def _commit(self, outcomes: list[_Outcome], waiting: list[int]) -> None:
        if not waiting:
            return
        assert self.db is not None
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.db.execute("ROLLBACK")
            for index in waiting:
                outcomes[index] = (outcomes[index][0], None, exc)
        waiting.clear()


def _outcome(future: asyncio.Future[Any], function: Callable[..., Any], args: tuple[Any, ...]) -> _Outcome:
    try:
        return future, function(*args), None
    except Exception as exc:
        return future, None, exc


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, result, error in outcomes:
        if future.done():  # the caller was cancelled; the call still ran
            continue
        if error is None:
            future.set_result(result)
        else:
            future.set_exception(error)


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
