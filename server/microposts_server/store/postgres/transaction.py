"""One unit of work on one pooled connection, bounded by the call's budget.

A write is a transaction: ``BEGIN`` with ``SET LOCAL statement_timeout`` and
``lock_timeout`` (the time left), so that the server itself gives up a
statement or a lock wait when the caller's time is gone. A read takes no
transaction: each of its statements reads committed data on its own (why that
is enough: ``base.Store.read``), which saves the BEGIN and COMMIT round trips.

Every statement also gets asyncpg's client-side ``timeout=`` (the time left;
on expiry asyncpg cancels it on the server). A unit cut off by a deadline, an
error or a cancelled task is rolled back whole before its connection goes
back to the pool; a connection whose state is in doubt is terminated instead
(the server then rolls back on its own). After a lost connection the pool's
connections are expired, so calls reconnect rather than trip over stale
sockets one by one; a read that lost its connection is retried once on a
fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg

from ... import deadlines
from .errors import is_connection_lost, raise_translated

if TYPE_CHECKING:
    from .pool import PostgresStore

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0  # a statement outside any call (start-up, maintenance)
CLEANUP_TIMEOUT = 5.0  # rolling back and returning a connection
# The store gives up a little before the call's deadline (10 ms, or a fifth of
# a shorter budget), leaving time to cancel the statement, roll back and
# answer "deadline exceeded in store" before the handler itself is stopped.
CLEANUP_MARGIN = 0.010
CLEANUP_FRACTION = 0.2


def _terminate(con: Any) -> None:
    """Ends ``con``'s session at once, unless the pool already took it back.

    asyncpg hands a connection whose socket closed (the server ended the
    session, the network dropped it) back to its pool by itself, and then
    refuses every call on it, ``terminate()`` included: nothing is left to end.
    """
    with contextlib.suppress(asyncpg.InterfaceError):
        con.terminate()


class UnitOfWork:
    """A pooled connection for one unit of work; its own async context manager.

    Statements go through ``_fetchrow``, ``_fetch`` and ``_execute``: bounded
    by the budget, errors translated, a read retried once on a fresh
    connection if it lost its own.
    """

    __slots__ = ("budget", "con", "end", "retried", "store", "write")

    def __init__(self, store: PostgresStore, write: bool) -> None:
        self.store = store
        self.write = write
        budget = self.budget = deadlines.CURRENT.get()
        self.end = 0.0
        if budget is not None:
            total = budget.deadline - budget.start
            self.end = budget.deadline - min(CLEANUP_MARGIN, total * CLEANUP_FRACTION)
        self.con: Any = None
        self.retried = False

    def _left(self) -> float:
        """Seconds the next database step may take; raises once the budget is spent."""
        budget = self.budget
        if budget is None:
            return DEFAULT_TIMEOUT
        left = self.end - time.monotonic()
        if left <= 0:
            raise budget.exceeded("store")
        return left

    async def __aenter__(self) -> Self:
        budget = self.budget
        if budget is not None:
            if budget.expired():
                raise budget.exceeded("queue")
            budget.enter_store()
        try:
            await self._connect()
        except BaseException:
            if budget is not None:
                budget.leave_store(failed=True)
            raise
        return self

    async def _connect(self) -> None:
        """Takes a pooled connection (and, for a write, begins), once more if it was stale."""
        pool = self.store.pool
        while True:
            try:
                self.con = await pool.acquire(timeout=self._left())
                if self.write:
                    ms = max(1, int(self._left() * 1000))
                    # One round trip: simple-query protocol, three statements.
                    await self.con.execute(
                        f"BEGIN; SET LOCAL statement_timeout = {ms}; SET LOCAL lock_timeout = {ms}",
                        timeout=self._left(),
                    )
                return
            except Exception as exc:
                await self._discard()
                if is_connection_lost(exc):
                    await self.store.connection_lost()
                    if not self.retried:  # nothing was done yet: safe to try again
                        self.retried = True
                        continue
                raise_translated(exc, self.budget)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        failed = exc_type is not None
        try:
            if exc_type is None:
                if self.write:
                    try:
                        await self.con.execute("COMMIT", timeout=self._left())
                    except BaseException as commit_exc:
                        failed = True
                        await asyncio.shield(self._discard())
                        if isinstance(commit_exc, Exception):
                            raise_translated(commit_exc, self.budget)
                        raise
                await self._release()
            else:
                # Rolled back and returned even when this task is cancelled again.
                await asyncio.shield(self._discard())
        finally:
            if self.budget is not None:
                self.budget.leave_store(failed)

    async def _release(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            await self.store.pool.release(con, timeout=CLEANUP_TIMEOUT)

    async def _discard(self) -> None:
        """Rolls back whatever is open (after a cancelled statement too) and releases."""
        con = self.con
        if con is None:
            return
        try:
            if not con.is_closed() and con.is_in_transaction():
                # asyncpg first waits for the cancel of an interrupted statement.
                await con.execute("ROLLBACK", timeout=CLEANUP_TIMEOUT)
        except Exception:
            _terminate(con)  # the server rolls back when the session ends
        try:
            await self._release()
        except Exception:
            _terminate(con)

    async def _bounded(self, statement: Callable[[Any, float], Awaitable[T]]) -> T:
        """Runs ``statement(connection, seconds_left)``, bounded and translated."""
        try:
            return await statement(self.con, self._left())
        except Exception as exc:
            if not is_connection_lost(exc):
                raise_translated(exc, self.budget)
            await self.store.connection_lost()
            if self.write or self.retried:
                raise_translated(exc, self.budget)
        # A read lost its connection: reads are safe to repeat on a fresh one.
        await self._discard()
        self.retried = True
        await self._connect()
        try:
            return await statement(self.con, self._left())
        except Exception as exc:
            raise_translated(exc, self.budget)

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        """The first row of ``sql``'s result, or None."""
        return await self._bounded(lambda con, left: con.fetchrow(sql, *args, timeout=left))

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        """Every row of ``sql``'s result."""
        return await self._bounded(lambda con, left: con.fetch(sql, *args, timeout=left))

    async def _execute(self, sql: str, *args: Any) -> str:
        """Runs ``sql``; returns its status tag (e.g. ``"DELETE 3"``)."""
        return await self._bounded(lambda con, left: con.execute(sql, *args, timeout=left))

    async def execute(self, sql: str, *args: Any) -> str:
        """Runs a statement of the caller's own here, bounded and translated like ours.

        Returns its status tag (e.g. ``"DELETE 3"``). Not on the port (use
        cases never write SQL): it is for maintenance and for tests that need a
        real slow statement (``pg_sleep``) inside a real unit of work.
        """
        return await self._execute(sql, *args)
