"""The PostgreSQL store (asyncpg): several stateless replicas on one database.

Why asyncpg: it speaks PostgreSQL's binary protocol natively on asyncio (no
thread hop, unlike a DB-API driver behind a thread pool), caches a prepared
statement per query text on each connection, so a call costs one round trip
per statement, and it cancels the statement in flight when the awaiting task
is cancelled.

One job per module:

- ``pool``: ``PostgresStore``, the connection pool, start-up, health, shutdown;
- ``schema``: the numbered migrations and the shared page-token key;
- ``transaction``: a unit of work on one pooled connection, bounded by the
  call's budget, rolled back whole when cut off;
- ``queries``: every statement the use cases run;
- ``errors``: asyncpg's errors in the port's and the domain's terms.

Durability: a commit returns once PostgreSQL has it in its write-ahead log
(``synchronous_commit``, on by default), so an acknowledged write survives
``kill -9`` of the server and of PostgreSQL alike. ``--durability full``
asks for ``synchronous_commit = on`` explicitly, in case the database's
default is weaker; ``normal`` leaves the database's setting alone.
"""

from __future__ import annotations

from .pool import PostgresStore

__all__ = ["PostgresStore"]
