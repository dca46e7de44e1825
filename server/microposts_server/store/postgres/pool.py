"""``PostgresStore``: the connection pool, start-up, health and shutdown."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from ...domain import Unavailable
from .. import redact_url
from .queries import PgTransaction
from .schema import migrate
from .transaction import CLEANUP_TIMEOUT, DEFAULT_TIMEOUT

log = logging.getLogger("microposts.store")

CONNECT_TIMEOUT = 5.0  # seconds to open one connection
PING_TIMEOUT = 5.0


async def _keep_session(con: Any) -> None:
    """Pool reset hook: nothing to reset, so no extra round trip per release.

    Our sessions change nothing that outlives a transaction (SET LOCAL,
    transaction-level advisory locks, no cursors, no LISTEN), and asyncpg
    still rolls back any transaction left open before this hook runs.
    """


class PostgresStore:
    """``base.Store`` on an asyncpg connection pool; ``open()`` makes one.

    ``pool`` is the asyncpg pool its units of work draw connections from.
    """

    def __init__(self, pool: Any, url: str, connect_args: dict[str, Any], key: bytes) -> None:
        self.pool = pool
        self._url = url
        self._connect_args = connect_args
        self._key = key
        self._ping_con: Any = None
        self._down = False

    @classmethod
    async def open(
        cls, url: str, *, pool_size: int = 10, durability: str = "normal"
    ) -> PostgresStore:
        """Connects a pool of up to ``pool_size`` connections and migrates the schema."""
        settings: dict[str, str] = {}
        if "application_name" not in parse_qs(urlsplit(url).query):
            settings["application_name"] = "microposts-server"
        if durability == "full":
            settings["synchronous_commit"] = "on"
        connect_args: dict[str, Any] = {"timeout": CONNECT_TIMEOUT, "server_settings": settings}
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=1,  # grows on demand up to max_size, shrinks when idle
                max_size=pool_size,
                max_inactive_connection_lifetime=60.0,
                reset=_keep_session,
                **connect_args,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot open PostgreSQL store {redact_url(url)}: {exc}") from exc
        try:
            async with pool.acquire(timeout=DEFAULT_TIMEOUT) as con:
                key = await migrate(con)
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
                raise Unavailable(
                    f"cannot migrate PostgreSQL store {redact_url(url)}: {exc}"
                ) from exc
            raise
        return cls(pool, url, connect_args, key)

    def read(self) -> PgTransaction:
        return PgTransaction(self, False)

    def write(self) -> PgTransaction:
        return PgTransaction(self, True)

    async def page_token_key(self) -> bytes:
        return self._key  # read (or made) by the migration in open()

    async def connection_lost(self) -> None:
        """After one connection died, the others probably did too: replace them all."""
        await self.pool.expire_connections()

    async def ping(self) -> None:
        """Checks the database on a connection of its own, so a busy pool never reads as down."""
        con = self._ping_con
        try:
            if con is None or con.is_closed():
                con = self._ping_con = await asyncpg.connect(self._url, **self._connect_args)
            await con.fetchval("SELECT 1 FROM users LIMIT 1", timeout=PING_TIMEOUT)
        except (Exception, asyncio.CancelledError) as exc:
            self._ping_con = None
            if con is not None:
                con.terminate()
            if not isinstance(exc, Exception):
                raise
            self._down = True
            raise Unavailable(f"store unreachable: {type(exc).__name__}: {exc}") from exc
        if self._down:  # back after an outage: the pool's sockets are stale
            self._down = False
            await self.connection_lost()

    async def purge_requests(self, now: int) -> int:
        async with self.write() as tx:
            return await tx.purge_requests(now)

    async def check_writes(self) -> None:
        async with self.write() as tx:
            await tx.check_write()

    async def close(self) -> None:
        if self._ping_con is not None:
            self._ping_con.terminate()
            self._ping_con = None
        try:
            await asyncio.wait_for(self.pool.close(), CLEANUP_TIMEOUT)
        except asyncio.CancelledError:
            self.pool.terminate()
            raise
        except Exception as exc:  # a database gone away must not stop a clean exit
            log.warning("store closed abruptly", extra={"fields": {"error": repr(exc)}})
            self.pool.terminate()
