"""The PostgreSQL store (asyncpg): several stateless replicas on one database.

Why asyncpg: it speaks PostgreSQL's binary protocol natively on asyncio (no
thread hop, unlike a DB-API driver behind a thread pool), caches a prepared
statement per query text on each connection, so a call costs one round trip
per statement, and it cancels the statement in flight when the awaiting task
is cancelled.

Bounded by the call's budget: each statement gets asyncpg's client-side
``timeout=`` (the time left; on expiry asyncpg cancels the statement on the
server), and each write transaction also starts with ``SET LOCAL
statement_timeout`` / ``lock_timeout`` so that the server itself gives up a
statement or a lock wait when the caller's time is gone. A transaction cut
off by a deadline, an error or a cancelled task is rolled back whole before
its connection goes back to the pool; a connection whose state is in doubt
is terminated instead (the server then rolls back on its own).

Errors are translated at this edge: a timeout or cancelled statement is the
budget's ``DeadlineExceeded``; a refused, lost or shut-down connection (and
"too many connections", serialisation failures, a read-only standby) is
``Unavailable`` (UNAVAILABLE, retryable); a unique violation is
``DuplicateKey(table)``. After a lost connection the pool's connections are
expired, so calls reconnect rather than trip over stale sockets one by one;
a read that lost its connection is retried once on a fresh one.

Schema migrations are numbered (table ``schema_migrations``) and applied on
start inside one transaction holding a transaction-level advisory lock, so
replicas that start together migrate once and the others wait for it. The
page-token key is created in the same transaction: every replica on the
database shares it.

Durability: a commit returns once PostgreSQL has it in its write-ahead log
(``synchronous_commit``, on by default), so an acknowledged write survives
``kill -9`` of the server and of PostgreSQL alike. ``--durability full``
asks for ``synchronous_commit = on`` explicitly, in case the database's
default is weaker; ``normal`` leaves the database's setting alone.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, NoReturn
from urllib.parse import parse_qs, urlsplit

import asyncpg

from .. import deadlines
from ..domain import DeadlineExceeded, Micropost, Unavailable, User
from .base import DuplicateKey, RequestRecord, Transaction

log = logging.getLogger("microposts.store")

# Each entry upgrades the schema by one version (table schema_migrations).
# COLLATE "C" on keys: byte order, as SQLite compares, whatever the database's
# locale; usernames and ids sort and page the same on both stores. Free text
# (display names, post text) is BYTEA holding UTF-8: PostgreSQL's TEXT cannot
# hold U+0000, which a proto string may, and we store what we are given.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        username     TEXT COLLATE "C" PRIMARY KEY,
        display_name BYTEA NOT NULL,
        create_time  BIGINT NOT NULL
    );
    CREATE TABLE microposts (
        id               TEXT COLLATE "C" PRIMARY KEY,
        username         TEXT COLLATE "C" NOT NULL REFERENCES users (username),
        text             BYTEA NOT NULL,
        referenced_users TEXT NOT NULL,
        create_time      BIGINT NOT NULL,
        update_time      BIGINT NOT NULL,
        version          INTEGER NOT NULL
    );
    CREATE INDEX microposts_by_user ON microposts (username, id);
    CREATE TABLE requests (
        scope       TEXT COLLATE "C" NOT NULL,
        request_id  TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT NOT NULL,
        response    TEXT NOT NULL,
        expire_time BIGINT NOT NULL,
        PRIMARY KEY (scope, request_id)
    );
    CREATE INDEX requests_by_expiry ON requests (expire_time);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- A create with a request_id first claims it: concurrent twins of one
    -- request queue here, and the second one then sees the first's record
    -- (a fresh snapshot per statement in plpgsql) and replays it, instead of
    -- failing on the resource the first one just created.
    CREATE FUNCTION claim_request(p_scope TEXT, p_request_id TEXT, p_now BIGINT)
    RETURNS TABLE (scope TEXT, request_id TEXT, fingerprint TEXT, response TEXT,
                   expire_time BIGINT)
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(
            hashtextextended('microposts.request ' || p_scope || ' ' || p_request_id, 0));
        RETURN QUERY
            SELECT r.scope::TEXT, r.request_id::TEXT, r.fingerprint, r.response, r.expire_time
            FROM requests r
            WHERE r.scope = p_scope AND r.request_id = p_request_id
              AND r.expire_time > p_now;
    END $$;
    """,
]

# One migration at a time per schema, across every replica.
_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('microposts.migrate ' || current_schema(), 0))"
)
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)

CONNECT_TIMEOUT = 5.0  # seconds to open one connection
DEFAULT_TIMEOUT = 30.0  # a statement outside any call (start-up, maintenance)
CLEANUP_TIMEOUT = 5.0  # rolling back and returning a connection
PING_TIMEOUT = 5.0
# The store gives up a little before the call's deadline (10 ms, or a fifth of
# a shorter budget), leaving time to cancel the statement, roll back and
# answer "deadline exceeded in store" before the handler itself is stopped.
CLEANUP_MARGIN = 0.010
CLEANUP_FRACTION = 0.2

_POST_COLUMNS = "username, id, text, referenced_users, create_time, update_time, version"
_REQUEST_COLUMNS = "scope, request_id, fingerprint, response, expire_time"

# Connection-level failures: the database is down, restarting, or unreachable.
_UNAVAILABLE = (
    OSError,  # refused, reset, unreachable, DNS
    asyncpg.PostgresConnectionError,  # class 08, and "connection was closed"
    asyncpg.CannotConnectNowError,  # starting up / shutting down
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.TransactionRollbackError,  # serialisation failure, deadlock: retry
    asyncpg.ReadOnlySQLTransactionError,  # a standby after a failover
)
_TIMEOUTS = (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError, TimeoutError)


def _connection_lost(exc: BaseException) -> bool:
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
        return Unavailable(f"store transaction conflict, retry: {exc}")
    if _connection_lost(exc):
        return Unavailable(f"store unavailable: {type(exc).__name__}: {exc}".rstrip(": "))
    return exc


def _raise(exc: Exception, budget: deadlines.Budget | None) -> NoReturn:
    """Raises ``exc`` translated (chained to it), or ``exc`` itself if it is not ours to map."""
    mapped = translate(exc, budget)
    if mapped is exc:
        raise exc
    raise mapped from exc


def _post(row: Any) -> Micropost:
    refs = row[3]
    return Micropost(
        row[0],
        row[1],
        row[2].decode(),
        tuple(refs.split(" ")) if refs else (),
        row[4],
        row[5],
        row[6],
    )


def _user(row: Any) -> User:
    return User(row[0], row[1].decode(), row[2])


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)


async def _keep_session(con: Any) -> None:
    """Pool reset hook: nothing to reset, so no extra round trip per release.

    Our sessions change nothing that outlives a transaction (SET LOCAL,
    transaction-level advisory locks, no cursors, no LISTEN), and asyncpg
    still rolls back any transaction left open before this hook runs.
    """


class PostgresStore:
    """``base.Store`` on an asyncpg connection pool."""

    def __init__(self, pool: Any, url: str, connect_args: dict[str, Any]) -> None:
        self.pool = pool
        self.url = url
        self._connect_args = connect_args
        self._key: bytes | None = None
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
            raise Unavailable(f"cannot open PostgreSQL store {_redact(url)}: {exc}") from exc
        store = cls(pool, url, connect_args)
        try:
            await store._migrate()
        except BaseException as exc:
            pool.terminate()
            if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError):
                raise Unavailable(f"cannot migrate PostgreSQL store {_redact(url)}: {exc}") from exc
            raise
        return store

    async def _migrate(self) -> None:
        async with self.pool.acquire(timeout=DEFAULT_TIMEOUT) as con, con.transaction():
            await con.execute(_MIGRATION_LOCK)  # the other replicas wait here
            await con.execute(_MIGRATIONS_TABLE)
            version = await con.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
            if version > len(MIGRATIONS):
                log.warning(
                    "store schema is newer than this server",
                    extra={"fields": {"schema_version": version, "known": len(MIGRATIONS)}},
                )
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                await con.execute(script)
                await con.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)
                log.info("store migrated", extra={"fields": {"schema_version": number}})
            await con.execute(
                "INSERT INTO settings (key, value) VALUES ('page_token_key', $1) "
                "ON CONFLICT (key) DO NOTHING",
                secrets.token_hex(32),
            )
            value = await con.fetchval("SELECT value FROM settings WHERE key = 'page_token_key'")
            self._key = bytes.fromhex(value)

    def read(self) -> _PgTx:
        return _PgTx(self, False)

    def write(self) -> _PgTx:
        return _PgTx(self, True)

    async def page_token_key(self) -> bytes:
        if self._key is None:  # pragma: no cover - set by _migrate in open()
            async with self.read() as tx:
                value = await tx._run(
                    "fetchval", "SELECT value FROM settings WHERE key = $1", "page_token_key"
                )
            self._key = bytes.fromhex(value)
        return self._key

    async def connection_lost(self) -> None:
        """After one connection died, the others probably did too: replace them all."""
        await self.pool.expire_connections()

    async def ping(self) -> None:
        """Checks the database on a connection of its own, so a busy pool never reads as down."""
        con = self._ping_con
        try:
            if con is None or con.is_closed():
                con = self._ping_con = await asyncpg.connect(self.url, **self._connect_args)
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
            status = await tx._run("execute", "DELETE FROM requests WHERE expire_time <= $1", now)
        return int(status.rsplit(" ", 1)[1])

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


class _PgTx(Transaction):
    """One pooled connection for one unit of work; its own async context manager.

    A write is a transaction (BEGIN ... COMMIT). A read takes no transaction:
    each of its statements reads committed data on its own, which is all the
    read use cases need, and saves the BEGIN/COMMIT round trips.
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

    async def __aenter__(self) -> _PgTx:
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
                if _connection_lost(exc):
                    await self.store.connection_lost()
                    if not self.retried:  # nothing was done yet: safe to try again
                        self.retried = True
                        continue
                _raise(exc, self.budget)

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
                            _raise(commit_exc, self.budget)
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
            con.terminate()  # the server rolls back when the session ends
        try:
            await self._release()
        except Exception:
            con.terminate()

    async def _run(self, op: str, sql: str, *args: Any) -> Any:
        """Runs one statement via ``Connection.<op>``, bounded and translated."""
        try:
            return await getattr(self.con, op)(sql, *args, timeout=self._left())
        except Exception as exc:
            if not _connection_lost(exc):
                _raise(exc, self.budget)
            await self.store.connection_lost()
            if self.write or self.retried:
                _raise(exc, self.budget)
        # A read lost its connection: reads are safe to repeat on a fresh one.
        await self._discard()
        self.retried = True
        await self._connect()
        try:
            return await getattr(self.con, op)(sql, *args, timeout=self._left())
        except Exception as exc:
            _raise(exc, self.budget)

    # -- reads and writes --------------------------------------------------

    async def get_user(self, username: str) -> User | None:
        row = await self._run(
            "fetchrow",
            "SELECT username, display_name, create_time FROM users WHERE username = $1",
            username,
        )
        return None if row is None else _user(row)

    async def insert_user(self, user: User) -> None:
        await self._run(
            "execute",
            "INSERT INTO users (username, display_name, create_time) VALUES ($1, $2, $3)",
            user.username,
            user.display_name.encode(),
            user.create_time,
        )

    async def list_users(self, after: str | None, limit: int) -> list[User]:
        rows = await self._run(
            "fetch",
            "SELECT username, display_name, create_time FROM users "
            "WHERE username > $1 ORDER BY username LIMIT $2",
            after or "",
            limit,
        )
        return [_user(row) for row in rows]

    async def existing_usernames(self, usernames: Sequence[str]) -> set[str]:
        if not usernames:
            return set()
        rows = await self._run(
            "fetch", "SELECT username FROM users WHERE username = ANY($1::text[])", list(usernames)
        )
        return {row[0] for row in rows}

    async def get_micropost(
        self, username: str, post_id: str, *, for_update: bool = False
    ) -> Micropost | None:
        # FOR UPDATE: a concurrent update or delete of the same post waits for
        # ours, then sees the new version (and its etag no longer matches).
        row = await self._run(
            "fetchrow",
            f"SELECT {_POST_COLUMNS} FROM microposts WHERE id = $1 AND username = $2"
            + (" FOR UPDATE" if for_update else ""),
            post_id,
            username,
        )
        return None if row is None else _post(row)

    async def get_microposts(self, post_ids: Sequence[str]) -> dict[str, Micropost]:
        rows = await self._run(
            "fetch",
            f"SELECT {_POST_COLUMNS} FROM microposts WHERE id = ANY($1::text[])",
            list(post_ids),
        )
        return {row[1]: _post(row) for row in rows}

    async def insert_micropost(self, post: Micropost) -> None:
        await self._run(
            "execute",
            f"INSERT INTO microposts ({_POST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            post.username,
            post.id,
            post.text.encode(),
            " ".join(post.referenced_users),
            post.create_time,
            post.update_time,
            post.version,
        )

    async def update_micropost(self, post: Micropost) -> None:
        await self._run(
            "execute",
            "UPDATE microposts SET text = $1, referenced_users = $2, update_time = $3, "
            "version = $4 WHERE id = $5 AND username = $6",
            post.text.encode(),
            " ".join(post.referenced_users),
            post.update_time,
            post.version,
            post.id,
            post.username,
        )

    async def delete_micropost(self, username: str, post_id: str) -> None:
        await self._run(
            "execute", "DELETE FROM microposts WHERE id = $1 AND username = $2", post_id, username
        )

    async def list_microposts(
        self, username: str | None, before: str | None, limit: int
    ) -> list[Micropost]:
        # "~" sorts after every id character: no cursor means "from the newest".
        cursor = before if before is not None else "~"
        if username is None:
            rows = await self._run(
                "fetch",
                f"SELECT {_POST_COLUMNS} FROM microposts WHERE id < $1 ORDER BY id DESC LIMIT $2",
                cursor,
                limit,
            )
        else:
            rows = await self._run(
                "fetch",
                f"SELECT {_POST_COLUMNS} FROM microposts WHERE username = $1 AND id < $2 "
                "ORDER BY id DESC LIMIT $3",
                username,
                cursor,
                limit,
            )
        return [_post(row) for row in rows]

    async def get_request(self, scope: str, request_id: str, now: int) -> RequestRecord | None:
        if self.write:  # claim it: a concurrent twin waits for our commit
            sql = f"SELECT {_REQUEST_COLUMNS} FROM claim_request($1, $2, $3)"
        else:
            sql = (
                f"SELECT {_REQUEST_COLUMNS} FROM requests "
                "WHERE scope = $1 AND request_id = $2 AND expire_time > $3"
            )
        row = await self._run("fetchrow", sql, scope, request_id, now)
        return None if row is None else RequestRecord(row[0], row[1], row[2], row[3], row[4])

    async def put_request(self, record: RequestRecord) -> None:
        # An expired twin may linger until the next purge: take its place.
        status = await self._run(
            "execute",
            f"INSERT INTO requests ({_REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5) "
            "ON CONFLICT (scope, request_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, response = excluded.response, "
            "expire_time = excluded.expire_time WHERE requests.expire_time <= $6",
            record.scope,
            record.request_id,
            record.fingerprint,
            record.response,
            record.expire_time,
            time.time_ns() // 1000,
        )
        if status.endswith(" 0"):
            raise DuplicateKey("requests")
