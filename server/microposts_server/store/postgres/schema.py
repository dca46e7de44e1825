"""The PostgreSQL schema, its numbered migrations, and the page-token key.

Migrations are applied on start inside one transaction holding a
transaction-level advisory lock, so replicas that start together migrate
once and the others wait for it; the applied versions are rows of
``schema_migrations``. The page-token key is created in the same
transaction, so every replica on the database shares it.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

log = logging.getLogger("microposts.store")

# Each entry upgrades the schema by one version (table schema_migrations).
# COLLATE "C" on keys: byte order, as SQLite compares, whatever the database's
# locale; usernames and ids sort and page the same on both stores. Free text
# (display names, post text) is BYTEA holding UTF-8: PostgreSQL's TEXT cannot
# hold U+0000, which a proto string may, and we store what we are given.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE users (
        username     TEXT COLLATE "C" PRIMARY KEY,
        display_name BYTEA NOT NULL,
        create_time  BIGINT NOT NULL
    );
    CREATE TABLE microposts (
        id               TEXT COLLATE "C" PRIMARY KEY,
        username         TEXT COLLATE "C" NOT NULL REFERENCES users (username),
        text             BYTEA NOT NULL,
        referenced_users TEXT NOT NULL,
        create_time      BIGINT NOT NULL,
        update_time      BIGINT NOT NULL,
        version          INTEGER NOT NULL
    );
    CREATE INDEX microposts_by_user ON microposts (username, id);
    CREATE TABLE requests (
        scope       TEXT COLLATE "C" NOT NULL,
        request_id  TEXT COLLATE "C" NOT NULL,
        fingerprint TEXT NOT NULL,
        response    TEXT NOT NULL,
        expire_time BIGINT NOT NULL,
        PRIMARY KEY (scope, request_id)
    );
    CREATE INDEX requests_by_expiry ON requests (expire_time);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- A create with a request_id first claims it: concurrent twins of one
    -- request queue here, and the second one then sees the first's record
    -- (a fresh snapshot per statement in plpgsql) and replays it, instead of
    -- failing on the resource the first one just created.
    CREATE FUNCTION claim_request(p_scope TEXT, p_request_id TEXT, p_now BIGINT)
    RETURNS TABLE (scope TEXT, request_id TEXT, fingerprint TEXT, response TEXT,
                   expire_time BIGINT)
    LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(
            hashtextextended('microposts.request ' || p_scope || ' ' || p_request_id, 0));
        RETURN QUERY
            SELECT r.scope::TEXT, r.request_id::TEXT, r.fingerprint, r.response, r.expire_time
            FROM requests r
            WHERE r.scope = p_scope AND r.request_id = p_request_id
              AND r.expire_time > p_now;
    END $$;
    """,
]

# One migration at a time per schema, across every replica.
_MIGRATION_LOCK = (
    "SELECT pg_advisory_xact_lock(hashtextextended('microposts.migrate ' || current_schema(), 0))"
)
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    "version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
)


async def migrate(con: Any) -> bytes:
    """Brings the schema up to date on ``con``; returns the shared page-token key."""
    async with con.transaction():
        await con.execute(_MIGRATION_LOCK)  # the other replicas wait here
        await con.execute(_MIGRATIONS_TABLE)
        version = await con.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")
        if version > len(MIGRATIONS):
            log.warning(
                "store schema is newer than this server",
                extra={"fields": {"schema_version": version, "known": len(MIGRATIONS)}},
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await con.execute(script)
            await con.execute("INSERT INTO schema_migrations (version) VALUES ($1)", number)
            log.info("store migrated", extra={"fields": {"schema_version": number}})
        await con.execute(
            "INSERT INTO settings (key, value) VALUES ('page_token_key', $1) "
            "ON CONFLICT (key) DO NOTHING",
            secrets.token_hex(32),
        )
        value = await con.fetchval("SELECT value FROM settings WHERE key = 'page_token_key'")
    return bytes.fromhex(value)
