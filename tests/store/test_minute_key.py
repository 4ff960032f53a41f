"""Fixes are keyed by minute first (migration 015): a device's fixes are read minute by minute, over the
minutes `device_minutes` says its (subject, device) pair has fixes in, and give the same answers as a
scan of everything stored would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np

from emwatch.store.db import connect_pool
from emwatch.store.lifecycle import evidence_fixes
from emwatch.store.minute_notes import EPOCH_2000_MS, minute_of
from emwatch.store.registry_source import load_device_positions
from emwatch.store.repo import track
from emwatch.store.retention import purge_fixes
from emwatch.store.scoped import latest_positions
from emwatch.store.users import EVERYTHING
from tests.store.conftest import at, migrate_with_data_before, store

MINUTE = 60_000


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


async def minutes(pool: asyncpg.Pool) -> dict[tuple[str, str], tuple[int, int]]:
    rows = await pool.fetch("SELECT subject_id, device_id, first_minute, minute FROM device_minutes")
    return {(r["subject_id"], r["device_id"]): (r["first_minute"], r["minute"]) for r in rows}


async def test_the_minute_column_is_minutes_since_2000_as_the_service_computes_it(pool: asyncpg.Pool) -> None:
    stamps = [EPOCH_2000_MS, EPOCH_2000_MS + MINUTE - 1, 1_700_000_039_999, 1_700_000_040_000]
    await store(pool, "d1", 0, stamps)
    stored = await pool.fetch("SELECT minute FROM fixes ORDER BY ts")
    assert [r["minute"] for r in stored] == minute_of(np.array(stamps)).tolist() == [0, 0, 12_555_253, 12_555_254]


async def test_device_minutes_holds_each_pairs_first_and_newest_minute(pool: asyncpg.Pool) -> None:
    t = 1_700_000_000_000 - 1_700_000_000_000 % MINUTE  # a minute's start
    m = int(minute_of(np.array([t]))[0])
    await store(pool, "d1", 0, [t + 5 * MINUTE, t + 5 * MINUTE + 10])
    await store(pool, "d1", 0, [t + 2 * MINUTE])  # late: lowers the first minute only
    await store(pool, "d1", 0, [t + 9 * MINUTE])
    await store(pool, "d2", -1, [t + 3 * MINUTE])  # no subject known, none in PostgreSQL either
    await store(pool, "d1", 0, [t + 5 * MINUTE])  # redelivered: stored once, changes nothing
    assert await minutes(pool) == {("s", "d1"): (m + 2, m + 9), ("", "d2"): (m + 3, m + 3)}
    assert await pool.fetchval("SELECT count(*) FROM fixes") == 5


async def test_a_track_over_hours_is_every_fix_in_the_window_in_time_order(pool: asyncpg.Pool) -> None:
    t0 = 1_700_000_000_000
    await pool.execute("UPDATE devices SET subject_id = 's' WHERE id = 'd2'")
    d1 = list(range(t0, t0 + 3 * 3_600_000, 10_000))  # every 10 s for 3 hours
    d2 = list(range(t0 + 3_333, t0 + 3 * 3_600_000, 70_000))  # every 70 s: minutes without fixes
    await store(pool, "d1", 0, d1)
    await store(pool, "d2", 0, d2)
    start, end = t0 + 1_234_567, t0 + 2 * 3_600_000 + 7
    want = sorted(ts for ts in d1 + d2 if start <= ts < end)
    got = [r["ts"] for r in await track(pool, "s", at(start), at(end), limit=100_000)]
    assert got == want and len(want) > 600
    assert [r["ts"] for r in await track(pool, "s", at(start), at(end), limit=25)] == want[:25]
    evidence = await evidence_fixes(pool, "s", at(start), at(start + 5 * MINUTE), limit=1_000)
    assert [r["ts"] for r in evidence] == [at(ts) for ts in want if ts <= start + 5 * MINUTE]
    assert await track(pool, "s", at(t0 - 3_600_000), at(t0), limit=10) == []  # before any fix
    assert await track(pool, "s2", at(start), at(end), limit=10) == []


async def test_the_newest_position_is_the_last_fix_of_the_newest_minute(pool: asyncpg.Pool) -> None:
    t = now_ms() - 3_600_000
    await store(pool, "d1", 0, [t, t + 10_000, t + 20_000], lat=30.0)
    await store(pool, "d1", 0, [t + 30 * MINUTE, t + 30 * MINUTE + 9_000], lat=31.0)
    await store(pool, "d1", 0, [t + 10 * MINUTE], lat=32.0)  # late: arrived last, not the newest
    latest = {r["subject_id"]: (r["ts"], r["lat"]) for r in await latest_positions(pool, EVERYTHING)}
    assert latest == {"s": (t + 30 * MINUTE + 9_000, 31.0)}
    seeded = {p[0]: p[1:3] for p in await load_device_positions(pool)}
    assert seeded == {"d1": (t + 30 * MINUTE + 9_000, 31.0)}


async def test_a_device_worn_by_two_subjects_gives_each_their_own_newest_fix(pool: asyncpg.Pool) -> None:
    t = now_ms() - 600_000
    await store(pool, "d1", 0, [t, t + 10_000])
    await pool.execute("UPDATE devices SET subject_id = 's2' WHERE id = 'd1'")
    await store(pool, "d1", 1, [t + 20_000, t + 3 * MINUTE])
    latest = {r["subject_id"]: r["ts"] for r in await latest_positions(pool, EVERYTHING)}
    assert latest == {"s": t + 10_000, "s2": t + 3 * MINUTE}
    assert [p[1] for p in await load_device_positions(pool)] == [t + 3 * MINUTE]  # the device's own newest


async def test_purged_fixes_leave_no_position_behind(pool: asyncpg.Pool) -> None:
    t = now_ms() - 40 * 86_400_000
    await store(pool, "d1", 0, [t, t + 10_000])
    purged = await purge_fixes(pool, default_days=30, hold_margin=timedelta(0), now=datetime.now(UTC))
    assert purged.purged == 2
    assert await latest_positions(pool, EVERYTHING) == []
    assert await track(pool, "s", at(t - 1), at(t + MINUTE), limit=10) == []


async def test_fixes_stored_before_migration_015_are_found(fresh_database_url: str) -> None:
    """The migration gives the existing fixes their minute and records each pair's minutes."""
    t = now_ms() - 7_200_000

    async def before_015(conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'J', 'district');"
            "INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s', 'S', 'j');"
            "INSERT INTO devices (id, kind, subject_id) VALUES ('d', 'ankle', 's')"
        )
        await conn.executemany(
            "INSERT INTO fixes (device_id, ts, lat, lon, h3, subject_id) VALUES ('d', $1, 30, 120, 0, 's')",
            [(at(t + k * 20_000),) for k in range(10)],
        )

    await migrate_with_data_before(fresh_database_url, "015", before_015)
    async with connect_pool(fresh_database_url, min_size=1, max_size=1) as pool:
        assert [r["ts"] for r in await track(pool, "s", at(t), at(t + MINUTE), limit=10)] == [
            t, t + 20_000, t + 40_000
        ]
        assert [r["ts"] for r in await latest_positions(pool, EVERYTHING)] == [t + 180_000]
