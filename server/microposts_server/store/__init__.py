"""Storage adapters behind one port (``base.Store``), chosen by a URL.

``sqlite:///relative.db``, ``sqlite:////absolute.db``, ``sqlite://:memory:``,
``postgresql://...`` (or ``postgres://...``).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

from .base import DuplicateKey, RequestRecord, Store, Transaction

__all__ = [
    "DuplicateKey",
    "RequestRecord",
    "Store",
    "StoreURLError",
    "Transaction",
    "open_store",
    "redact_url",
]

# Query options that carry a secret (libpq and asyncpg both read them).
_SECRET_OPTIONS = {"password", "sslpassword"}


class StoreURLError(ValueError):
    """The store URL is not one we can open."""


def check_url(url: str) -> str:
    """Validates a store URL's form without opening it; returns it."""
    scheme = url.partition("://")[0].lower()
    if "://" not in url or scheme not in {"sqlite", "postgresql", "postgres"}:
        raise StoreURLError(
            f"unsupported store URL {redact_url(url)!r}: use sqlite:///path.db, sqlite://:memory: "
            "or postgresql://user@host/db"
        )
    if scheme == "sqlite" and not url[len("sqlite://") :]:
        raise StoreURLError(f"store URL {redact_url(url)!r} names no file")
    return url


def redact_url(url: str) -> str:
    """A store URL fit for logs and errors: any password shown as ``***``.

    Covers the password in the authority (``user:secret@host``) and in the
    query (``?password=secret``); a URL without one comes back unchanged.
    """
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = "&".join(
        f"{name}=***" if eq and unquote(name).lower() in _SECRET_OPTIONS else option
        for option in parts.query.split("&")
        for name, eq, _ in [option.partition("=")]
    )
    if netloc == parts.netloc and query == parts.query:
        return url
    return urlunsplit(parts._replace(netloc=netloc, query=query))


async def open_store(url: str, *, durability: str = "normal", pool_size: int = 10) -> Store:
    """Opens (and migrates) the store at ``url``."""
    check_url(url)
    scheme = url.partition("://")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SqliteStore

        return SqliteStore.open(url, durability=durability)
    from .postgres import PostgresStore  # imported lazily: asyncpg is optional

    return await PostgresStore.open(url, pool_size=pool_size, durability=durability)
