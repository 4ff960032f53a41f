"""Bulk geometry parsing: the same shapes, and the same verdicts, as parsing zones one by one."""

from __future__ import annotations

import json
from typing import Any

import pytest
import shapely

from emwatch.geo.geojson import ZoneError, zone_from_feature
from emwatch.geo.geojson_bulk import geometries_from_geojson

SQUARE = [[[120.10, 30.30], [120.11, 30.30], [120.11, 30.31], [120.10, 30.31], [120.10, 30.30]]]
HOLE = [[120.104, 30.304], [120.106, 30.304], [120.106, 30.306], [120.104, 30.304]]

ACCEPTED: dict[str, dict[str, Any]] = {
    "polygon": {"type": "Polygon", "coordinates": SQUARE},
    "polygon with hole": {"type": "Polygon", "coordinates": [SQUARE[0], HOLE]},
    "multipolygon": {"type": "MultiPolygon", "coordinates": [SQUARE, [[[121, 31], [121.1, 31], [121, 31.1], [121, 31]]]]},
    "point": {"type": "Point", "coordinates": [120.1, 30.3]},
    "3D point (z dropped)": {"type": "Point", "coordinates": [120.1, 30.3, 12.0]},
}
REJECTED: dict[str, Any] = {
    "line": {"type": "LineString", "coordinates": [[120, 30], [121, 31]]},
    "collection": {"type": "GeometryCollection", "geometries": [{"type": "Point", "coordinates": [120, 30]}]},
    "self-intersecting": {"type": "Polygon", "coordinates": [[[120, 30], [120.1, 30.1], [120.1, 30], [120, 30.1], [120, 30]]]},
    "too few points": {"type": "Polygon", "coordinates": [[[120, 30], [121, 30], [120, 30]]]},
    "garbled coordinates": {"type": "Polygon", "coordinates": "abc"},
    "empty polygon": {"type": "Polygon", "coordinates": []},
    "lat out of range": {"type": "Point", "coordinates": [120, 95]},
    "lon out of range": {"type": "Point", "coordinates": [200, 30]},
    "nan coordinate": {"type": "Point", "coordinates": [float("nan"), 30]},
    "not an object": [1, 2],
}


def one_by_one(geometry: Any) -> shapely.Geometry | None:
    """The geometry zone_from_feature makes of it, or None when it rejects it."""
    props: dict[str, Any] = {"kind": "exclusion", "subject_id": "s1"}
    if isinstance(geometry, dict) and geometry.get("type") == "Point":
        props["radius_m"] = 100
    try:
        return zone_from_feature({"type": "Feature", "id": "z", "geometry": geometry, "properties": props}).geometry
    except ZoneError:
        return None


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_geometry_is_the_one_zone_from_feature_makes(name: str) -> None:
    geoms, ok = geometries_from_geojson([json.dumps(ACCEPTED[name])])
    expected = one_by_one(ACCEPTED[name])
    assert expected is not None and ok.tolist() == [True]
    assert shapely.equals_identical(geoms[0], expected)


@pytest.mark.parametrize("name", REJECTED)
def test_rejected_geometry_is_one_zone_from_feature_rejects(name: str) -> None:
    _, ok = geometries_from_geojson([json.dumps(REJECTED[name])])
    assert ok.tolist() == [False]
    assert one_by_one(REJECTED[name]) is None


def test_malformed_text_is_rejected_not_raised() -> None:
    _, ok = geometries_from_geojson(['{"type": "Polygon", "coordinates": [[[120, 30]', "null", ""])
    assert ok.tolist() == [False, False, False]


def test_mixed_batch_keeps_order_and_rejects_only_the_bad_ones() -> None:
    items = [ACCEPTED["polygon"], REJECTED["self-intersecting"], ACCEPTED["point"], REJECTED["line"],
             ACCEPTED["multipolygon"]]
    geoms, ok = geometries_from_geojson([json.dumps(g) for g in items])
    assert ok.tolist() == [True, False, True, False, True]
    for i in (0, 2, 4):
        assert shapely.equals_identical(geoms[i], one_by_one(items[i]))


def test_no_texts() -> None:
    geoms, ok = geometries_from_geojson([])
    assert len(geoms) == 0 and len(ok) == 0
