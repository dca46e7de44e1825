"""Request-id replay (AIP-155) over an in-memory store: one create per request_id."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from microposts_server import idempotency
from microposts_server.domain import InvalidArgument, Micropost, User
from microposts_server.idempotency import Idempotency
from microposts_server.store import DuplicateKey, RequestRecord, Transaction
from tests.unit.fakes import FakeClock, FakeStore

TTL = 60.0


@pytest.fixture
def requests(fake_store: FakeStore, fake_clock: FakeClock) -> Idempotency:
    return Idempotency(fake_store, TTL, fake_clock.us)


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(body)


class Maker:
    """A create that inserts a user named after how often it ran."""

    def __init__(self) -> None:
        self.runs = 0

    async def __call__(self, tx: Transaction, now: int) -> User:
        self.runs += 1
        user = User(f"user_{self.runs}", "", now)
        await tx.insert_user(user)
        return user


def test_a_repeated_request_id_replays_the_first_result(
    requests: Idempotency, fake_store: FakeStore
) -> None:
    async def body() -> None:
        make = Maker()
        first = await requests.create("CreateUser", "r1", "body", idempotency.USER, make)
        # Even once the resource has changed, a replay returns what the create returned.
        fake_store.tables.users[first.username] = first._replace(display_name="changed")
        again = await requests.create("CreateUser", "r1", "body", idempotency.USER, make)
        assert (again, make.runs) == (first, 1)
        with pytest.raises(InvalidArgument) as err:
            await requests.create("CreateUser", "r1", "other body", idempotency.USER, make)
        assert [v.field for v in err.value.violations] == ["request_id"]
        other_scope = await requests.create(
            "CreateMicropost x", "r1", "body", idempotency.USER, make
        )
        assert (other_scope.username, make.runs) == ("user_2", 2)

    run(body())


def test_without_a_request_id_nothing_is_remembered(
    requests: Idempotency, fake_store: FakeStore
) -> None:
    async def body() -> None:
        make = Maker()
        for _ in range(2):
            await requests.create("CreateUser", "", "body", idempotency.USER, make)
        assert make.runs == 2
        assert fake_store.tables.requests == {}

    run(body())


def test_a_failed_create_is_rolled_back_and_not_remembered(
    requests: Idempotency, fake_store: FakeStore
) -> None:
    async def body() -> None:
        async def fail_after_writing(tx: Transaction, now: int) -> User:
            await tx.insert_user(User("half", "", now))
            raise RuntimeError("the create failed after its first write")

        with pytest.raises(RuntimeError):
            await requests.create("CreateUser", "r1", "body", idempotency.USER, fail_after_writing)
        assert (fake_store.tables.users, fake_store.tables.requests) == ({}, {})
        make = Maker()
        user = await requests.create("CreateUser", "r1", "body", idempotency.USER, make)
        assert (user.username, make.runs) == ("user_1", 1)  # retried, not replayed

    run(body())


def test_records_expire_after_the_ttl(
    requests: Idempotency, fake_store: FakeStore, fake_clock: FakeClock
) -> None:
    async def body() -> None:
        make = Maker()
        first = await requests.create("CreateUser", "r1", "body", idempotency.USER, make)
        (record,) = fake_store.tables.requests.values()
        assert record.expire_time == fake_clock.us() + int(TTL * 1_000_000)
        fake_clock.advance(TTL)
        second = await requests.create("CreateUser", "r1", "body", idempotency.USER, make)
        assert (first.username, second.username) == ("user_1", "user_2")
        # The expired record was replaced: the new one replays now.
        assert await requests.create("CreateUser", "r1", "body", idempotency.USER, make) == second
        assert await fake_store.purge_requests(fake_clock.us() + int(TTL * 1_000_000)) == 1

    run(body())


def test_a_twin_that_commits_first_is_replayed(
    requests: Idempotency, fake_store: FakeStore, fake_clock: FakeClock
) -> None:
    """Another replica commits the same request while ours runs: ours rolls back, replays."""
    twin = User("twin", "", 1)
    record = RequestRecord(
        "CreateUser", "r1", "body", idempotency.USER.encode(twin), fake_clock.us() + 10**9
    )

    async def body() -> None:
        make = Maker()

        async def raced(tx: Transaction, now: int) -> User:
            if make.runs == 0:
                # The twin commits between our read of the record and our insert of
                # it: later transactions see its record, and in ours its key is taken.
                fake_store.tables.requests[("CreateUser", "r1")] = record
                await tx.put_request(record)
            return await make(tx, now)

        user = await requests.create("CreateUser", "r1", "body", idempotency.USER, raced)
        assert (user, make.runs) == (twin, 1)
        assert "user_1" not in fake_store.tables.users  # our attempt was rolled back

    run(body())


def test_a_clash_on_another_table_is_not_retried(requests: Idempotency) -> None:
    async def body() -> None:
        async def taken(tx: Transaction, now: int) -> User:
            raise DuplicateKey("users")

        with pytest.raises(DuplicateKey) as err:
            await requests.create("CreateUser", "r1", "body", idempotency.USER, taken)
        assert err.value.table == "users"

    run(body())


@pytest.mark.parametrize(
    "resource",
    [
        User("alice", 'Ada 🦜 "quoted" \\', 1_700_000_000_000_001),
        Micropost("alice", "01hf", "hi @bob\n\x00 é", ("bob", "carol"), 5, 9, 3),
        Micropost("alice", "01hf", "x", (), 5, 5),
    ],
)
def test_responses_survive_the_round_trip(resource: User | Micropost) -> None:
    codec: Any = idempotency.USER if isinstance(resource, User) else idempotency.MICROPOST
    assert codec.decode(codec.encode(resource)) == resource
