"""Deadlines all the way down, on the server (docs/design.md, "Deadlines, end to end").

These tests run the real server in-process (``build_app``) on a real store
and call it over a real socket with grpc.aio. The only thing injected is
slowness inside a real write transaction, right after the post's INSERT:
either a real slow statement (a recursive CTE on SQLite, ``pg_sleep`` on
PostgreSQL) that the deadline must interrupt, or an ``asyncio.sleep`` that
the handler's cancellation must cut. A store cannot be made slow on demand
otherwise, so this is the one place we subclass the adapter's transaction.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from microposts.v1 import micropost_service_pb2 as mpb
from microposts.v1 import micropost_service_pb2_grpc as mgrpc
from microposts.v1 import resources_pb2 as rpb
from microposts.v1 import user_service_pb2 as upb
from microposts.v1 import user_service_pb2_grpc as ugrpc
from microposts_server.app import App, build_app
from microposts_server.config import Settings
from microposts_server.store import Store, open_store

HEAVY_SQLITE = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) "
    "SELECT count(*) FROM n"
)


@dataclass
class Injected:
    """What the injected slowness saw."""

    mode: str = "off"  # "off", "statement" or "sleep"
    events: list[str] = field(default_factory=list)
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    store_calls: int = 0


async def _slow_statement(tx: Any) -> None:
    if hasattr(tx, "conn"):  # SQLite: runs inline until the progress handler stops it
        tx.conn.execute(HEAVY_SQLITE).fetchall()
    else:  # PostgreSQL
        await tx.execute("SELECT pg_sleep(60)")


def make_slow(store: Store, injected: Injected) -> Store:
    """Makes ``store``'s write transactions slow after INSERTing a micropost."""
    base: type[Any] = type(store.write())
    inner_read, inner_write = store.read, store.write

    class SlowTx(base):  # type: ignore[misc]
        async def insert_micropost(self, post: Any) -> None:
            await super().insert_micropost(post)
            if injected.mode == "off":
                return
            injected.entered.set()
            try:
                if injected.mode == "sleep":
                    await asyncio.sleep(60)
                else:
                    await _slow_statement(self)
            except BaseException as exc:
                injected.events.append(f"{type(exc).__name__}: {exc}")
                raise
            injected.events.append("finished")  # pragma: no cover - must not happen

    def read() -> Any:
        injected.store_calls += 1
        return inner_read()

    def write() -> Any:
        injected.store_calls += 1
        return SlowTx(store, True)

    store.read = read  # type: ignore[method-assign]
    store.write = write  # type: ignore[method-assign]
    del inner_write
    return store


class Records(io.StringIO):
    """The per-call log lines the server writes, parsed."""

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.getvalue().splitlines()]


@dataclass
class Running:
    app: App
    injected: Injected
    records: Records
    channel: grpc.aio.Channel

    @property
    def posts(self) -> mgrpc.MicropostServiceStub:
        return mgrpc.MicropostServiceStub(self.channel)

    @property
    def users(self) -> ugrpc.UserServiceStub:
        return ugrpc.UserServiceStub(self.channel)

    async def count_posts(self, parent: str) -> int:
        resp = await self.posts.ListMicroposts(mpb.ListMicropostsRequest(parent=parent), timeout=10)
        return len(resp.microposts)


@asynccontextmanager
async def running(url: str, **settings: Any) -> AsyncIterator[Running]:
    injected = Injected()
    store = make_slow(await open_store(url), injected)
    records = Records()
    app = await build_app(
        Settings(address="127.0.0.1:0", store=url, **settings),
        store=store,
        call_log_stream=records,
    )
    await app.start()
    try:
        async with grpc.aio.insecure_channel(app.address) as channel:
            run = Running(app, injected, records, channel)
            await run.users.CreateUser(
                upb.CreateUserRequest(user=rpb.User(username="slowpoke")), timeout=10
            )
            yield run
    finally:
        await app.stop(0)


def create_request() -> mpb.CreateMicropostRequest:
    return mpb.CreateMicropostRequest(
        parent="users/slowpoke", micropost=rpb.Micropost(text="never half-written")
    )


def error_info(err: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info):
            return info
    raise AssertionError("no ErrorInfo")


def run(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


def test_deadline_interrupts_the_store_statement_and_rolls_back(store_url: str) -> None:
    async def body() -> None:
        async with running(store_url) as r:
            r.injected.mode = "statement"
            start = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await r.posts.CreateMicropost(create_request(), timeout=0.5)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - start < 5
            for _ in range(100):  # the server side finishes on its own schedule
                if r.injected.events and r.records.calls[-1]["method"].endswith("CreateMicropost"):
                    break
                await asyncio.sleep(0.05)
            # The slow statement itself was stopped, not left to run on.
            assert len(r.injected.events) == 1
            event = r.injected.events[0]
            # SQLite's progress handler interrupts the statement; on PostgreSQL
            # statement_timeout (or the driver's timeout, which sends a cancel)
            # stops it, and the adapter reports it as the deadline exceeded.
            assert "interrupted" in event or "DeadlineExceeded: deadline exceeded in store" in event
            assert r.records.calls[-1]["code"] in {"DEADLINE_EXCEEDED", "CANCELLED"}
            assert await r.count_posts("users/slowpoke") == 0  # rolled back whole
            r.injected.mode = "off"
            await r.posts.CreateMicropost(create_request(), timeout=10)
            assert await r.count_posts("users/slowpoke") == 1

    run(body)
    if store_url.startswith("postgresql"):
        assert_no_pg_sleep_left(store_url)


def assert_no_pg_sleep_left(url: str) -> None:
    """No orphaned statement keeps running in PostgreSQL for a caller who left.

    Only this test session's database counts (other runs may share the
    cluster), and the server gets a moment to finish cancelling.
    """
    import asyncpg

    async def left_running() -> list[Any]:
        con = await asyncpg.connect(url)
        try:
            for _ in range(50):
                rows = list(
                    await con.fetch(
                        "SELECT pid, query FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                        "AND query LIKE 'SELECT pg_sleep%' AND state = 'active'"
                    )
                )
                if not rows:
                    return rows
                await asyncio.sleep(0.05)
            return rows
        finally:
            await con.close()

    assert asyncio.run(left_running()) == []


def test_server_cap_reports_where_the_time_went(store_url: str) -> None:
    async def body() -> None:
        async with running(store_url, max_deadline=0.4) as r:
            r.injected.mode = "statement"
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await r.posts.CreateMicropost(create_request(), timeout=10)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            details = err.value.details() or ""
            assert "store" in details
            assert "ms" in details
            # SQLite's progress handler stops the statement itself ("store");
            # on PostgreSQL the server's cap may cancel it first
            # ("store (server cap)"): either way the time went to the store.
            assert error_info(err.value).metadata["phase"].startswith("store")
            assert await r.count_posts("users/slowpoke") == 0

    run(body)


def test_no_deadline_request_is_bounded_by_the_cap(store_url: str) -> None:
    async def body() -> None:
        async with running(store_url, max_deadline=0.4) as r:
            r.injected.mode = "sleep"
            start = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await r.posts.CreateMicropost(create_request())  # no deadline at all
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert 0.3 < time.monotonic() - start < 5
            assert error_info(err.value).metadata["phase"] == "store (server cap)"
            assert r.injected.events == ["CancelledError: "]  # the handler was stopped
            line = r.records.calls[-1]
            assert line["deadline_ms"] is None
            assert line["code"] == "DEADLINE_EXCEEDED"
            assert await r.count_posts("users/slowpoke") == 0

    run(body)


def test_client_cancel_stops_the_handler(store_url: str) -> None:
    async def body() -> None:
        async with running(store_url) as r:
            r.injected.mode = "sleep"
            call = r.posts.CreateMicropost(create_request(), timeout=30)
            await asyncio.wait_for(r.injected.entered.wait(), 10)
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            for _ in range(100):
                if r.injected.events:
                    break
                await asyncio.sleep(0.05)
            assert r.injected.events == ["CancelledError: "]
            for _ in range(100):
                if r.records.calls[-1]["method"].endswith("CreateMicropost"):
                    break
                await asyncio.sleep(0.05)
            assert r.records.calls[-1]["code"] == "CANCELLED"
            assert await r.count_posts("users/slowpoke") == 0

    run(body)


def test_spent_deadline_never_reaches_the_store(store_url: str) -> None:
    async def body() -> None:
        async with running(store_url, min_deadline={"*": 0.005, "CreateMicropost": 2.0}) as r:
            before = r.injected.store_calls
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await r.posts.CreateMicropost(create_request(), timeout=1.0)
            assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "before any work" in (err.value.details() or "")
            assert error_info(err.value).metadata["phase"] == "admission"
            assert r.injected.store_calls == before  # no transaction was even opened
            assert r.app.metrics.rejected["CreateMicropost"] == 1
            line = r.records.calls[-1]
            assert (line["code"], line["store_calls"]) == ("DEADLINE_EXCEEDED", 0)
            # Methods with the default minimum still work.
            assert await r.count_posts("users/slowpoke") == 0
            assert r.injected.store_calls == before + 1

    run(body)


def test_tiny_deadlines_never_write_late(store_url: str) -> None:
    """Calls racing their own deadline: whatever the outcome, no write after the deadline."""

    async def body() -> None:
        async with running(store_url) as r:
            outcomes: dict[str, int] = {}
            for i in range(60):
                timeout = 0.0005 + (i % 6) * 0.0005
                req = mpb.CreateMicropostRequest(
                    parent="users/slowpoke", micropost=rpb.Micropost(text=f"t{i}")
                )
                try:
                    await r.posts.CreateMicropost(req, timeout=timeout)
                    outcomes["OK"] = outcomes.get("OK", 0) + 1
                except grpc.aio.AioRpcError as err:
                    outcomes[err.code().name] = outcomes.get(err.code().name, 0) + 1
            assert set(outcomes) <= {"OK", "DEADLINE_EXCEEDED"}
            await asyncio.sleep(0.2)
            for line in r.records.calls:
                if line["code"] == "DEADLINE_EXCEEDED" and line["deadline_ms"] is not None:
                    # rejected before work, or rolled back: never committed late
                    assert line["left_ms"] <= 0 or line["store_calls"] == 0
            committed = sum(
                1
                for c in r.records.calls
                if c["code"] == "OK" and c["method"].endswith("CreateMicropost")
            )
            assert await r.count_posts("users/slowpoke") == committed

    run(body)
