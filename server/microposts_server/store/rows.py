"""A row of ours, the same on every store: its columns and how fields map to them.

The SQL itself stays in each adapter: the dialects differ in placeholders
(``?`` or ``$1``), in how a list is passed (``IN (?, ?)`` or ``= ANY($1)``),
in locking (``FOR UPDATE``) and in how free text is held (SQLite ``TEXT``,
PostgreSQL UTF-8 in ``BYTEA``); so each adapter hands over a post's text as
its store holds it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from ..domain import Micropost

POST_COLUMNS = "username, id, text, referenced_users, create_time, update_time, version"
REQUEST_COLUMNS = "scope, request_id, fingerprint, response, expire_time"

Text = TypeVar("Text", str, bytes)

# Post ids are digits and lower-case letters; "~" sorts after every one of
# them in byte order, which both stores use for ids (COLLATE "C" on PostgreSQL).
_AFTER_EVERY_ID = "~"


def first_id_below(before: str | None) -> str:
    """The bound of a newest-first page, ``id < bound``: no cursor means from the newest."""
    return _AFTER_EVERY_ID if before is None else before


def post_from_row(row: Sequence[Any], text: str) -> Micropost:
    """The post in a row of ``POST_COLUMNS``; ``text`` is its text decoded to ``str``."""
    refs: str = row[3]
    return Micropost(
        row[0], row[1], text, tuple(refs.split(" ")) if refs else (), row[4], row[5], row[6]
    )


def post_values(post: Micropost, text: Text) -> tuple[str, str, Text, str, int, int, int]:
    """``post`` as the values of ``POST_COLUMNS`` in order; ``text`` as the store holds it."""
    return (
        post.username,
        post.id,
        text,
        " ".join(post.referenced_users),
        post.create_time,
        post.update_time,
        post.version,
    )


def update_values(post: Micropost, text: Text) -> tuple[Text, str, int, int, str, str]:
    """An update's values: what changes (text, referenced_users, update_time,
    version), then the key (id, username)."""
    return (
        text,
        " ".join(post.referenced_users),
        post.update_time,
        post.version,
        post.id,
        post.username,
    )
