"""Warning rings: an exclusion zone with `buffer_m` raises `zone_approach` before anyone is inside."""

from __future__ import annotations

import pytest
import shapely

from emwatch.geo.zones import Zone
from emwatch.rules.engine import RuleConfig
from tests.rules.harness import COUNTY, World

# The school of the harness, shared by the whole jurisdiction, with a 200 m warning ring.
SCHOOL_RING = Zone("school", "exclusion", shapely.box(120.10, 30.10, 120.11, 30.11), jurisdiction_id="j1",
                   properties={"buffer_m": 200})
# The victim's home as the subject's own circle, with a 300 m ring.
VICTIM_RING = Zone("victim", "exclusion", shapely.Point(120.05, 30.05), radius_m=200, subject_id="s1",
                   properties={"buffer_m": 300})


@pytest.mark.parametrize(("positions", "expected"), [
    (["in"], []),
    (["near_school"], [("alert", "zone_approach", "school")]),                     # ~29 m outside: in the ring
    (["near_school", "in"], [("alert", "zone_approach", "school"), ("cleared", "zone_approach", "school")]),
    (["school"], [("alert", "zone_approach", "school"), ("alert", "zone_entry", "school")]),
    (["victim"], [("alert", "zone_approach", "victim"), ("alert", "zone_entry", "victim")]),
    (["in", "in_victim_ring"], [("alert", "zone_approach", "victim")]),
])
def test_approach(positions: list[str], expected: list[tuple[str, str, str]]) -> None:
    world = World(zones=[COUNTY, SCHOOL_RING, VICTIM_RING], config=RuleConfig(max_speed_kmh=1e12))
    for i, position in enumerate(positions):
        world.send((i * 10, position, {"acc": 5.0}))
    assert sorted((e.type, e.rule, e.zone_id or "") for e in world.events) == sorted(expected)


@pytest.mark.parametrize(("kind", "buffer_m"), [("inclusion", 100), ("exclusion", 0), ("exclusion", "100"), ("exclusion", True)])
def test_bad_warning_rings_are_refused(kind: str, buffer_m: object) -> None:
    from emwatch.geo.geojson import ZoneError, zone_from_feature

    feature = {"type": "Feature", "id": "z", "geometry": {"type": "Point", "coordinates": [120.0, 30.0]},
               "properties": {"kind": kind, "radius_m": 50, "subject_id": "s1", "buffer_m": buffer_m}}
    with pytest.raises(ZoneError, match="buffer_m"):
        zone_from_feature(feature)
