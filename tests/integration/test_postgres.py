"""The PostgreSQL store on the machine's real server: what SQLite cannot show.

Concurrent replicas migrating at once, concurrent twins of one idempotent
create, deadlines that stop statements and lock waits on the server,
cancelled tasks whose statement is cancelled and transaction rolled back,
and a database that goes away and comes back under a running server.
Each test has a schema of its own (tests/pg.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from microposts_server import deadlines
from microposts_server.domain import DeadlineExceeded, Micropost, Unavailable, User
from microposts_server.page_tokens import PageTokens
from microposts_server.service import Service
from microposts_server.store import DuplicateKey, RequestRecord, open_store
from microposts_server.store.postgres import PostgresStore
from tests import pg
from tests.serverproc import ServerProcess

T = TypeVar("T")


@pytest.fixture
def url() -> Iterator[str]:
    with pg.session_database().schema() as schema_url:
        yield schema_url


def run(coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await coro()

    return asyncio.run(main())


async def opened(url: str) -> PostgresStore:
    store = await open_store(url, pool_size=4)
    assert isinstance(store, PostgresStore)
    return store


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
            async with stores[0].pool.acquire() as con:
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
                    svc_a.create_user(f"twin{i}", "Twin", f"rid-{i}"),
                    svc_b.create_user(f"twin{i}", "Twin", f"rid-{i}"),
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


async def _active_sleeps(store: PostgresStore) -> int:
    async with store.pool.acquire() as con:
        n: int = await con.fetchval(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active' AND pid <> pg_backend_pid()"
            " AND datname = current_database()"
        )
        return n


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
            assert await _active_sleeps(store) == 0
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
                if await _active_sleeps(store):
                    break
            assert await _active_sleeps(store) == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await _active_sleeps(store) == 0
            assert not await _user_exists(store, "ghost")
            # Every connection went back to the pool, none left in a transaction.
            assert store.pool.get_size() == store.pool.get_idle_size()
        finally:
            await store.close()

    run(go)


def test_unreachable_database_is_unavailable() -> None:
    closed = pg.url_for("test", port=_free_port())
    with pytest.raises(Unavailable):
        run(lambda: open_store(closed))


def _free_port() -> int:
    import socket

    with socket.socket() as s:  # nothing listens on it once closed: connections are refused
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TcpProxy:
    """A tiny TCP proxy (its own thread and event loop) from 127.0.0.1:port to PostgreSQL.

    ``cut()`` drops every open connection and stops listening, so connects
    are refused: to the server behind it, the database is down. ``restore()``
    listens again on the same port. It exists so that a test can take "the
    database" away without stopping the machine's real PostgreSQL, which
    other test runs share.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.Server | None = None
        self.conns: set[asyncio.StreamWriter] = set()

    def __enter__(self) -> TcpProxy:
        self.thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def _call(self, coro: Awaitable[Any]) -> Any:
        async def wrapped() -> Any:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(10)

    def restore(self) -> None:
        async def listen() -> None:
            self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
            self.port = self.server.sockets[0].getsockname()[1]

        self._call(listen())

    def cut(self) -> None:
        async def close() -> None:
            if self.server is not None:
                self.server.close()
                self.server = None
            for writer in self.conns:
                writer.transport.abort()
            self.conns.clear()

        self._call(close())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.conns |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.conns -= {writer, up_writer}


def _health(channel: grpc.Channel) -> Any:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status


def _wait_health(channel: grpc.Channel, want: Any, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while (got := _health(channel)) != want:
        assert time.monotonic() < deadline, f"health stayed {got}, wanted {want}"
        time.sleep(0.1)


def test_database_outage_flips_health_and_calls_are_unavailable_then_recover() -> None:
    """The database goes away under a running server and comes back.

    We do not stop the machine's PostgreSQL (other test runs on this machine
    and CI share it): the server reaches it through ``TcpProxy``, and cutting
    the proxy is, to the server, the database going down (connections reset,
    new ones refused).
    """
    host, port = "127.0.0.1", int(pg.ADMIN_URL.rsplit(":", 1)[1].split("/")[0])
    with (
        TcpProxy(host, port) as proxy,
        pg.session_database().schema(port=proxy.port) as url,
        ServerProcess(url, "--health-interval", "0.2") as srv,
        grpc.insecure_channel(srv.address) as channel,
    ):
        users = ugrpc.UserServiceStub(channel)

        def create(name: str) -> Any:
            user = rpb.User(username=name, display_name=name)
            return users.CreateUser(upb.CreateUserRequest(user=user, request_id=name), timeout=5)

        def get(name: str) -> Any:
            return users.GetUser(upb.GetUserRequest(name=f"users/{name}"), timeout=5)

        _wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
        create("before")

        proxy.cut()
        _wait_health(channel, health_pb2.HealthCheckResponse.NOT_SERVING)
        for call in (lambda: get("before"), lambda: create("during")):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE

        proxy.restore()
        _wait_health(channel, health_pb2.HealthCheckResponse.SERVING)
        assert get("before").username == "before"
        create("after")
        assert get("after").username == "after"

        assert srv.logs(msg="store unreachable") and srv.logs(msg="store reachable again")
        assert not srv.logs(code="INTERNAL")
        assert {r["code"] for r in srv.logs(msg="call")} == {"OK", "UNAVAILABLE"}
