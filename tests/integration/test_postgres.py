"""The PostgreSQL store on the machine's real server: what SQLite cannot show.

Concurrent replicas migrating at once, concurrent twins of one idempotent
create, deadlines that stop statements and lock waits on the server,
cancelled tasks whose statement is cancelled and transaction rolled back.
Each test has a schema of its own (tests/pg.py). The tests see the store
through its public surface only; what they check in the database itself
they read on asyncpg connections of their own. (A database outage under a
running server process: tests/e2e/test_postgres_outage.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, TypeVar

import asyncpg
import pytest

from microposts_server import deadlines
from microposts_server.domain import UNRESTRICTED, DeadlineExceeded, Micropost, Unavailable, User
from microposts_server.page_tokens import PageTokens
from microposts_server.service import Service
from microposts_server.store import DuplicateKey, RequestRecord, open_store
from microposts_server.store.postgres import PostgresStore
from tests import pg

T = TypeVar("T")
POOL_SIZE = 4


@pytest.fixture
def url() -> Iterator[str]:
    with pg.session_database().schema() as schema_url:
        yield schema_url


def run(coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro()

    return asyncio.run(main())


async def opened(url: str) -> PostgresStore:
    store = await open_store(url, pool_size=POOL_SIZE)
    assert isinstance(store, PostgresStore)
    return store


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Any]:
    """A connection of the test's own to the store's database (and schema)."""
    con = await asyncpg.connect(url, timeout=10)
    try:
        yield con
    finally:
        await con.close()


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[deadlines.Budget]:
    now = time.monotonic()
    b = deadlines.Budget(now, now + seconds, seconds)
    token = deadlines.CURRENT.set(b)
    try:
        yield b
    finally:
        deadlines.CURRENT.reset(token)


def test_replicas_starting_together_migrate_once_and_share_the_token_key(url: str) -> None:
    async def go() -> None:
        stores = await asyncio.gather(*(opened(url) for _ in range(4)))
        try:
            keys = {await s.page_token_key() for s in stores}
            assert len(keys) == 1
            async with connected(url) as con:
                assert await con.fetchval("SELECT count(*) FROM schema_migrations") == 1
        finally:
            for s in stores:
                await s.close()
        again = await opened(url)  # a restart migrates nothing and keeps the key
        assert await again.page_token_key() in keys
        await again.close()

    run(go)


def test_concurrent_twins_of_an_idempotent_create_return_one_user(url: str) -> None:
    async def go() -> None:
        a, b = await opened(url), await opened(url)
        try:
            key = await a.page_token_key()
            svc_a, svc_b = Service(a, PageTokens(key)), Service(b, PageTokens(key))
            for i in range(5):
                first, second = await asyncio.gather(
                    svc_a.create_user(f"twin{i}", "Twin", f"rid-{i}", caller=UNRESTRICTED),
                    svc_b.create_user(f"twin{i}", "Twin", f"rid-{i}", caller=UNRESTRICTED),
                )
                assert first == second
        finally:
            await a.close()
            await b.close()

    run(go)


def test_unique_keys_and_request_records(url: str) -> None:
    async def go() -> None:
        store = await opened(url)
        try:
            async with store.write() as tx:
                await tx.insert_user(User("alice", "Alice \x00 nul", 1))
            with pytest.raises(DuplicateKey) as dup:
                async with store.write() as tx:
                    await tx.insert_user(User("alice", "again", 2))
            assert dup.value.table == "users"
            now = time.time_ns() // 1000
            old = RequestRecord("s", "r", "f1", "resp1", now - 1)  # already expired
            async with store.write() as tx:
                await tx.put_request(old)
            fresh = RequestRecord("s", "r", "f2", "resp2", now + 60_000_000)
            async with store.write() as tx:
                assert await tx.get_request("s", "r", now) is None
                await tx.put_request(fresh)  # takes the expired one's place
            with pytest.raises(DuplicateKey) as dup:
                async with store.write() as tx:
                    await tx.put_request(RequestRecord("s", "r", "f3", "x", now + 1))
            assert dup.value.table == "requests"
            async with store.read() as tx:
                assert await tx.get_request("s", "r", now) == fresh
                assert (await tx.get_user("alice")) == User("alice", "Alice \x00 nul", 1)
            assert await store.purge_requests(now + 120_000_000) == 1
        finally:
            await store.close()

    run(go)


async def _sleep_in_write(store: PostgresStore, seconds: float) -> None:
    async with store.write() as tx:
        await tx.insert_user(User("ghost", "never committed", 1))
        await tx.execute(f"SELECT pg_sleep({seconds})")


async def _sessions(url: str, where: str) -> int:
    """How many other sessions on the store's database match ``where`` (pg_stat_activity)."""
    async with connected(url) as con:
        n: int = await con.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            f"WHERE datname = current_database() AND pid <> pg_backend_pid() AND {where}"
        )
        return n


async def _active_sleeps(url: str) -> int:
    return await _sessions(url, "query LIKE 'SELECT pg_sleep%' AND state = 'active'")


async def _every_connection_at_once(store: PostgresStore) -> None:
    """Holds POOL_SIZE units of work open together: none of the pool's connections leaked."""
    together = asyncio.Barrier(POOL_SIZE)

    async def hold() -> None:
        async with store.read() as tx:
            await tx.get_user("ghost")
            async with asyncio.timeout(5):  # a leaked connection: the last one never comes
                await together.wait()

    await asyncio.gather(*(hold() for _ in range(POOL_SIZE)))


async def _user_exists(store: PostgresStore, username: str) -> bool:
    async with store.read() as tx:
        return await tx.get_user(username) is not None


def test_deadline_stops_the_statement_and_rolls_back_the_write(url: str) -> None:
    async def go() -> None:
        store = await opened(url)
        try:
            start = time.monotonic()
            with budget(0.2) as b, pytest.raises(DeadlineExceeded) as exc:
                await _sleep_in_write(store, 5)
            assert time.monotonic() - start < 1.5
            assert exc.value.phase == "store"
            assert b.store_calls == 1 and b.store_seconds > 0.15
            assert not await _user_exists(store, "ghost")
            assert await _active_sleeps(url) == 0
        finally:
            await store.close()

    run(go)


def test_lock_waits_are_bounded_by_the_deadline(url: str) -> None:
    async def go() -> None:
        store = await opened(url)
        try:
            async with store.write() as tx:
                await tx.insert_user(User("alice", "A", 1))
                await tx.insert_micropost(Micropost("alice", "p1", "hi", (), 1, 1))
            async with store.write() as holder:
                await holder.get_micropost("alice", "p1", for_update=True)
                start = time.monotonic()
                with budget(0.3), pytest.raises(DeadlineExceeded):
                    async with store.write() as tx:
                        await tx.get_micropost("alice", "p1", for_update=True)
                assert 0.25 < time.monotonic() - start < 1.5
        finally:
            await store.close()

    run(go)


def test_a_cancelled_task_cancels_its_statement_and_rolls_back(url: str) -> None:
    async def go() -> None:
        store = await opened(url)
        try:
            task = asyncio.ensure_future(_sleep_in_write(store, 30))
            for _ in range(100):  # until the sleep runs on the server
                await asyncio.sleep(0.05)
                if await _active_sleeps(url):
                    break
            assert await _active_sleeps(url) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await _active_sleeps(url) == 0
            assert not await _user_exists(store, "ghost")
            # Every connection went back to the pool, none left in a transaction.
            assert await _sessions(url, "state LIKE 'idle in transaction%'") == 0
            await _every_connection_at_once(store)
        finally:
            await store.close()

    run(go)


async def _kill_the_sleeper(url: str) -> None:
    """Waits for a store session running pg_sleep, then ends it as an operator would."""
    for _ in range(100):
        if await _active_sleeps(url):
            break
        await asyncio.sleep(0.02)
    async with connected(url) as con:
        await con.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query LIKE 'SELECT pg_sleep%' AND state = 'active'"
        )


def test_a_read_that_lost_its_connection_runs_again_once_a_write_does_not(url: str) -> None:
    async def sleep_in(unit: Any) -> str:
        async with unit as tx:
            status: str = await tx.execute("SELECT pg_sleep(0.5)")
            return status

    async def go() -> None:
        store = await opened(url)
        try:
            read, _ = await asyncio.gather(sleep_in(store.read()), _kill_the_sleeper(url))
            assert read == "SELECT 1"  # ran again, whole, on a fresh connection
            write, _ = await asyncio.gather(
                sleep_in(store.write()), _kill_the_sleeper(url), return_exceptions=True
            )
            # A write is never repeated behind the caller's back: it may have
            # been applied. The caller gets UNAVAILABLE and decides.
            assert isinstance(write, Unavailable)
            assert await _user_exists(store, "nobody") is False  # and the store still serves
        finally:
            await store.close()

    run(go)


def test_unreachable_database_is_unavailable() -> None:
    closed = pg.url_for("test", port=_free_port())
    with pytest.raises(Unavailable):
        run(lambda: open_store(closed))


def test_errors_show_the_store_url_without_its_password() -> None:
    secret = "s3cret-pw"
    port = _free_port()
    for url in (
        f"postgresql://microposts:{secret}@127.0.0.1:{port}/test",
        f"postgresql://microposts@127.0.0.1:{port}/test?password={secret}&sslmode=disable",
    ):
        with pytest.raises(Unavailable) as err:
            run(functools.partial(open_store, url))
        assert "***" in str(err.value)
        assert secret not in str(err.value)


def _free_port() -> int:
    with socket.socket() as s:  # nothing listens on it once closed: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
