"""`emwatch migrate`: applies the migrations, then stores the WKB of zones saved without it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
import shapely

from emwatch.cli import cmd_migrate
from emwatch.settings import Settings
from emwatch.store.db import migrate

SQUARE = '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}'


async def test_migrate_fills_in_the_wkb_of_zones_stored_before_it_existed(
    fresh_database_url: str, mqtt_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await migrate(fresh_database_url)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        await conn.execute(
            "INSERT INTO jurisdictions (id, name, kind) VALUES ('j', 'j', 'office');"
            f"INSERT INTO zones (id, kind, geometry, jurisdiction_id) VALUES ('old', 'exclusion', '{SQUARE}', 'j')"
        )
        assert await conn.fetchval("SELECT geometry_wkb FROM zones WHERE id = 'old'") is None

        settings = Settings(database_url=fresh_database_url, mqtt_url=mqtt_url)
        assert await asyncio.to_thread(cmd_migrate, settings) == 0  # it runs its own event loop
        wkb = await conn.fetchval("SELECT geometry_wkb FROM zones WHERE id = 'old'")
    finally:
        await conn.close()
    assert shapely.from_wkb(wkb).equals(shapely.box(0, 0, 1, 1))
    assert "stored the WKB of 1 zone(s)" in capsys.readouterr().out

