"""A subject's fixes (track, alert evidence, latest position) are found through the devices that carried
them, and stay the subject's own after a device is reassigned (migration 012)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import numpy as np
import pytest_asyncio

from emwatch.model import FixBatch, FixColumns
from emwatch.store.db import migration_files
from emwatch.store.fixes import write_fixes
from emwatch.store.lifecycle import evidence_fixes
from emwatch.store.repo import track
from emwatch.store.scoped import latest_positions
from emwatch.store.users import EVERYTHING

T0 = 1_700_000_000_000
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
    async with asyncpg.create_pool(fresh_database_url, min_size=1, max_size=2) as p:
        yield p


async def store(pool: asyncpg.Pool, device: str, subject: int, ts: list[int]) -> None:
    """Fixes of one device as the pipeline stores them, `subject` indexing SUBJECTS."""
    n = len(ts)
    cols = FixColumns(
        [device] * n, np.array(ts, dtype=np.int64), np.full(n, 30.0), np.full(n, 120.0),
        np.full(n, 5.0, dtype=np.float32), np.zeros(n, dtype=np.int8), np.full(n, -1, dtype=np.int16),
        np.zeros(n, dtype=np.int64),
    )
    fix_batch = FixBatch(cols, np.zeros(n, np.int32), np.full(n, subject, np.int32), np.ones(n, np.uint64),
                         np.ones(n, bool), np.zeros(n, bool), subject_ids=SUBJECTS)
    async with pool.acquire() as conn, conn.transaction():
        await write_fixes(conn, [fix_batch])


async def test_track_and_evidence_are_in_time_order_across_devices_and_limited(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE devices SET subject_id = 's' WHERE id = 'd2'")
    await store(pool, "d1", 0, [T0, T0 + 20, T0 + 40])
    await store(pool, "d2", 0, [T0 + 10, T0 + 30])
    got = await track(pool, "s", at(T0 + 10), at(T0 + 40), limit=10)
    assert [(r["device_id"], r["ts"]) for r in got] == [("d2", T0 + 10), ("d1", T0 + 20), ("d2", T0 + 30)]
    assert [r["ts"] for r in await track(pool, "s", at(T0), at(T0 + 100), limit=2)] == [T0, T0 + 10]
    evidence = await evidence_fixes(pool, "s", at(T0 + 20), at(T0 + 40), limit=10)
    assert [(r["device_id"], r["ts"]) for r in evidence] == [("d1", at(T0 + 20)), ("d2", at(T0 + 30)),
                                                             ("d1", at(T0 + 40))]


async def test_a_reassigned_device_s_fixes_stay_with_the_subject_that_wore_it(pool: asyncpg.Pool) -> None:
    await store(pool, "d1", 0, [T0, T0 + 10])
    await pool.execute("UPDATE devices SET subject_id = 's2' WHERE id = 'd1'")
    await store(pool, "d1", 1, [T0 + 20, T0 + 30])
    assert [r["ts"] for r in await track(pool, "s", at(T0), at(T0 + 100), limit=10)] == [T0, T0 + 10]
    assert [r["ts"] for r in await track(pool, "s2", at(T0), at(T0 + 100), limit=10)] == [T0 + 20, T0 + 30]
    latest = {r["subject_id"]: r["ts"] for r in await latest_positions(pool, EVERYTHING)}
    assert latest == {"s": T0 + 10, "s2": T0 + 30}


async def test_fixes_of_subjects_assigned_before_migration_012_are_found(fresh_database_url: str) -> None:
    """The migration records the pairs already in `fixes`, including those of earlier assignments."""
    conn = await asyncpg.connect(fresh_database_url)
    try:
        for version, sql in migration_files():
            if version.startswith("012"):
                await conn.execute(
                    "INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'J', 'district');"
                    "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('old', 'O', 'j');"
                    "INSERT INTO devices (id, kind, subject_id) VALUES ('d', 'ankle', NULL);"
                    "INSERT INTO fixes (device_id, ts, lat, lon, h3, subject_id)"
                    " VALUES ('d', now(), 30, 120, 0, 'old')"
                )
            await conn.execute(sql)
        assert await conn.fetch("SELECT subject_id, device_id FROM subject_devices") == [("old", "d")]
    finally:
        await conn.close()
