"""A subject's fixes (track, alert evidence, latest position) are found through the devices that carried
them (device_minutes, migration 015), and stay the subject's own after a device is reassigned."""

from __future__ import annotations

import asyncpg

from emwatch.store.db import connect_pool
from emwatch.store.lifecycle import evidence_fixes
from emwatch.store.repo import track
from emwatch.store.scoped import latest_positions
from emwatch.store.users import EVERYTHING
from tests.store.conftest import at, migrate_with_data_before, store

T0 = 1_700_000_000_000
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


async def test_fixes_of_an_earlier_assignment_stored_under_the_oldest_schema_are_found(
    fresh_database_url: str,
) -> None:
    """Fixes stored before migrations 012 and 015, of a subject the device no longer carries."""
    await migrate_with_data_before(fresh_database_url, "012", lambda conn: conn.execute(
        "INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'J', 'district');"
        "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('old', 'O', 'j');"
        "INSERT INTO devices (id, kind, subject_id) VALUES ('d', 'ankle', NULL);"
        f"INSERT INTO fixes (device_id, ts, lat, lon, h3, subject_id) VALUES ('d', '{at(T0)}', 30, 120, 0, 'old')"
    ))
    async with connect_pool(fresh_database_url, min_size=1, max_size=1) as pool:
        assert [r["ts"] for r in await track(pool, "old", at(T0 - 1), at(T0 + 1), limit=10)] == [T0]
        assert [(r["subject_id"], r["ts"]) for r in await latest_positions(pool, EVERYTHING)] == [("old", T0)]
