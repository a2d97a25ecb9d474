"""Redis: a result store and a job queue shared by every replica of a node.

Several ``infernet-node`` processes pointed at one Redis behave as one node: a job accepted
by any replica is stored here and put on a Redis stream that every replica reads through one
consumer group, so any replica may run it, and a surviving replica takes over the jobs of one
that died.

Store layout
------------
Every key starts with the configured prefix ``P``. A client is written as its *tag*,
``{byte length}:{client}``, so that no client string (an IPv6 address full of colons, say)
can run into the id that follows it; keys are only ever built, never split::

    P:run:{tag}\\n{id}     the running job (msgspec JSON), expiring a little after pending_ttl
    P:done:{tag}\\n{id}    the finished job, expiring a little after finished_ttl (if set)
    P:pending:{tag}       zset: the client's running ids, scored by first-put order
    P:finished:{tag}      zset: the client's finished ids, scored by first-put order
    P:all:pending         zset: every running ``{tag}\\n{id}``, scored by its deadline (µs)
    P:all:finished        zset: every finished ``{tag}\\n{id}``, scored by finish time (µs)
    P:seq, P:clock        the first-put counter; the last finish time handed out

Each operation is one Lua script, so it is atomic (``put`` over a finished job changes
nothing) and takes one round trip. Time is Redis's own clock (``TIME``), so replicas need not
agree on theirs. Every script first drops what has expired: the members of the two global
zsets whose deadline has passed (found by score, so the work is proportional to what expired,
never a scan of every job) with their keys and per-client entries. The key TTLs are only a
backstop for records that nothing touches any more. ``max_finished`` is enforced on every
finished put by popping the oldest members of ``P:all:finished``.

Queue
-----
Accepted jobs go on the stream ``P:jobs``, read through the consumer group ``P:nodes``; each
process is its own consumer. Delivery is *at least once*: an entry is acknowledged (and
deleted) only once its job's result is stored. While a replica runs a job it refreshes the
entry's idle time (a heartbeat every ``claim_idle / 3`` seconds), and every ``claim_idle / 2``
seconds each replica claims the entries that have been idle for ``claim_idle`` seconds: those of
a replica that died, or of this process's own earlier run. A claimed job is handed to the node
as *interrupted*: it fails it with "node stopped before the job finished", or runs it again
when ``rerun_interrupted`` is set; a job whose result was stored before its replica died is
just acknowledged. A process takes at most ``MAX_IN_FLIGHT`` jobs at once; one that is stopping
puts the entries it read but did not start back on the stream as new ones, and a consumer
that has been silent for long with nothing pending (a dead replica) is deleted.

The scripts compute the keys they touch, so this needs one Redis server (with replicas or
Sentinel if wanted), not Redis Cluster.
"""

from __future__ import annotations

from .backend import RedisBackend
from .store import RedisResultStore
from .stream import RedisStreamDispatcher

__all__ = ("RedisBackend", "RedisResultStore", "RedisStreamDispatcher")
