"""One page of a list: its items and the token of the next page.

``list_users()`` and ``list_microposts()`` iterate over every item; their
``*_page()`` twins return one :class:`Page`, for a service that hands its own
callers "one page and a cursor" (AIP-158) and keeps the client's deadlines,
retries and errors while doing so.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["Page"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    """One page of a list: ``items``, and ``next_page_token`` ("" on the last page).

    Iterating over a page iterates over its items. The rules every list
    method follows (AIP-158):

    - ``page_size``: at most that many items; 0 (the default) lets the
      server choose (50), above 1000 counts as 1000, below 0 is
      :class:`~microposts_client.InvalidArgument`. A page may hold fewer
      items than asked for and still not be the last.
    - ``page_token``: empty for the first page, then the previous page's
      ``next_page_token``. Tokens are opaque, do not expire, and are bound
      to the method and its parent (one from another parent is
      ``InvalidArgument``); ``page_size`` may change from page to page.
    """

    items: tuple[_T, ...]
    """The page's items, in the list's order."""
    next_page_token: str
    """Pass it as ``page_token`` to get the next page; empty when this is the last."""

    def __iter__(self) -> Iterator[_T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)
