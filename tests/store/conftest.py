"""Store tests: a migrated private database with one jurisdiction and one subject, on a plain connection;
a pool on it with a second subject and two devices, and fixes stored as the pipeline stores them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest_asyncio

from emwatch.model import FixBatch, FixColumns
from emwatch.store.db import connect_pool, migrate, migration_files
from emwatch.store.fixes import write_fixes


@pytest_asyncio.fixture
async def subject_db(fresh_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to a fresh, migrated database holding jurisdiction 'j' and its subject 's'."""
    await migrate(fresh_database_url)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'J', 'district');"
                           "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s', 'S', 'j')")
        yield conn
    finally:
        await conn.close()


async def migrate_with_data_before(
    url: str, version: str, setup: Callable[[asyncpg.Connection], Awaitable[object]]
) -> None:
    """Apply every migration, running `setup` just before migration `version` (a prefix such as "015"):
    the rows an older schema held when that migration came."""
    conn = await asyncpg.connect(url)
    try:
        for name, sql in migration_files():
            if name.startswith(version):
                await setup(conn)
            await conn.execute(sql)
    finally:
        await conn.close()


SUBJECTS = ["s", "s2"]


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


@pytest_asyncio.fixture
async def pool(subject_db: asyncpg.Connection, fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the subject_db database, which also holds subject s2 and devices d1 (of s) and d2."""
    await subject_db.execute(
        "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s2', 'S2', 'j');"
        "INSERT INTO devices (id, kind, subject_id) VALUES ('d1', 'ankle', 's'), ('d2', 'phone', NULL)"
    )
    async with connect_pool(fresh_database_url, min_size=1, max_size=2) as p:
        yield p


async def store(pool: asyncpg.Pool, device: str, subject: int, ts: list[int], lat: float = 30.0) -> None:
    """Fixes of one device as the pipeline stores them; `subject` indexes SUBJECTS, -1 for none known."""
    n = len(ts)
    cols = FixColumns(
        [device] * n, np.array(ts, dtype=np.int64), np.full(n, lat), np.full(n, 120.0),
        np.full(n, 5.0, dtype=np.float32), np.zeros(n, dtype=np.int8), np.full(n, -1, dtype=np.int16),
        np.zeros(n, dtype=np.int64),
    )
    fix_batch = FixBatch(cols, np.zeros(n, np.int32), np.full(n, subject, np.int32), np.ones(n, np.uint64),
                         np.ones(n, bool), np.zeros(n, bool), subject_ids=SUBJECTS)
    async with pool.acquire() as conn, conn.transaction():
        await write_fixes(conn, [fix_batch])
