"""Group commit on the event loop: the store calls made in one turn of the loop share one
transaction and one commit.

A commit in WAL mode with ``synchronous=NORMAL`` is a write into the operating system's page
cache, not a flush to the disk (that happens at checkpoints, which run on a thread of their
own, see :mod:`.checkpoint`), so running it on the loop costs less than handing it to a
thread and back, and far less than one commit per call.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any

from ...errors import StoreUnavailable
from .errors import describe

__all__ = ("READ", "WRITE", "GroupCommit")

log = logging.getLogger("infernet_core.stores.sqlite")

READ, WRITE = 1, 2
"""Kinds of call: a read (joins an open transaction, else runs alone), a write."""

_CLOSED = "Result store unavailable: the store is closed"

_Then = Callable[[Any, tuple[Any, ...]], Any] | None
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None, _Then, tuple[Any, ...]]
_Call = tuple[Callable[..., Any], tuple[Any, ...], int, "asyncio.Future[Any]", _Then]


class GroupCommit:
    """Runs queued calls against one connection, in batches, at the end of the loop's turn.

    The writes of a batch share one ``BEGIN IMMEDIATE`` ... ``COMMIT``; the first runs bare (if
    it fails, the transaction is rolled back before anything else joins it), each later one
    under a savepoint, so that a failing call is undone alone. The store's own counters are
    restored with it (``snapshot``/``restore``). Each call's ``then(result, args)`` runs after
    the commit, in order, also for a caller that has gone, and gives the caller's answer.
    """

    def __init__(self, db: sqlite3.Connection, snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> None:
        self.db: sqlite3.Connection | None = db
        self._snapshot = snapshot
        self._restore = restore
        self._began: Any = None  # the store's state when the open transaction began
        self._queued: list[_Call] = []

    async def call(self, function: Callable[..., Any], *args: Any, kind: int = WRITE, then: _Then = None) -> Any:
        """Run ``function(db, *args)`` in the next batch; a write's answer comes after its commit."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queued.append((function, args, kind, future, then))
        if len(self._queued) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        try:
            outcomes = self._run_batch(batch)
        except Exception as exc:  # never leave a caller waiting
            log.exception("the result store failed a batch of %d calls", len(batch))
            failure = StoreUnavailable(f"Result store unavailable: {describe(exc)}")
            outcomes = [(call[3], None, failure, None, ()) for call in batch]
        _deliver(outcomes)

    def _run_batch(self, batch: list[_Call]) -> list[_Outcome]:
        outcomes: list[_Outcome] = []
        waiting: list[int] = []  # indexes of outcomes that wait for the commit
        for function, args, kind, future, then in batch:
            db = self.db
            if db is None:
                outcomes.append((future, None, StoreUnavailable(_CLOSED), None, ()))
                continue
            if kind == READ:
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
        return outcomes

    def _commit(self, outcomes: list[_Outcome], waiting: list[int]) -> None:
        db = self.db
        if not waiting or db is None or not db.in_transaction:
            return
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:  # a full disk, an I/O error: nothing of the batch is kept
            self._rollback(outcomes, waiting, exc)
        waiting.clear()

    def _rollback(self, outcomes: list[_Outcome], waiting: list[int], error: BaseException) -> None:
        """Roll the open transaction back; the calls waiting for it fail with ``error``."""
        db = self.db
        assert db is not None
        # A COMMIT that failed on a full disk or an I/O error has already rolled back.
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
