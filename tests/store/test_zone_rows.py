"""Zones read back for a registry: the columnar WKB path gives the registry the GeoJSON path gives."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import numpy as np
import pytest
import pytest_asyncio
import shapely

from emwatch.geo.geojson import ZoneError
from emwatch.geo.zone_table import ZoneIds
from emwatch.geo.zones import Zone
from emwatch.registry import ContactBanRow, DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.store import repo
from emwatch.store.db import connect_pool, migrate
from emwatch.store.registry_source import (
    load_permits,
    load_registry,
    load_severity_overrides,
    load_zone_versions,
    load_zones,
    zone_row,
)
from emwatch.store.zone_rows import backfill_zone_wkb, load_zone_columns

CURFEW = {"windows": [{"start": "22:00", "end": "06:00"}]}


def ring(lon: float, lat: float, r: float, n: int) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return list(zip((lon + r * np.cos(t)).tolist(), (lat + r * np.sin(t)).tolist(), strict=True))


# Every kind of zone a registry treats differently (scope, shape, schedule, role, warning ring).
ZONES = [
    Zone("a-circle", "exclusion", shapely.Point(120.01, 30.01), 200.0, subject_id="s1",
         properties={"buffer_m": 150}),
    Zone("b-holed", "inclusion", shapely.Polygon(ring(120.0, 30.0, 0.01, 20), [ring(120.0, 30.0, 0.002, 8)]),
         subject_id="s2", schedule=CURFEW, name="home"),
    Zone("c-multi", "exclusion", shapely.MultiPolygon([shapely.box(120.1, 30.1, 120.11, 30.11),
                                                        shapely.box(120.2, 30.2, 120.21, 30.21)]),
         group_id="g1"),
    Zone("d-group-circle", "inclusion", shapely.Point(120.3, 30.3), 500.0, group_id="g2"),
    Zone("e-county", "inclusion", shapely.box(119.9, 29.9, 120.4, 30.4), jurisdiction_id="j1"),
    Zone("f-city", "inclusion", shapely.Polygon(ring(120.1, 30.1, 0.6, 40)), jurisdiction_id="j0"),
    Zone("g-shared", "exclusion", shapely.Polygon(ring(120.05, 30.05, 0.003, 12)), jurisdiction_id="j2",
         properties={"buffer_m": 80.5}),
    Zone("h-shared-circle", "exclusion", shapely.Point(120.06, 30.06), 300.0, jurisdiction_id="j0"),
    Zone("i-destination", "inclusion", shapely.box(121.0, 31.0, 121.01, 31.01), subject_id="s1",
         properties={"role": "permit_destination", "note": "hospital"}),
    Zone("j-inactive", "exclusion", shapely.Point(120.5, 30.5), 100.0, subject_id="s3"),
    Zone("k-large", "exclusion", shapely.Polygon(ring(120.7, 30.7, 0.01, 300)), subject_id="s4"),
    Zone("l-box", "exclusion", shapely.box(120.8, 30.8, 120.81, 30.81), subject_id="s4"),
]


@pytest_asyncio.fixture
async def pool(fresh_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A migrated database holding ZONES and what they refer to."""
    await migrate(fresh_database_url)
    async with connect_pool(fresh_database_url, min_size=1, max_size=2) as pool:
        await pool.execute(
            "INSERT INTO jurisdictions (id, name, kind, parent_id) VALUES ('j0', 'J0', 'city', NULL),"
            " ('j1', 'J1', 'district', 'j0'), ('j2', 'J2', 'office', 'j1');"
            "INSERT INTO subjects (id, name, jurisdiction_id, groups, status) VALUES"
            " ('s1', 'S1', 'j2', '{g1,g2}', 'active'), ('s2', 'S2', 'j1', '{g2}', 'active'),"
            " ('s3', 'S3', 'j2', '{}', 'suspended'), ('s4', 'S4', 'j0', '{g1}', 'active');"
            "INSERT INTO devices (id, kind, subject_id) VALUES ('d1', 'ankle', 's1'), ('d2', 'phone', 's2');"
            "INSERT INTO permits (subject_id, starts_at, ends_at, zone_ids, status, requested_by)"
            " VALUES ('s1', now(), now() + interval '1 hour', '{i-destination}', 'approved', 'x')"
        )
        await repo.insert_zones(pool, [zone_row(z) for z in ZONES])
        yield pool


async def old_path_registry(pool: asyncpg.Pool) -> Registry:
    """The registry from a `Zone` per row parsed from its GeoJSON (the load before migration 013)."""
    async with pool.acquire() as conn:
        jur = [JurisdictionRow(r["id"], r["parent_id"]) for r in await conn.fetch("SELECT * FROM jurisdictions")]
        subjects = [SubjectRow(r["id"], r["jurisdiction_id"], r["risk_level"], tuple(r["groups"]), r["status"])
                    for r in await conn.fetch("SELECT * FROM subjects")]
        devices = [DeviceRow(r["id"], r["kind"], r["subject_id"], r["protects_subject_id"])
                   for r in await conn.fetch("SELECT * FROM devices ORDER BY id")]
        bans: list[ContactBanRow] = []
        return Registry.build(
            jur, subjects, devices, await load_zones(conn), 9, bans, await load_permits(conn),
            await load_severity_overrides(conn), await load_zone_versions(conn, 86_400),
        )


def assert_same(a: Any, b: Any, path: str = "registry") -> None:
    """Equal field by field, array by array (geometries: the same coordinates in the same order)."""
    assert type(a) is type(b), path
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.tolist(), b.tolist(), strict=True)):
                assert_same(x, y, f"{path}[{i}]")
        else:
            np.testing.assert_array_equal(a, b, err_msg=path)
    elif isinstance(a, shapely.Geometry):
        assert shapely.to_wkb(a) == shapely.to_wkb(b), path
    elif isinstance(a, ZoneIds):
        assert list(a) == list(b), path
    elif dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


async def test_the_wkb_columns_load_the_registry_the_geojson_zones_build(pool: asyncpg.Pool) -> None:
    new = await load_registry(pool, 9)
    assert_same(new, await old_path_registry(pool))
    assert new.zones.ring_of[new.zones.index_of["b-holed"]] >= 0  # the holed polygon is a ring polygon
    assert new.zones.ring_of[new.zones.index_of["k-large"]] < 0  # too many vertices: a prepared geometry


async def test_every_zone_written_through_zone_row_has_its_wkb(pool: asyncpg.Pool) -> None:
    rows = await pool.fetch("SELECT id, geometry_wkb FROM zones ORDER BY id")
    assert [shapely.from_wkb(r["geometry_wkb"]) for r in rows] == [z.geometry for z in ZONES]


async def test_rows_without_wkb_and_a_geometry_changed_by_sql_are_read_from_geojson(pool: asyncpg.Pool) -> None:
    moved = shapely.box(122.0, 32.0, 122.01, 32.01)
    await pool.execute("UPDATE zones SET geometry = $1, version = version + 1 WHERE id = 'l-box'",
                       json.loads(json.dumps(shapely.geometry.mapping(moved))))
    await pool.execute("UPDATE zones SET geometry_wkb = NULL WHERE id = 'a-circle'")
    # the trigger of migration 013 dropped the WKB that no longer matched
    assert await pool.fetchval("SELECT geometry_wkb FROM zones WHERE id = 'l-box'") is None
    new = await load_registry(pool, 9)
    assert new.zones.geometry(new.zones.index_of["l-box"]).equals(moved)
    assert_same(new, await old_path_registry(pool))
    async with pool.acquire() as conn:
        assert await backfill_zone_wkb(conn) == 2
    assert await pool.fetchval("SELECT count(*) FROM zones WHERE geometry_wkb IS NULL") == 0
    assert_same(await load_registry(pool, 9), new)


@pytest.mark.parametrize(("sql", "message"), [
    ("UPDATE zones SET geometry = '{\"type\": \"Polygon\", \"coordinates\": [[[0, 0], [1, 1], [1, 0], [0, 1],"
     " [0, 0]]]}' WHERE id = 'l-box'", "invalid geometry: Self-intersection"),
    ("UPDATE zones SET geometry_wkb = '\\x0102'::bytea, geometry = '{\"type\": \"Point\","
     " \"coordinates\": [200, 0]}' WHERE id = 'a-circle'", r"coordinates must be \[lon, lat\]"),
    ("UPDATE zones SET radius_m = -5 WHERE id = 'a-circle'", "radius_m must be a positive number"),
    ("UPDATE zones SET radius_m = NULL WHERE id = 'a-circle'", r"a Point zone \(circle\) needs radius_m"),
    ("UPDATE zones SET schedule = '[1]' WHERE id = 'a-circle'", "schedule must be an object or null"),
    ("UPDATE zones SET properties = '{\"buffer_m\": -1}' WHERE id = 'g-shared'", "buffer_m must be a number"),
    ("UPDATE zones SET group_id = NULL, subject_id = '' WHERE id = 'c-multi'", "subject_id must be a non-empty"),
])
async def test_a_bad_stored_zone_fails_the_load_saying_what_is_wrong(
    pool: asyncpg.Pool, sql: str, message: str
) -> None:
    await pool.execute("ALTER TABLE zones DROP CONSTRAINT zones_subject_id_fkey")  # rows no API would write
    await pool.execute(sql)
    with pytest.raises(ZoneError, match=message) as raised:
        await load_registry(pool, 9)
    assert str(raised.value).startswith(f"stored zone {sql.rsplit('id = ', 1)[1]}: ")  # which one, too


async def test_a_wkb_that_is_no_zone_geometry_is_read_from_the_geojson(pool: asyncpg.Pool) -> None:
    await pool.execute("UPDATE zones SET geometry_wkb = $1 WHERE id = 'g-shared'",
                       shapely.to_wkb(shapely.LineString([(0, 0), (1, 1)])))
    async with pool.acquire() as conn:
        cols = await load_zone_columns(conn)
    assert cols.geometry[cols.ids.index("g-shared")].equals(ZONES[6].geometry)
