"""A durable result store in one SQLite file: no service to run, survives restarts.

The file belongs to one node at a time (an exclusive lock on ``<path>.lock``), which is what
lets :meth:`SqliteResultStore.interrupted` treat every running job it finds at start as one
that a previous run of the node left behind. SQLite calls are blocking, so they run on one
worker thread that owns the connection, never on the event loop. Calls that queue up while
it works are run as one batch in one transaction (group commit; from the second write of a
batch on, each under its own savepoint, so that one failing call is undone alone), so many
concurrent submissions cost one commit and one thread hand-off each way, not one per call.
The database is in WAL mode with ``synchronous=NORMAL``: a commit survives the node being
killed (only a power cut can lose the last commits), and a put returns only after its commit.

Because the store is the file's only writer, it also knows, on the event loop, what the
file holds for the jobs it put last: a bounded cache of their committed records (updated
when a commit is delivered, in commit order, whether or not the caller is still waiting)
answers :meth:`~SqliteResultStore.get` for them without a thread hand-off. Anything it does
not hold is read from the file.

Retention is indexed: expired rows are found through an index on their deadline, and the
oldest finished rows through an index on finish order, so no operation scans every job. The
store keeps a lower bound of the deadlines in the file, so that a put looks for expired rows
only once one may exist.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

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
_PURGE_EVERY = 1.0  # seconds between deletions of all expired rows

_CACHE_BYTES: Final = 8 << 20
"""Bytes of records the read cache holds at most (the most recently put jobs)."""
_CACHE_ENTRY_BYTES: Final = 256 << 10
"""A record larger than this is not cached (a get reads it from the file)."""

_encode = msgspec.json.Encoder().encode
_decode_job = msgspec.json.Decoder(Job).decode
_decode_request = msgspec.json.Decoder(JobRequest).decode

_PLAIN, _READ, _WRITE = 0, 1, 2
"""Kinds of worker call: outside any transaction (no connection), a read, a write."""

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
        self._worker: _Worker | None = None
        # Worker-thread state (rolled back with a failing call; see _snapshot/_restore).
        self._next_seq = 0
        self._finished_count = 0
        self._next_purge = -math.inf
        self._next_deadline = -math.inf  # no row in the file expires before this
        self._interrupted: list[tuple[Job, JobRequest | None]] = []
        # Event-loop state: committed records of recently put jobs, oldest first.
        self._cache: dict[_Key, _Cached] = {}
        self._cache_bytes = 0

    # -- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        if self._worker is None:
            self._worker = _Worker(f"sqlite-store {self.path}", self._snapshot, self._restore)
        try:
            await self._worker.call(self._open, kind=_PLAIN)
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
        self._next_purge = self._next_deadline = -math.inf
        self._interrupted = [job for job in map(_interrupted_job, rows) if job is not None]
        self._db = db
        assert self._worker is not None
        self._worker.db = db

    async def interrupted(self) -> list[tuple[Job, JobRequest | None]]:
        found, self._interrupted = self._interrupted, []
        return found

    async def aclose(self) -> None:
        worker, self._worker = self._worker, None
        self._cache.clear()
        self._cache_bytes = 0
        if worker is not None:
            await worker.call(self._close, worker, kind=_PLAIN)
            worker.stop()

    def _close(self, worker: _Worker) -> None:
        worker.db = None
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
        stored: bool = await self._call(self._put, job, request, kind=_WRITE, then=self._stored)
        return stored

    def _put(self, db: sqlite3.Connection, job: Job, request: JobRequest | None) -> _Stored:
        now = self._clock()
        seq = self._next_seq
        self._next_seq += 1
        retention = self._retention
        record = _encode(job)
        if job.pending:
            blob = _encode(request) if request is not None else None  # SQL NULL, not JSON null
            expires: float | None = now + retention.pending_ttl
            values: tuple[object, ...] = (job.client, job.id, 1, seq, None, expires, record, blob)
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
        """On the event loop, in commit order: what a committed put changed, into the cache."""
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
        if self._worker is not None and self._db is not None:
            # The cache holds exactly what the file holds for its keys: if it knows every id,
            # it answers (an expired record is a job that is gone), with no thread hand-off.
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
        kind: int = _READ,
        then: Callable[[Any, tuple[Any, ...]], T] | None = None,
    ) -> Any:
        """Run ``function(db, *args)`` on the store's worker thread (a write in its transaction)."""
        if self._worker is None or self._db is None:
            raise StoreUnavailable("Result store unavailable: the store is not open")
        try:
            return await self._worker.call(function, *args, kind=kind, then=then)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"Result store unavailable: {self.path}: {exc}") from None


_Then = Callable[[Any, tuple[Any, ...]], Any] | None
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None, _Then, tuple[Any, ...]]
_Call = tuple[Callable[..., Any], tuple[Any, ...], int, "asyncio.Future[Any]", asyncio.AbstractEventLoop, _Then]
_BATCH = 512


class _Worker:
    """A thread that owns one connection and runs queued calls in batches.

    The writes of a batch share one ``BEGIN IMMEDIATE`` ... ``COMMIT``; the first runs bare (if
    it fails, the transaction is rolled back before anything else joins it), each later one
    under a savepoint, so that a failing call is undone alone. The store's own counters are
    restored with it (``snapshot``/``restore``). Reads join an open transaction, else run
    alone. Results reach the event loop in one hand-off per batch, and only after the commit;
    there, each call's ``then(result, args)`` runs in order (also for a caller that has gone)
    and gives the caller's answer.
    """

    def __init__(self, name: str, snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self.db: sqlite3.Connection | None = None
        self._snapshot = snapshot
        self._restore = restore
        self._began: Any = None  # the store's state when the open transaction began
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., Any], *args: Any, kind: int = _WRITE, then: _Then = None) -> Any:
        """Run ``function(db, *args)`` (``function(*args)`` for a plain call) on the thread."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((function, args, kind, future, loop, then))
        return await future

    def stop(self) -> None:
        """Let the thread finish what is queued, then end."""
        self._queue.put(None)

    def _run(self) -> None:
        get, get_nowait = self._queue.get, self._queue.get_nowait
        stopping = False
        while not stopping:
            item = get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _BATCH:
                try:
                    following = get_nowait()
                except queue.Empty:
                    break
                if following is None:
                    stopping = True
                    break
                batch.append(following)
            try:
                self._run_batch(batch)
            except BaseException as exc:  # never leave callers waiting on a dead thread
                log.exception("the result store's worker failed")
                failure = StoreUnavailable(f"Result store unavailable: {exc}")
                outcomes: list[_Outcome] = [(call[3], None, failure, None, ()) for call in batch]
                batch[0][4].call_soon_threadsafe(_deliver, outcomes)
                if not isinstance(exc, Exception):
                    raise

    def _run_batch(self, batch: list[_Call]) -> None:
        outcomes: list[_Outcome] = []
        waiting: list[int] = []  # indexes of outcomes that wait for the commit
        for function, args, kind, future, _, then in batch:
            if kind == _PLAIN:
                self._commit(outcomes, waiting)
                outcomes.append(_outcome(future, function, args, then))
                continue
            db = self.db
            if db is None:
                outcomes.append((future, None, sqlite3.OperationalError("the store is closed"), None, ()))
                continue
            if kind == _READ:
                if db.in_transaction:
                    waiting.append(len(outcomes))
                outcomes.append(_outcome(future, function, (db, *args), then))
                continue
            if not db.in_transaction:
                # The first write of a transaction runs bare: if it fails, all is rolled back.
                try:
                    db.execute("BEGIN IMMEDIATE")
                except sqlite3.Error as exc:
                    outcomes.append((future, None, exc, None, ()))
                    continue
                self._began = self._snapshot()
                outcome = _outcome(future, function, (db, *args), then)
                if outcome[2] is None:
                    waiting.append(len(outcomes))
                else:
                    assert not waiting  # no other call is in this transaction
                    self._rollback(outcomes, waiting, outcome[2])
                outcomes.append(outcome)
                continue
            state = self._snapshot()
            try:
                db.execute("SAVEPOINT call")
                outcome = _outcome(future, function, (db, *args), then)
                if outcome[2] is not None:
                    self._restore(state)
                    db.execute("ROLLBACK TO call")
                db.execute("RELEASE call")
            except sqlite3.Error as exc:  # the transaction is lost: so are the calls in it
                outcome = (future, None, exc, None, ())
                self._rollback(outcomes, waiting, exc)
            else:
                if outcome[2] is None:
                    waiting.append(len(outcomes))
            outcomes.append(outcome)
        self._commit(outcomes, waiting)
        batch[0][4].call_soon_threadsafe(_deliver, outcomes)

    def _commit(self, outcomes: list[_Outcome], waiting: list[int]) -> None:
        if not waiting:  # an open transaction always has a write waiting for its commit
            return
        db = self.db
        if db is None or not db.in_transaction:
            waiting.clear()
            return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback(outcomes, waiting, exc)
        waiting.clear()

    def _rollback(self, outcomes: list[_Outcome], waiting: list[int], error: BaseException) -> None:
        """Roll the open transaction back; the calls waiting for it fail with ``error``."""
        db = self.db
        assert db is not None
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                log.exception("the result store could not roll a transaction back")
        self._restore(self._began)
        for index in waiting:
            outcomes[index] = (outcomes[index][0], None, error, None, ())
        waiting.clear()


def _outcome(future: asyncio.Future[Any], function: Callable[..., Any], args: tuple[Any, ...], then: _Then) -> _Outcome:
    try:
        return future, function(*args), None, then, args
    except Exception as exc:
        return future, None, exc, None, args


def _deliver(outcomes: list[_Outcome]) -> None:
    for future, result, error, then, args in outcomes:
        if error is None and then is not None:
            result = then(result, args[1:])  # args without the connection
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
