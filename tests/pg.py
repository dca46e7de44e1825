"""Throwaway PostgreSQL databases and schemas for tests, on 127.0.0.1:5432.

A test session creates one database of its own (``microposts_test_<pid>_<hex>``)
and each test a fresh schema in it; the store URL selects the schema with
``?search_path=<schema>`` (asyncpg sends unknown URL options as session
settings), so tables the server creates land there. A schema costs a few
milliseconds where a database costs hundreds; both are dropped afterwards.
Databases left behind by a session that was killed (its pid is gone) are
dropped by the next one.

``MICROPOSTS_TEST_PG`` overrides the server to use (an admin URL, default
``postgresql://postgres@127.0.0.1:5432/test``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

ADMIN_URL = os.environ.get("MICROPOSTS_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
PREFIX = "microposts_test_"


def url_for(database: str, schema: str | None = None, *, port: int | None = None) -> str:
    """The admin URL pointed at ``database`` (and ``schema``; another ``port``: a proxy)."""
    parts = urlsplit(ADMIN_URL)
    netloc = parts.netloc
    if port is not None:
        netloc = f"{netloc.rpartition(':')[0] if ':' in netloc else netloc}:{port}"
    query = f"search_path={schema}" if schema else ""
    return urlunsplit((parts.scheme, netloc, f"/{database}", query, ""))


def run(sql: str, *args: Any, database: str | None = None) -> Any:
    """Runs one statement as the admin (outside any transaction); returns its rows."""

    async def go() -> Any:
        url = ADMIN_URL if database is None else url_for(database)
        con = await asyncpg.connect(url, timeout=10)
        try:
            return await con.fetch(sql, *args, timeout=30)
        finally:
            await con.close()

    return asyncio.run(go())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def drop_orphans() -> None:
    """Drops test databases whose session (on this machine) has died."""
    for row in run("SELECT datname FROM pg_database WHERE datname LIKE $1", PREFIX + "%"):
        name = str(row[0])
        pid = name[len(PREFIX) :].partition("_")[0]
        if pid.isdigit() and not _alive(int(pid)):
            drop_database(name)


class Database:
    """A database for one test session; ``schema()`` gives each test its own."""

    def __init__(self) -> None:
        self.name = f"{PREFIX}{os.getpid()}_{secrets.token_hex(4)}"

    def create(self) -> Database:
        run(f'CREATE DATABASE "{self.name}"')
        return self

    def drop(self) -> None:
        drop_database(self.name)

    @property
    def url(self) -> str:
        """The database itself (its ``public`` schema)."""
        return url_for(self.name)

    @contextmanager
    def schema(self, *, port: int | None = None) -> Iterator[str]:
        """A fresh empty schema, dropped on exit; yields its store URL."""
        name = f"t_{secrets.token_hex(6)}"
        run(f"CREATE SCHEMA {name}", database=self.name)
        try:
            yield url_for(self.name, name, port=port)
        finally:
            run(f"DROP SCHEMA {name} CASCADE", database=self.name)


_session: Database | None = None


def session_database() -> Database:
    """This test session's database, created on first use (orphans dropped then)."""
    global _session
    if _session is None:
        drop_orphans()
        _session = Database().create()
    return _session


def drop_session_database() -> None:
    """Drops this session's database, if one was made (pytest_sessionfinish)."""
    global _session
    if _session is not None:
        database, _session = _session, None
        database.drop()


def drop_database(name: str) -> None:
    # WITH (FORCE): a killed server's sessions may linger a moment.
    run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def table_lock(url: str, table: str = "microposts") -> Iterator[None]:
    """Holds ``LOCK TABLE table`` in the schema at ``url`` until the block ends.

    A server's statements on that table wait (up to their deadline) in the
    meantime, with its event loop free: how a slow call looks from outside.
    """
    loop = asyncio.new_event_loop()
    con = loop.run_until_complete(asyncpg.connect(url, timeout=10))
    try:
        loop.run_until_complete(con.execute(f"BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        yield
        loop.run_until_complete(con.execute("ROLLBACK"))
    finally:
        loop.run_until_complete(con.close())
        loop.close()
