"""The embedded default store: one SQLite file in WAL mode.

Statements run inline on the event loop's thread. That is deliberate: our
statements are primary-key or short index-range lookups that take a few
microseconds, and handing them to a thread costs more than running them
(measured with ``make bench``: GetMicropost at 0.85x a bare echo server's
throughput inline, 0.44-0.61x through a thread). What
keeps an inline statement from ever holding the loop past the caller's
deadline is SQLite's progress handler: every few hundred virtual-machine
steps it checks the call's budget and interrupts the statement once it is
spent; the transaction is then rolled back whole. Lock waits (another
process writing the same file) are bounded the same way by a busy timeout
derived from the budget.

Durability: ``normal`` (the default) is WAL with ``synchronous=NORMAL``: a
write that returned OK survives a crash of the server process (``kill -9``)
but the last transactions may be lost in a power cut or OS crash.
``full`` is ``synchronous=FULL``: each commit is fsynced before the reply, so
it also survives a power cut, at a cost in write throughput.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Sequence
from types import TracebackType

from .. import deadlines
from ..domain import DeadlineExceeded, Micropost, StoreFailed, Unavailable, User
from .base import DuplicateKey, RequestRecord, Transaction
from .rows import (
    POST_COLUMNS,
    REQUEST_COLUMNS,
    first_id_below,
    post_from_row,
    post_values,
    update_values,
)

log = logging.getLogger("microposts.store")

# Each entry upgrades the schema by one version (PRAGMA user_version).
MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        username     TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        create_time  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE microposts (
        id               TEXT PRIMARY KEY,
        username         TEXT NOT NULL REFERENCES users (username),
        text             TEXT NOT NULL,
        referenced_users TEXT NOT NULL,
        create_time      INTEGER NOT NULL,
        update_time      INTEGER NOT NULL,
        version          INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX microposts_by_user ON microposts (username, id);
    CREATE TABLE requests (
        scope       TEXT NOT NULL,
        request_id  TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        response    TEXT NOT NULL,
        expire_time INTEGER NOT NULL,
        PRIMARY KEY (scope, request_id)
    ) WITHOUT ROWID;
    CREATE INDEX requests_by_expiry ON requests (expire_time);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
]

PROGRESS_STEPS = 500  # VM instructions between deadline checks (~10-50 us)
DEFAULT_BUSY_MS = 5000  # lock wait outside any call (start-up, maintenance)


# Failures that outlast any retry: the disk is full, failing, read-only or the
# file is damaged. Told apart from a busy lock, which passes.
_LASTING = frozenset(
    (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CORRUPT)
)


def _post(row: tuple[str, str, str, str, int, int, int]) -> Micropost:
    return post_from_row(row, row[2])


def _path_of(url: str) -> str:
    rest = url[len("sqlite://") :]
    if rest in (":memory:", "/:memory:"):
        return ":memory:"
    # sqlite:///relative.db -> "relative.db"; sqlite:////abs.db -> "/abs.db"
    return rest[1:] if rest.startswith("/") else rest


class SqliteStore:
    """``base.Store`` on one SQLite connection used from the event loop thread."""

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self.conn = conn
        self.path = path
        self._deadline: float | None = None
        self._busy_ms = DEFAULT_BUSY_MS
        self._key: bytes | None = None
        self.cursor = conn.cursor()
        conn.set_progress_handler(self._progress, PROGRESS_STEPS)

    @classmethod
    def open(cls, url: str, *, durability: str = "normal") -> SqliteStore:
        path = _path_of(url)
        if path != ":memory:":
            parent = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(parent):
                raise Unavailable(f"store directory {parent!r} does not exist")
        # Workers that start together on a new file race to switch it to WAL
        # and to migrate it; SQLite refuses the loser at once ("database is
        # locked", without calling the busy handler), so it tries again.
        give_up = time.monotonic() + DEFAULT_BUSY_MS / 1000
        while True:
            conn = None
            try:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA busy_timeout = {DEFAULT_BUSY_MS}")
                if path != ":memory:":
                    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                    if mode.lower() != "wal":
                        raise Unavailable(f"could not put {path!r} in WAL mode (got {mode})")
                sync = "FULL" if durability == "full" else "NORMAL"
                conn.execute(f"PRAGMA synchronous = {sync}")
                conn.execute("PRAGMA foreign_keys = ON")
                store = cls(conn, path)
                store._migrate()
                break
            except sqlite3.Error as exc:
                if conn is not None:
                    conn.close()
                if "locked" in str(exc) and time.monotonic() < give_up:
                    time.sleep(0.05)
                    continue
                raise Unavailable(f"cannot open SQLite store {path!r}: {exc}") from exc
        return store

    def _migrate(self) -> None:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")
                log.info("store migrated", extra={"fields": {"schema_version": number}})
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # The progress handler: a non-zero return interrupts the statement.
    def _progress(self) -> int:
        deadline = self._deadline
        return 1 if deadline is not None and time.monotonic() >= deadline else 0

    def read(self) -> _SqliteTx:
        return _SqliteTx(self, False)

    def write(self) -> _SqliteTx:
        return _SqliteTx(self, True)

    async def page_token_key(self) -> bytes:
        if self._key is None:
            async with self.write() as tx:
                self._key = tx.secret("page_token_key")
        return self._key

    async def ping(self) -> None:
        try:
            self.conn.execute("SELECT 1 FROM users LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise Unavailable(f"store unreachable: {exc}") from exc

    async def purge_requests(self, now: int) -> int:
        async with self.write() as tx:
            return await tx.purge_requests(now)

    async def check_writes(self) -> None:
        async with self.write() as tx:
            tx.cur.execute(
                "INSERT OR REPLACE INTO settings (key, value) VALUES ('write_check', ?)",
                (str(time.time_ns()),),
            )

    async def close(self) -> None:
        self.conn.close()


class _SqliteTx(Transaction):
    """``base.Transaction`` on SQLite: a write is one transaction, a read is not.

    A write runs in ``BEGIN IMMEDIATE`` … ``COMMIT`` (all or nothing); a read
    sends no ``BEGIN``, so each of its statements is its own implicit read
    transaction (``base.Store.read`` says what holds). Also its own async
    context manager (no generator cost).
    """

    __slots__ = ("budget", "conn", "cur", "store", "write")

    def __init__(self, store: SqliteStore, write: bool) -> None:
        self.store = store
        self.conn = store.conn
        self.cur = store.cursor  # reused: a new cursor per statement costs more
        self.write = write
        self.budget = deadlines.CURRENT.get()

    async def __aenter__(self) -> _SqliteTx:
        budget = self.budget
        store = self.store
        if budget is not None:
            if budget.expired():
                raise budget.exceeded("queue")
            store._deadline = budget.deadline
            budget.enter_store()
        if self.write:
            if budget is not None:
                # Lock waits must end by the deadline. Re-set the timeout only
                # when it would outlast the time left, or is far below it
                # (a PRAGMA on every write would cost more than the write).
                busy = max(1, int((budget.deadline - time.monotonic()) * 1000))
                if busy < store._busy_ms or busy > 2 * store._busy_ms:
                    self.conn.execute(f"PRAGMA busy_timeout = {busy}")
                    store._busy_ms = busy
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                store._deadline = None
                if budget is not None:
                    budget.leave_store(failed=True)
                raise self._translate(exc) from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self.store
        budget = self.budget
        try:
            if self.write:
                if exc_type is None:
                    try:
                        self.conn.execute("COMMIT")
                    except sqlite3.Error as commit_exc:
                        self._rollback()
                        raise self._translate(commit_exc) from commit_exc
                else:
                    self._rollback()
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
        finally:
            store._deadline = None
            if budget is not None:
                budget.leave_store(failed=exc_type is not None)

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            self.store._deadline = None  # a rollback must never be interrupted
            self.conn.execute("ROLLBACK")

    def _translate(self, exc: sqlite3.Error) -> Exception:
        """Maps a driver error to a domain error; unknown ones pass through (INTERNAL)."""
        text = str(exc).lower()
        budget = self.budget
        if "interrupted" in text or ("locked" in text and budget is not None and budget.expired()):
            if budget is not None:
                return budget.exceeded("store")
            return DeadlineExceeded("store work interrupted", "store")
        if "locked" in text or "busy" in text:
            return Unavailable("store is busy (locked by another writer)", "the store is busy")
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code
        if code in _LASTING:
            full = code == sqlite3.SQLITE_FULL
            return StoreFailed(f"the store cannot write: {exc}", full=full)
        if isinstance(exc, sqlite3.OperationalError) and "unable to open" in text:
            return Unavailable(f"store unavailable: {exc}")
        return exc

    # -- reads and writes --------------------------------------------------

    def secret(self, key: str) -> bytes:
        row = self.cur.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        if row is None:
            value = secrets.token_hex(32)
            self.cur.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (key, value))
            return bytes.fromhex(value)
        return bytes.fromhex(row[0])

    async def get_user(self, username: str) -> User | None:
        row = self.cur.execute(
            "SELECT username, display_name, create_time FROM users WHERE username = ?",
            (username,),
        ).fetchone()
        return None if row is None else User(*row)

    async def insert_user(self, user: User) -> None:
        try:
            self.cur.execute(
                "INSERT INTO users (username, display_name, create_time) VALUES (?, ?, ?)",
                (user.username, user.display_name, user.create_time),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey("users") from exc

    async def list_users(self, after: str | None, limit: int) -> list[User]:
        rows = self.cur.execute(
            "SELECT username, display_name, create_time FROM users "
            "WHERE username > ? ORDER BY username LIMIT ?",
            (after or "", limit),
        ).fetchall()
        return [User(*row) for row in rows]

    async def existing_usernames(self, usernames: Sequence[str]) -> set[str]:
        if not usernames:
            return set()
        marks = ",".join("?" * len(usernames))
        rows = self.cur.execute(
            f"SELECT username FROM users WHERE username IN ({marks})", tuple(usernames)
        ).fetchall()
        return {row[0] for row in rows}

    async def get_micropost(
        self, username: str, post_id: str, *, for_update: bool = False
    ) -> Micropost | None:
        row = self.cur.execute(
            f"SELECT {POST_COLUMNS} FROM microposts WHERE id = ? AND username = ?",
            (post_id, username),
        ).fetchone()
        return None if row is None else _post(row)

    async def get_microposts(self, post_ids: Sequence[str]) -> dict[str, Micropost]:
        marks = ",".join("?" * len(post_ids))
        rows = self.cur.execute(
            f"SELECT {POST_COLUMNS} FROM microposts WHERE id IN ({marks})", tuple(post_ids)
        ).fetchall()
        return {row[1]: _post(row) for row in rows}

    async def insert_micropost(self, post: Micropost) -> None:
        self.cur.execute(
            f"INSERT INTO microposts ({POST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
            post_values(post, post.text),
        )

    async def update_micropost(self, post: Micropost) -> None:
        self.cur.execute(
            "UPDATE microposts SET text = ?, referenced_users = ?, update_time = ?, version = ? "
            "WHERE id = ? AND username = ?",
            update_values(post, post.text),
        )

    async def delete_micropost(self, username: str, post_id: str) -> None:
        self.cur.execute(
            "DELETE FROM microposts WHERE id = ? AND username = ?", (post_id, username)
        )

    async def list_microposts(
        self, username: str | None, before: str | None, limit: int
    ) -> list[Micropost]:
        below = first_id_below(before)
        if username is None:
            rows = self.cur.execute(
                f"SELECT {POST_COLUMNS} FROM microposts WHERE id < ? ORDER BY id DESC LIMIT ?",
                (below, limit),
            ).fetchall()
        else:
            rows = self.cur.execute(
                f"SELECT {POST_COLUMNS} FROM microposts WHERE username = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?",
                (username, below, limit),
            ).fetchall()
        return [_post(row) for row in rows]

    async def get_request(self, scope: str, request_id: str, now: int) -> RequestRecord | None:
        row = self.cur.execute(
            f"SELECT {REQUEST_COLUMNS} FROM requests "
            "WHERE scope = ? AND request_id = ? AND expire_time > ?",
            (scope, request_id, now),
        ).fetchone()
        return None if row is None else RequestRecord(*row)

    async def put_request(self, record: RequestRecord) -> None:
        # An expired twin may linger until the next purge: take its place.
        cursor = self.cur.execute(
            f"INSERT INTO requests ({REQUEST_COLUMNS}) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, request_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, response = excluded.response, "
            "expire_time = excluded.expire_time WHERE requests.expire_time <= ?",
            (
                record.scope,
                record.request_id,
                record.fingerprint,
                record.response,
                record.expire_time,
                time.time_ns() // 1000,
            ),
        )
        if cursor.rowcount == 0:
            raise DuplicateKey("requests")

    async def purge_requests(self, now: int) -> int:
        """Deletes the idempotency records expired by ``now``; returns how many."""
        return self.cur.execute("DELETE FROM requests WHERE expire_time <= ?", (now,)).rowcount
