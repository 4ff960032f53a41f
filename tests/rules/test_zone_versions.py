"""Late fixes are judged against the zone as it was at their timestamp (zone_versions), not as it is now."""

from __future__ import annotations

import json

import shapely

from emwatch.geo.zones import Zone
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.zone_versions import ZoneVersionRow
from emwatch.store.db import connect_pool, migrate
from emwatch.store.registry_source import load_registry
from tests.rules.harness import COUNTY, SCHOOL, T0, VICTIM, World

# Until T0 + 100 s the county ended just east of "in" (120.02, 30.02): a fix there was outside it.
OLD_COUNTY = Zone("county", "inclusion", shapely.box(120.03, 30.0, 120.2, 30.2), jurisdiction_id="j1")


def world_with_history(versions: list[ZoneVersionRow]) -> World:
    """The harness world, its registry rebuilt with these old zone versions."""
    w = World()
    reg = Registry.build(
        [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0")], [SubjectRow("s1", "j1", "high")],
        [DeviceRow("ankle-1", "ankle", "s1"), DeviceRow("phone-1", "phone", "s1")], [COUNTY, SCHOOL, VICTIM],
        h3_resolution=9, zone_versions=versions,
    )
    w.engine.replace_registry(reg)
    w.book.rebind(reg)
    return w


def summary(w: World) -> list[tuple[str, str, bool, float]]:
    return [(e.type, e.rule, e.late, (e.ts - T0) / 1000) for e in w.events]


def test_a_late_fix_is_judged_against_the_geometry_of_its_time() -> None:
    w = world_with_history([ZoneVersionRow("county", T0 - 3_600_000, T0 + 100_000, OLD_COUNTY)])
    w.send((0, "in2"))    # live, inside both versions
    w.send((200, "in"))   # live, after the change: inside the county as it is now
    w.send((50, "in"))    # late: at 50 s the county did not reach this far yet
    assert summary(w) == [("alert", "zone_exit", True, 50), ("cleared", "zone_exit", True, 200)]


def test_without_the_old_version_the_same_late_fix_is_compliant() -> None:
    w = world_with_history([])
    w.send((0, "in2"))
    w.send((200, "in"))
    w.send((50, "in"))
    assert summary(w) == []


def test_live_fixes_use_the_current_geometry() -> None:
    w = world_with_history([ZoneVersionRow("county", T0 - 3_600_000, T0 + 100_000, OLD_COUNTY)])
    w.send((150, "in"))
    assert summary(w) == []


async def test_the_registry_loads_recently_superseded_versions(fresh_database_url: str) -> None:
    await migrate(fresh_database_url)
    async with connect_pool(fresh_database_url) as pool:
        await pool.execute("INSERT INTO jurisdictions (id, name, kind) VALUES ('j1', 'J', 'district')")
        old = shapely.geometry.mapping(OLD_COUNTY.geometry)
        new = shapely.geometry.mapping(COUNTY.geometry)
        await pool.execute(
            "INSERT INTO zones (id, kind, geometry, jurisdiction_id) VALUES ('county', 'inclusion', $1, 'j1')",
            json.loads(json.dumps(old)),
        )
        await pool.execute(
            "UPDATE zones SET geometry = $1, version = version + 1 WHERE id = 'county'", json.loads(json.dumps(new))
        )
        reg = await load_registry(pool, 9)
        versions = reg.zone_versions
        assert versions.zone.tolist() == [reg.zones.index_of["county"]]
        assert versions.index is not None
        assert versions.index.zones[0].geometry.equals(OLD_COUNTY.geometry)
        assert versions.valid_from[0] < versions.valid_until[0]
        # Only versions superseded within the window are kept.
        assert (await load_registry(pool, 9, versions_within_s=0)).zone_versions.index is None
