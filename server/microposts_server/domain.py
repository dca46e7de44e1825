"""The MicroPosts domain: resources, their rules, and the errors use cases raise.

Nothing here knows about grpc or protobuf; servicers translate. Times are
integer microseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

USERNAME_RE = re.compile(r"[a-z0-9_]{3,30}")
MICROPOST_ID_RE = re.compile(r"[0-9a-z]{1,64}")
MICROPOST_NAME_RE = re.compile(r"users/([a-z0-9_]{3,30})/microposts/([0-9a-z]{1,64})")
# "@name" not preceded by a word character (so e-mail addresses do not count)
# and not followed by one (so "@bobby" does not mention "bob").
MENTION_RE = re.compile(r"(?<![A-Za-z0-9_])@([a-z0-9_]{3,30})(?![A-Za-z0-9_])")

MAX_DISPLAY_NAME = 100
MAX_TEXT = 300
MAX_REQUEST_ID = 100
MAX_BATCH = 100
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
ALL_USERS = "-"  # the "users/-" wildcard parent


# --------------------------------------------------------------------------
# Errors. Use cases raise these; only the RPC edge turns them into statuses.
# --------------------------------------------------------------------------


class DomainError(Exception):
    """Base of the errors that use cases raise on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True, slots=True)
class Violation:
    """One bad field: its path in the request (``micropost.text``) and why."""

    field: str
    description: str


class InvalidArgument(DomainError):
    """The request is malformed; ``violations`` name each bad field."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in self.violations))

    @classmethod
    def one(cls, field: str, description: str) -> InvalidArgument:
        return cls([Violation(field, description)])


class NotFound(DomainError):
    """A named resource does not exist."""

    def __init__(self, resource_type: str, resource_name: str) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(f"{resource_type} {resource_name!r} not found")


class AlreadyExists(DomainError):
    """A resource with that name exists already."""

    def __init__(self, resource_type: str, resource_name: str) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        super().__init__(f"{resource_type} {resource_name!r} already exists")


class Aborted(DomainError):
    """A conditional change lost a race: the etag given is stale."""

    def __init__(self, resource_type: str, resource_name: str, reason: str) -> None:
        self.resource_type = resource_type
        self.resource_name = resource_name
        self.reason = reason
        super().__init__(f"{reason}: {resource_type} {resource_name!r} has changed")


class Unavailable(DomainError):
    """The store cannot be reached right now; the call may be retried.

    ``message`` is for the log and may quote the driver; ``reason`` is the
    plain one that callers see (the driver's text and errno stay in the log).
    """

    def __init__(self, message: str, reason: str = "the store is unavailable") -> None:
        super().__init__(message)
        self.reason = reason


class Unauthenticated(DomainError):
    """The caller's credentials are missing or invalid; ``reason`` is a machine-readable code."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(DomainError):
    """The caller may not do this to ``resource_name`` (AIP-211's message form)."""

    def __init__(self, permission: str, resource_name: str) -> None:
        self.permission = permission
        self.resource_name = resource_name
        super().__init__(
            f"Permission '{permission}' denied on resource '{resource_name}' "
            "(or it might not exist)"
        )


class StoreFailed(DomainError):
    """The store fails in a way that lasts (disk full, I/O error, read-only): retrying is futile.

    ``full`` tells a full disk apart from a broken one; until an operator
    frees space or fixes the disk, every write fails the same way.
    ``message`` is for the log and may quote the driver; ``reason`` is the
    plain one callers see.
    """

    def __init__(self, message: str, *, full: bool) -> None:
        super().__init__(message)
        self.full = full
        self.reason = "the store's disk is full" if full else "the store cannot write"


class DeadlineExceeded(DomainError):
    """The call's time budget ran out; ``phase`` says where (admission, queue, store, handler)."""

    def __init__(self, message: str, phase: str) -> None:
        self.phase = phase
        super().__init__(message)


# --------------------------------------------------------------------------
# Resources.
# --------------------------------------------------------------------------


# Resources are NamedTuples: immutable like frozen dataclasses, and built
# several times faster (one is built for every row read, on every call).


class User(NamedTuple):
    """A registered user."""

    username: str
    display_name: str
    create_time: int

    @property
    def name(self) -> str:
        return f"users/{self.username}"


class Micropost(NamedTuple):
    """A short post. ``version`` counts its changes (1 when created)."""

    username: str
    id: str
    text: str
    referenced_users: tuple[str, ...]  # usernames, in order of first mention
    create_time: int
    update_time: int
    version: int = 1

    @property
    def name(self) -> str:
        return f"users/{self.username}/microposts/{self.id}"

    @property
    def etag(self) -> str:
        """An opaque etag for this version of the post (clients only compare it).

        Every change moves ``update_time`` strictly forward (see
        ``Service.update_micropost``), so it identifies the version; it is
        computed on every read, so it must be cheap (a hash cost ~1 us a post).
        """
        return f'"{self.update_time:x}"'


class Principal(NamedTuple):
    """Who is calling, as the use cases see it: a username, and whether an administrator.

    Built by the server's authentication step (from a token's ``sub`` and
    ``scope``); use cases ask ``permissions`` whether it may act. It holds no
    credentials, only the identity they proved.
    """

    username: str
    admin: bool = False


UNRESTRICTED = Principal("", admin=True)
"""The caller when authentication is off (``--auth none``), and in-process callers.

It may do everything, as every caller could before authentication existed.
"""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list and the cursor after its last item (None: the end)."""

    items: list[T]
    next_cursor: str | None


class MicropostName(NamedTuple):
    """A parsed "users/{username}/microposts/{id}"."""

    username: str
    id: str


_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
# Every pair of base32 digits, indexed by the 10 bits they spell: encoding an
# id takes 13 lookups instead of 26 shifts (ids are made on every create).
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_ID_SHIFTS = tuple(range(120, -1, -10))


class IdGenerator:
    """Time-ordered, globally unique, opaque micropost ids (ULID-like).

    48 bits of milliseconds then 80 random bits, in lowercase Crockford
    base32 (26 characters). Within one process ids strictly increase, so
    "newest first" is "id descending" and keyset paging is stable under
    concurrent inserts; across replicas they are unique and ordered by time.
    """

    def __init__(self) -> None:
        self._last_ms = 0
        self._last_rand = 0
        self._lock = threading.Lock()
        # Seeded from the OS: independent across processes and replicas.
        self._random = random.Random(os.urandom(16))

    def new(self, now_ms: int | None = None) -> str:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_rand + 1
                if rand >= 1 << 80:  # astronomically unlikely: move to the next ms
                    ms, rand = ms + 1, self._random.getrandbits(79)
            else:
                rand = self._random.getrandbits(79)  # leave room to count up
            self._last_ms, self._last_rand = ms, rand
        value = (ms << 80) | rand
        pairs = _PAIRS
        return "".join([pairs[(value >> shift) & 1023] for shift in _ID_SHIFTS])


# --------------------------------------------------------------------------
# Rules: validation and parsing. Each returns the clean value or raises
# InvalidArgument naming the request field it was given.
# --------------------------------------------------------------------------


def check_username(value: str, field: str) -> str:
    if not USERNAME_RE.fullmatch(value):
        raise InvalidArgument.one(field, "must be 3 to 30 characters of a-z, 0-9 and _")
    return value


def check_display_name(value: str, field: str) -> str:
    if len(value) > MAX_DISPLAY_NAME:
        raise InvalidArgument.one(field, f"must be at most {MAX_DISPLAY_NAME} characters")
    return value


def check_text(value: str, field: str) -> str:
    if not value:
        raise InvalidArgument.one(field, "is required (1 to 300 characters)")
    if len(value) > MAX_TEXT:
        raise InvalidArgument.one(
            field, f"must be at most {MAX_TEXT} characters (got {len(value)})"
        )
    return value


def check_request_id(value: str, field: str = "request_id") -> str:
    if len(value) > MAX_REQUEST_ID or not value.isprintable():
        raise InvalidArgument.one(
            field, f"must be at most {MAX_REQUEST_ID} printable characters (a UUID is ideal)"
        )
    return value


def check_etag(value: str, field: str) -> str:
    if len(value) > 64 or not value.isprintable():
        raise InvalidArgument.one(field, "is not an etag this service issued")
    return value


def parse_user_name(value: str, field: str) -> str:
    """ "users/{username}" -> username."""
    if not value:
        raise InvalidArgument.one(field, 'is required, e.g. "users/alice"')
    prefix, _, username = value.partition("/")
    if prefix != "users" or not USERNAME_RE.fullmatch(username):
        raise InvalidArgument.one(field, f'must be "users/{{username}}", got {value!r}')
    return username


def parse_parent(value: str, field: str = "parent") -> str | None:
    """A list parent: "users/{username}" -> username, "users/-" -> None (everyone)."""
    if value == f"users/{ALL_USERS}":
        return None
    return parse_user_name(value, field)


def parse_micropost_name(value: str, field: str) -> MicropostName:
    """ "users/{username}/microposts/{id}" -> MicropostName."""
    match = MICROPOST_NAME_RE.fullmatch(value)
    if match is not None:
        return MicropostName(match[1], match[2])
    if not value:
        raise InvalidArgument.one(field, 'is required, e.g. "users/alice/microposts/{id}"')
    raise InvalidArgument.one(
        field, f'must be "users/{{username}}/microposts/{{micropost_id}}", got {value!r}'
    )


def page_size(value: int, field: str = "page_size") -> int:
    """AIP-158: 0 -> the default, above the maximum -> the maximum, negative -> error."""
    if value < 0:
        raise InvalidArgument.one(field, "must not be negative")
    if value == 0:
        return DEFAULT_PAGE_SIZE
    return min(value, MAX_PAGE_SIZE)


def mentions(text: str) -> list[str]:
    """Usernames mentioned as "@name", in order of first mention, without repeats."""
    seen: dict[str, None] = {}
    for match in MENTION_RE.finditer(text):
        seen.setdefault(match.group(1), None)
    return list(seen)


def fingerprint(*parts: str | Iterable[str]) -> str:
    """A stable digest of a request's meaningful fields (idempotency checks)."""
    h = hashlib.sha256()
    for part in parts:
        items = [part] if isinstance(part, str) else list(part)
        for item in items:
            h.update(item.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        h.update(b"\x01")
    return h.hexdigest()
