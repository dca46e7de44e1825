"""Use cases: one method per RPC, on the domain's terms.

Each method validates its inputs (naming the request field of every bad
one), checks that its ``caller`` may write there (``permissions``; as soon
as the resource's name is known, before anything else is checked or read;
``caller`` is a required keyword of every write, with no default, so a
servicer that forgets it fails to type-check and to run instead of writing
as ``domain.UNRESTRICTED``),
runs its writes in one store transaction (``store.write()``) and its
reads in one ``store.read()``, where each statement sees committed data on
its own (``store.base.Store.read`` says what that guarantees and why it is
enough), and returns domain objects or raises domain errors. It knows
nothing of grpc or protobuf.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from . import idempotency
from .domain import (
    MAX_BATCH,
    Aborted,
    AlreadyExists,
    IdGenerator,
    InvalidArgument,
    Micropost,
    MicropostName,
    NotFound,
    Page,
    Principal,
    User,
    Violation,
    check_display_name,
    check_etag,
    check_request_id,
    check_text,
    check_username,
    fingerprint,
    mentions,
    page_size,
    parse_micropost_name,
    parse_parent,
    parse_user_name,
)
from .idempotency import Idempotency
from .page_tokens import PageTokens
from .permissions import (
    CREATE_MICROPOST,
    CREATE_USER,
    DELETE_MICROPOST,
    UPDATE_MICROPOST,
    require_owner,
)
from .store import DuplicateKey, Store, Transaction

T = TypeVar("T")

UPDATABLE_FIELDS = frozenset({"text", "*"})


def _collect(violations: list[Violation], check: Callable[[], T]) -> T | None:
    """Runs one check, adding its violations instead of raising (report them all)."""
    try:
        return check()
    except InvalidArgument as exc:
        violations.extend(exc.violations)
        return None


def _owned_post(
    violations: list[Violation],
    caller: Principal,
    permission: str,
    name: str,
    etag: str,
    fields: str,
) -> MicropostName | None:
    """How a change to a post begins: parse its name, check ``caller`` may, check the etag.

    The permission is asked as soon as the name parses, before the etag (or
    anything else) is looked at. ``fields`` prefixes the request fields that
    violations name: ``"micropost."`` for UpdateMicropost, ``""`` for
    DeleteMicropost.
    """
    parsed = _collect(violations, lambda: parse_micropost_name(name, f"{fields}name"))
    if parsed is not None:
        require_owner(caller, permission, parsed.username, name)
    _collect(violations, lambda: check_etag(etag, f"{fields}etag"))
    return parsed


class Service:
    """The MicroPosts use cases on one store."""

    def __init__(
        self,
        store: Store,
        tokens: PageTokens,
        *,
        request_ttl: float = idempotency.DEFAULT_REQUEST_TTL,
        ids: IdGenerator | None = None,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.store = store
        self.tokens = tokens
        self.ids = ids or IdGenerator()
        self._clock = clock
        self.requests = Idempotency(store, request_ttl, self._now)

    def _now(self) -> int:
        return self._clock() // 1000

    # -- users ---------------------------------------------------------------

    async def create_user(
        self,
        username: str,
        display_name: str,
        request_id: str,
        *,
        caller: Principal,
    ) -> User:
        violations: list[Violation] = []
        if _collect(violations, lambda: check_username(username, "user.username")) is not None:
            require_owner(caller, CREATE_USER, username, f"users/{username}")
        _collect(violations, lambda: check_display_name(display_name, "user.display_name"))
        _collect(violations, lambda: check_request_id(request_id))
        if violations:
            raise InvalidArgument(violations)

        async def make(tx: Transaction, now: int) -> User:
            user = User(username, display_name, now)
            await tx.insert_user(user)
            return user

        try:
            return await self.requests.create(
                "CreateUser",
                request_id,
                fingerprint(username, display_name),
                idempotency.USER,
                make,
            )
        except DuplicateKey as exc:
            if exc.table == "users":
                raise AlreadyExists("User", f"users/{username}") from None
            raise

    async def get_user(self, name: str) -> User:
        username = parse_user_name(name, "name")
        async with self.store.read() as tx:
            user = await tx.get_user(username)
        if user is None:
            raise NotFound("User", name)
        return user

    async def list_users(self, size: int, token: str) -> Page[User]:
        limit = page_size(size)
        after = self.tokens.decode(token, "users", "") if token else None
        async with self.store.read() as tx:
            users = await tx.list_users(after, limit + 1)
        if len(users) > limit:
            users = users[:limit]
            return Page(users, self.tokens.encode("users", "", users[-1].username))
        return Page(users, None)

    # -- microposts ----------------------------------------------------------

    async def _referenced(self, tx: Transaction, text: str) -> tuple[str, ...]:
        named = mentions(text)
        if not named:
            return ()
        existing = await tx.existing_usernames(named)
        return tuple(u for u in named if u in existing)

    async def create_micropost(
        self, parent: str, text: str, request_id: str, *, caller: Principal
    ) -> Micropost:
        violations: list[Violation] = []
        username = _collect(violations, lambda: parse_user_name(parent, "parent"))
        if username is not None:
            require_owner(caller, CREATE_MICROPOST, username, parent)
        _collect(violations, lambda: check_text(text, "micropost.text"))
        _collect(violations, lambda: check_request_id(request_id))
        if violations or username is None:
            raise InvalidArgument(violations)
        author = username

        named = mentions(text)

        async def make(tx: Transaction, now: int) -> Micropost:
            # One query answers both "does the author exist?" and "which of
            # the mentioned users exist?".
            existing = await tx.existing_usernames([author, *named])
            if author not in existing:
                raise NotFound("User", parent)
            referenced = tuple(u for u in named if u in existing)
            post = Micropost(author, self.ids.new(now // 1000), text, referenced, now, now)
            await tx.insert_micropost(post)
            return post

        return await self.requests.create(
            f"CreateMicropost {parent}",
            request_id,
            fingerprint(text),
            idempotency.MICROPOST,
            make,
        )

    async def get_micropost(self, name: str) -> Micropost:
        parsed = parse_micropost_name(name, "name")
        async with self.store.read() as tx:
            post = await tx.get_micropost(parsed.username, parsed.id)
        if post is None:
            raise NotFound("Micropost", name)
        return post

    async def batch_get_microposts(self, names: Sequence[str]) -> list[Micropost]:
        if len(names) > MAX_BATCH:
            raise InvalidArgument.one("names", f"at most {MAX_BATCH} names (got {len(names)})")
        violations: list[Violation] = []
        parsed: list[MicropostName | None] = [
            _collect(violations, lambda n=n, i=i: parse_micropost_name(n, f"names[{i}]"))  # type: ignore[misc]
            for i, n in enumerate(names)
        ]
        if violations:
            raise InvalidArgument(violations)
        if not names:
            return []
        async with self.store.read() as tx:
            found = await tx.get_microposts(list({p.id for p in parsed if p is not None}))
        posts: list[Micropost] = []
        for name, p in zip(names, parsed, strict=True):
            assert p is not None
            post = found.get(p.id)
            if post is None or post.username != p.username:
                raise NotFound("Micropost", name)
            posts.append(post)
        return posts

    async def list_microposts(self, parent: str, size: int, token: str) -> Page[Micropost]:
        violations: list[Violation] = []
        username = _collect(violations, lambda: parse_parent(parent, "parent"))
        limit = _collect(violations, lambda: page_size(size))
        if violations or limit is None:
            raise InvalidArgument(violations)
        before = self.tokens.decode(token, "microposts", parent) if token else None
        async with self.store.read() as tx:
            if username is not None and before is None and await tx.get_user(username) is None:
                raise NotFound("User", parent)
            posts = await tx.list_microposts(username, before, limit + 1)
        if len(posts) > limit:
            posts = posts[:limit]
            return Page(posts, self.tokens.encode("microposts", parent, posts[-1].id))
        return Page(posts, None)

    @staticmethod
    async def _current(tx: Transaction, parsed: MicropostName, name: str, etag: str) -> Micropost:
        """The post to change, locked; NOT_FOUND, or ABORTED if ``etag`` is stale."""
        post = await tx.get_micropost(parsed.username, parsed.id, for_update=True)
        if post is None:
            raise NotFound("Micropost", name)
        if etag and etag != post.etag:
            raise Aborted("Micropost", name, "etag mismatch")
        return post

    async def update_micropost(
        self,
        name: str,
        text: str,
        etag: str,
        mask: Sequence[str],
        *,
        caller: Principal,
    ) -> Micropost:
        violations: list[Violation] = []
        parsed = _owned_post(violations, caller, UPDATE_MICROPOST, name, etag, "micropost.")
        for i, path in enumerate(mask):
            if path not in UPDATABLE_FIELDS:
                violations.append(
                    Violation(f"update_mask.paths[{i}]", f"{path!r} cannot be updated; only 'text'")
                )
        # AIP-134: an empty mask means every field set in the request, and
        # text is the only updatable one.
        _collect(violations, lambda: check_text(text, "micropost.text"))
        if violations or parsed is None:
            raise InvalidArgument(violations)
        async with self.store.write() as tx:
            post = await self._current(tx, parsed, name, etag)
            updated = Micropost(
                post.username,
                post.id,
                text,
                await self._referenced(tx, text),
                post.create_time,
                max(self._now(), post.update_time + 1),
                post.version + 1,
            )
            await tx.update_micropost(updated)
        return updated

    async def delete_micropost(self, name: str, etag: str, *, caller: Principal) -> None:
        violations: list[Violation] = []
        parsed = _owned_post(violations, caller, DELETE_MICROPOST, name, etag, "")
        if violations or parsed is None:
            raise InvalidArgument(violations)
        async with self.store.write() as tx:
            await self._current(tx, parsed, name, etag)
            await tx.delete_micropost(parsed.username, parsed.id)
