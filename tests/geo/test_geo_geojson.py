"""Zones from GeoJSON: what is accepted, and the reason given for what is not."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import shapely

from emwatch.geo.geojson import ZoneError, zone_from_feature, zone_to_feature, zones_from_geojson

SQUARE = [[[120.10, 30.30], [120.11, 30.30], [120.11, 30.31], [120.10, 30.31], [120.10, 30.30]]]
HOLE = [[120.104, 30.304], [120.106, 30.304], [120.106, 30.306], [120.104, 30.304]]


def feature(geometry: dict[str, Any] | None = None, **props: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": "exclusion", "name": "school", "subject_id": "s1"}
    base.update(props)
    return {
        "type": "Feature",
        "id": "z1",
        "geometry": geometry or {"type": "Polygon", "coordinates": SQUARE},
        "properties": {k: v for k, v in base.items() if v is not ...},
    }


VALID = {
    "polygon": feature(),
    "polygon with hole": feature({"type": "Polygon", "coordinates": [SQUARE[0], HOLE]}),
    "multipolygon": feature(
        {"type": "MultiPolygon", "coordinates": [SQUARE, [[[121, 31], [121.1, 31], [121, 31.1], [121, 31]]]]}
    ),
    "circle": feature({"type": "Point", "coordinates": [120.1, 30.3]}, radius_m=250),
    "group scope, schedule, extra keys": feature(
        subject_id=..., group_id="g1", schedule={"days": ["mon"]}, colour="red", priority=2
    ),
    "jurisdiction inclusion": feature(kind="inclusion", subject_id=..., jurisdiction_id="hz"),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_feature_round_trips(name: str) -> None:
    zone = zone_from_feature(VALID[name])
    again = zone_from_feature(json.loads(json.dumps(zone_to_feature(zone))))
    assert again == zone
    assert shapely.equals_identical(again.geometry, zone.geometry)


def test_parsed_fields() -> None:
    zone = zone_from_feature(VALID["group scope, schedule, extra keys"])
    assert (zone.id, zone.kind, zone.name, zone.group_id, zone.subject_id) == (
        "z1",
        "exclusion",
        "school",
        "g1",
        None,
    )
    assert zone.schedule == {"days": ["mon"]}
    assert zone.properties == {"colour": "red", "priority": 2}
    circle = zone_from_feature(VALID["circle"])
    assert (
        circle.is_circle and circle.radius_m == 250.0 and circle.geometry.equals(shapely.Point(120.1, 30.3))
    )


def test_id_may_come_from_properties() -> None:
    f = feature(id="from-props")
    del f["id"]
    zone = zone_from_feature(f)
    assert zone.id == "from-props" and "id" not in zone.properties


def test_feature_collection_gives_all_zones_and_locates_errors() -> None:
    second = feature()
    second["id"] = "z2"
    zones = zones_from_geojson({"type": "FeatureCollection", "features": [feature(), second]})
    assert [z.id for z in zones] == ["z1", "z2"]
    with pytest.raises(ZoneError, match=r"features\[1\]: kind must be"):
        zones_from_geojson({"type": "FeatureCollection", "features": [feature(), feature(kind="bad")]})
    with pytest.raises(ZoneError, match="duplicate zone id 'z1'"):
        zones_from_geojson({"type": "FeatureCollection", "features": [feature(), feature()]})


def bowtie() -> dict[str, Any]:
    return {
        "type": "Polygon",
        "coordinates": [[[120, 30], [120.1, 30.1], [120.1, 30], [120, 30.1], [120, 30]]],
    }


def without_id() -> dict[str, Any]:
    f = feature()
    del f["id"]
    return f


INVALID: list[tuple[str, Any, str]] = [
    ("not a feature", {"type": "Polygon", "coordinates": SQUARE}, "type 'Feature'"),
    ("no properties", {**feature(), "properties": None}, "'properties' must be an object"),
    ("missing id", without_id(), "zone needs an id"),
    ("empty id", {**feature(), "id": ""}, "zone needs an id"),
    ("bad kind", feature(kind="forbidden"), "kind must be 'inclusion' or 'exclusion'"),
    ("missing kind", feature(kind=...), "kind must be"),
    ("name not a string", feature(name=3), "name must be a string"),
    ("missing geometry", {**feature(), "geometry": None}, "geometry is missing"),
    (
        "line geometry",
        feature({"type": "LineString", "coordinates": [[120, 30], [121, 31]]}),
        "geometry type",
    ),
    ("self-intersecting", feature(bowtie()), "invalid geometry: Self-intersection"),
    (
        "too few points",
        feature({"type": "Polygon", "coordinates": [[[120, 30], [121, 30], [120, 30]]]}),
        "Too few points",
    ),
    ("garbled coordinates", feature({"type": "Polygon", "coordinates": "abc"}), "malformed Polygon"),
    ("empty polygon", feature({"type": "Polygon", "coordinates": []}), "geometry is empty"),
    (
        "lat out of range",
        feature({"type": "Point", "coordinates": [120, 95]}, radius_m=5),
        "lat in [-90, 90]",
    ),
    (
        "lon out of range",
        feature({"type": "Point", "coordinates": [200, 30]}, radius_m=5),
        "lon in [-180, 180]",
    ),
    ("lat/lon swapped", feature({"type": "Point", "coordinates": [30.3, 120.1]}, radius_m=5), "[lon, lat]"),
    ("nan coordinate", feature({"type": "Point", "coordinates": [float("nan"), 30]}, radius_m=5), "finite"),
    ("point without radius", feature({"type": "Point", "coordinates": [120, 30]}), "needs radius_m"),
    ("zero radius", feature({"type": "Point", "coordinates": [120, 30]}, radius_m=0), "positive number"),
    ("text radius", feature({"type": "Point", "coordinates": [120, 30]}, radius_m="5"), "positive number"),
    ("radius on polygon", feature(radius_m=100), "only allowed with a Point"),
    ("no scope", feature(subject_id=...), "exactly one of subject_id, group_id, jurisdiction_id"),
    ("two scopes", feature(group_id="g1"), "found subject_id, group_id"),
    ("scope not a string", feature(subject_id=7), "subject_id must be a non-empty string"),
    ("schedule not an object", feature(schedule="weekdays"), "schedule must be an object or null"),
]


@pytest.mark.parametrize(("case", "obj", "reason"), INVALID, ids=[c[0] for c in INVALID])
def test_invalid_feature_is_rejected_with_reason(case: str, obj: Any, reason: str) -> None:
    with pytest.raises(ZoneError) as err:
        zone_from_feature(copy.deepcopy(obj))
    assert reason in str(err.value)
    assert isinstance(err.value, ValueError)  # the API maps ValueError subclasses to 422
