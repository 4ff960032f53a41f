"""A restart restores each device's newest fix with the error radius a live fix would get."""

from __future__ import annotations

import asyncpg
import pytest

from emwatch.rules.accuracy import DEFAULT_ACCURACY_M
from emwatch.store.db import migrate
from emwatch.store.registry_source import load_device_positions


async def test_newest_fix_per_device_comes_back_with_its_accuracy_radius(fresh_database_url: str) -> None:
    await migrate(fresh_database_url)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute("""
            INSERT INTO fixes (device_id, ts, lat, lon, acc, src, h3) VALUES
              ('gps-1', now() - interval '2 min', 30.0, 120.0, 8, 'gps', 0),
              ('gps-1', now() - interval '1 min', 30.1, 120.1, 12, 'gps', 0),
              ('lbs-1', now() - interval '1 min', 30.2, 120.2, NULL, 'lbs', 0),
              ('wifi-1', now() - interval '1 min', 30.3, 120.3, NULL, 'wifi', 0),
              ('old-1', now() - interval '30 days', 30.4, 120.4, 5, 'gps', 0)""")
        # Written by hand, not by the service: noted as the service notes its own (migration 015).
        assert await conn.fetchval("SELECT emwatch_note_minutes(0, emwatch_minute(now()))") == 4
    finally:
        await conn.close()
    pool = await asyncpg.create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        positions = {p[0]: p for p in await load_device_positions(pool)}
    finally:
        await pool.close()
    assert sorted(positions) == ["gps-1", "lbs-1", "wifi-1"]  # older than the window: not a baseline
    assert positions["gps-1"][2:] == (pytest.approx(30.1), pytest.approx(120.1), 12.0)  # newest, own acc
    assert positions["lbs-1"][4] == DEFAULT_ACCURACY_M[2]  # cell tower without acc: its wide default
    assert positions["wifi-1"][4] == DEFAULT_ACCURACY_M[1]
