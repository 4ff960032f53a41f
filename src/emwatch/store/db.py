"""Connection pool and schema migrations."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x656D7761  # advisory lock id: two starting instances never migrate at once


async def _init_connection(conn: asyncpg.Connection) -> None:
    import orjson

    for name in ("json", "jsonb"):
        await conn.set_type_codec(
            name, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


@asynccontextmanager
async def connect_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """A pool whose connections decode json/jsonb to Python values."""
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    try:
        yield pool
    finally:
        await pool.close()


def migration_files() -> list[tuple[str, str]]:
    """(version, sql) of every bundled migration, in order."""
    folder = resources.files("emwatch.store") / "migrations"
    files = sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), sql) for name, sql in files]


async def migrate(dsn: str) -> list[str]:
    """Apply the migrations not yet applied; returns the versions applied now. Idempotent."""
    conn = await asyncpg.connect(dsn)
    applied_now: list[str] = []
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)
            log.info("applied migration %s", version)
            applied_now.append(version)
    finally:
        await conn.close()
    return applied_now
