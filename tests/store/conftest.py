"""Store tests: a migrated private database with one jurisdiction and one subject, on a plain connection."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from emwatch.store.db import migrate


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
