"""asyncpg's errors in the port's and the domain's terms, so none reaches a use case.

A timeout or a cancelled statement is the budget's ``DeadlineExceeded``; a
refused, lost or shut-down connection (and "too many connections",
serialisation failures, a read-only standby) is ``Unavailable``
(UNAVAILABLE, which callers may retry); a full disk, an I/O error or
corruption on the database's side is ``StoreFailed`` (it lasts; no retry
helps); a unique violation is
``DuplicateKey(table)``. Anything else passes through, to be reported as
INTERNAL with the details in the log only.
"""

from __future__ import annotations

from typing import NoReturn

import asyncpg

from ... import deadlines
from ...domain import DeadlineExceeded, StoreFailed, Unavailable
from ..base import DuplicateKey

# Connection-level failures: the database is down, restarting, or unreachable.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, DNS
    asyncpg.PostgresConnectionError,  # class 08, and "connection was closed"
    asyncpg.CannotConnectNowError,  # starting up / shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InsufficientResourcesError,  # too many connections (a full disk: _LASTING)
    asyncpg.TransactionRollbackError,  # serialisation failure, deadlock: retry
    asyncpg.ReadOnlySQLTransactionError,  # a standby after a failover
)
_TIMEOUTS = (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError, TimeoutError)
# Failures of the database's own storage, which no retry cures.
_LASTING = (
    asyncpg.DiskFullError,
    asyncpg.DataCorruptedError,
    asyncpg.IndexCorruptedError,
    asyncpg.PostgresIOError,
)


def is_connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (and likely the pool's others) is gone."""
    if isinstance(exc, _UNAVAILABLE) and not isinstance(exc, asyncpg.TransactionRollbackError):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def translate(exc: Exception, budget: deadlines.Budget | None) -> Exception:
    """A driver error as the port's or the domain's; unknown ones pass through (INTERNAL)."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return DuplicateKey(exc.table_name or "unknown")
    if isinstance(exc, _TIMEOUTS):
        if budget is not None:
            return budget.exceeded("store")
        return DeadlineExceeded(f"store work timed out: {exc}", "store")
    if isinstance(exc, asyncpg.TransactionRollbackError):
        return Unavailable(f"store transaction conflict, retry: {exc}", "the store had a conflict")
    if isinstance(exc, _LASTING):
        full = isinstance(exc, asyncpg.DiskFullError)
        return StoreFailed(f"the database cannot write: {type(exc).__name__}: {exc}", full=full)
    if is_connection_lost(exc):
        return Unavailable(f"store unavailable: {type(exc).__name__}: {exc}".rstrip(": "))
    return exc


def raise_translated(exc: Exception, budget: deadlines.Budget | None) -> NoReturn:
    """Raises ``exc`` translated (chained to it), or ``exc`` itself if it is not ours to map."""
    mapped = translate(exc, budget)
    if mapped is exc:
        raise exc
    raise mapped from exc
