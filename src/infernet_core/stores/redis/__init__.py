"""Redis: a result store shared by every replica of a node, and the recovery of jobs whose
replica died.

Several ``infernet-node`` processes pointed at one Redis behave as one node: a job accepted
by any replica is stored here (so any replica reads it) and runs on the replica that
accepted it, at once. Each replica holds a lease in Redis; when a replica's lease expires
(it died, or stalled for longer than the lease lasts), one surviving replica takes over the
jobs it was running.

Store layout
------------
Every key starts with the configured prefix ``P``. A client is written as its *tag*,
``{byte length}:{client}``, so that no client string (an IPv6 address full of colons, say)
can run into the id that follows it; keys are only ever built, never split::

    P:run:{tag}\\n{id}     the running job (msgspec JSON), expiring a little after pending_ttl
                          plus the overdue grace (a sweep fails it before then)
    P:done:{tag}\\n{id}    the finished job, expiring a little after finished_ttl (if set)
    P:pending:{tag}       zset: the client's running ids, scored by first-put order
    P:finished:{tag}      zset: the client's finished ids, scored by first-put order
    P:all:pending         zset: every running ``{tag}\\n{id}``, scored by its deadline (µs)
    P:all:finished        zset: every finished ``{tag}\\n{id}``, scored by finish time (µs)
    P:seq, P:clock        the first-put counter; the last finish time handed out
    P:meta:{tag}\\n{id}    hash of a running job run by a replica: r (the replica), q (its request)
    P:running:{replica}   set: the running ``{tag}\\n{id}`` that replica owns
    P:lease:{replica}     the replica's lease (a key with a TTL of ``claim_idle``)
    P:replicas            set: the registered replicas

Each operation is one Lua script, so it is atomic (``put`` over a finished job changes
nothing) and takes one round trip. Time is Redis's own clock (``TIME``), so replicas need not
agree on theirs. Every script first drops what has expired: the members of the two global
zsets whose deadline has passed (found by score, so the work is proportional to what expired,
never a scan of every job) with their keys and per-client entries. The key TTLs are only a
backstop for records that nothing touches any more. ``max_finished`` is enforced on every
finished put by popping the oldest members of ``P:all:finished``.

Replicas
--------
A job runs on the replica that accepted it; nothing is queued. Each replica
(:class:`RedisLeaseDispatcher`) gets a new id (uuid4) when it starts, takes its lease
``P:lease:{replica}`` (time-to-live ``claim_idle``) and joins ``P:replicas``. A thread of its
own, with its own synchronous connection, renews the lease every ``claim_idle / 5`` seconds,
so neither a busy event loop nor a busy connection pool can delay it.

The store's PUT script records a new running job as the replica's (``P:running:{replica}``
and ``P:meta``, with the request) and the terminal PUT releases it from whichever replica
owns it: one round trip per state change, as without replicas. Every ``min(5, claim_idle /
4)`` seconds each replica runs TAKE_OVER: for every registered replica whose lease has
expired, its running jobs become the caller's and it leaves the registry, atomically, so
exactly one replica takes each job. The taker hands them to the node as *interrupted*:
failed with "node stopped before the job finished", or run again when
``rerun_interrupted`` is set. A clean stop deletes the lease after the node's jobs have
ended; jobs it left running (for a rerun) are then taken over at the next look. A restarted
process is a new replica; its former self's jobs are taken over (by it or another) once the
old lease expires.

Nothing runs twice while its replica holds its lease. A replica that loses its lease while
alive (cut off from Redis, or stalled, for over ``claim_idle``) takes it afresh and logs a
warning; its jobs may have been taken over meanwhile and, with ``rerun_interrupted``, run
twice; a finished job stays final either way.

The scripts compute the keys they touch, so this needs one Redis server (with replicas or
Sentinel if wanted), not Redis Cluster.
"""

from __future__ import annotations

from .backend import RedisBackend
from .lease import Lease, RedisLeaseDispatcher
from .store import RedisResultStore

__all__ = ("Lease", "RedisBackend", "RedisLeaseDispatcher", "RedisResultStore")
