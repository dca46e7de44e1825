"""The storage port: what use cases need from a database, and nothing more.

A ``Store`` hands out units of work. ``async with store.write() as tx`` is one
transaction: it commits when the block ends normally and rolls back whole
when it raises (a deadline, a cancellation, a bug), so a write is never
half-applied. ``store.read()`` gives the same interface for reads, without a
transaction: each statement reads committed data on its own (what that
guarantees, and why it is enough: ``Store.read``). Each adapter bounds its
work by the current call's budget (``deadlines.CURRENT``), adds the time it
spent to the budget, and translates its driver's errors into the ones below
or into domain errors (``Unavailable``, ``DeadlineExceeded``) so that no
driver exception reaches the use cases.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

from ..domain import Micropost, User


class DuplicateKey(Exception):
    """An insert hit a unique key; ``table`` says which (``users``, ``requests``)."""

    def __init__(self, table: str) -> None:
        super().__init__(f"duplicate key in {table}")
        self.table = table


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What a create with a ``request_id`` returned, kept for replays (AIP-155)."""

    scope: str  # method and parent, e.g. "CreateMicropost users/alice"
    request_id: str
    fingerprint: str  # digest of the request body, to spot a reused id
    response: str  # the response, serialised by the use case
    expire_time: int  # microseconds since the epoch


class Transaction(Protocol):
    """The statements of one unit of work: a transaction in a write (see ``Store.read``)."""

    async def get_user(self, username: str) -> User | None: ...

    async def insert_user(self, user: User) -> None:
        """Raises ``DuplicateKey("users")`` if the username is taken."""

    async def list_users(self, after: str | None, limit: int) -> list[User]:
        """Users with username > ``after``, ordered by username."""

    async def existing_usernames(self, usernames: Sequence[str]) -> set[str]: ...

    async def get_micropost(
        self, username: str, post_id: str, *, for_update: bool = False
    ) -> Micropost | None: ...

    async def get_microposts(self, post_ids: Sequence[str]) -> dict[str, Micropost]:
        """The posts that exist among ``post_ids``, keyed by id."""

    async def insert_micropost(self, post: Micropost) -> None: ...

    async def update_micropost(self, post: Micropost) -> None:
        """Stores text, referenced_users, update_time and version."""

    async def delete_micropost(self, username: str, post_id: str) -> None: ...

    async def list_microposts(
        self, username: str | None, before: str | None, limit: int
    ) -> list[Micropost]:
        """Newest first (id descending), ids < ``before``; ``username`` None: everyone."""

    async def get_request(self, scope: str, request_id: str, now: int) -> RequestRecord | None:
        """The unexpired record for this request id, if any."""

    async def put_request(self, record: RequestRecord) -> None:
        """Raises ``DuplicateKey("requests")`` if one exists (a concurrent twin)."""


class TransactionContext(Protocol):
    """``async with`` yields a Transaction; commit on success, rollback on error."""

    async def __aenter__(self) -> Transaction: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Store(Protocol):
    """A database holding users, posts and idempotency records."""

    def read(self) -> TransactionContext:
        """Reads of committed data, bounded by the call's budget; no transaction.

        What holds, on both stores: each statement sees one consistent
        snapshot of committed data, but two statements of one read may see
        different snapshots (a write committed in between shows in the
        second). PostgreSQL runs each read statement on its own (autocommit,
        READ COMMITTED); SQLite runs it as its own implicit read transaction,
        and other processes on the same file may commit between two.

        Why that is enough for the read use cases: each one that answers
        with data reads it in one statement (a user, a post, a page of
        users, a page of posts, and ``BatchGetMicroposts`` every post of the
        batch at once), so what one response holds comes from one snapshot.
        ``ListMicroposts`` first checks that the user exists, then reads the
        page: users are never deleted or renamed, so a user seen to exist
        still does when the page is read, and a post created or deleted in
        between is simply in the page or not, as if the call came a moment
        later or earlier. A use case that needs two statements to agree
        must not rely on ``read()``: it would need a ``REPEATABLE READ READ
        ONLY`` transaction on PostgreSQL (two more round trips per call).
        """

    def write(self) -> TransactionContext:
        """One read-write transaction, bounded by the call's budget; all or nothing."""

    async def page_token_key(self) -> bytes:
        """The secret that signs page tokens, shared by every replica on this store."""

    async def ping(self) -> None:
        """Raises ``domain.Unavailable`` if the store cannot serve (health checks)."""

    async def purge_requests(self, now: int) -> int:
        """Deletes expired idempotency records; returns how many."""

    async def check_writes(self) -> None:
        """Commits a one-row write; raises what a failing write raises (health, after a fault)."""

    async def close(self) -> None: ...
