"""Bulk geometry parsing: the same shapes, and the same verdicts, as parsing zones one by one."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest
import shapely

from emwatch.geo.geojson import ZoneError, zone_from_feature
from emwatch.geo.geojson_bulk import geometries_from_geojson, geometries_from_wkb

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


def wkb_polygon(ring: list[tuple[float, float]]) -> bytes:
    """A little-endian WKB Polygon of one ring, written by hand (shapely will not build a NaN ring)."""
    return struct.pack("<BIII", 1, 3, 1, len(ring)) + b"".join(struct.pack("<dd", x, y) for x, y in ring)


NAN, INF = float("nan"), float("inf")
DAMAGED_WKB: dict[str, bytes] = {
    "nan past the first coordinate": wkb_polygon([(120, 30), (121, NAN), (121, 31), (120, 31), (120, 30)]),
    "nan first": wkb_polygon([(NAN, 30), (121, 30), (121, 31), (NAN, 30)]),
    "infinite": wkb_polygon([(120, 30), (INF, 30), (121, 31), (120, 30)]),
    "lon out of range": wkb_polygon([(179, 30), (181, 30), (180, 31), (179, 30)]),
    "lat out of range": shapely.to_wkb(shapely.Point(120, -91)),
    "nan point": shapely.to_wkb(shapely.Point(120, NAN)),
    "line": shapely.to_wkb(shapely.LineString([(120, 30), (121, 31)])),
    "empty": shapely.to_wkb(shapely.Polygon()),
    "truncated": shapely.to_wkb(shapely.box(120, 30, 121, 31))[:30],
    "garbage": b"not wkb",
}


@pytest.mark.parametrize("name", ACCEPTED)
def test_wkb_of_an_accepted_geometry_gives_it_back(name: str) -> None:
    expected = one_by_one(ACCEPTED[name])
    geoms, ok = geometries_from_wkb([shapely.to_wkb(shapely.from_geojson(json.dumps(ACCEPTED[name])))])
    assert ok.tolist() == [True]
    assert shapely.equals_identical(geoms[0], expected)


@pytest.mark.parametrize("name", DAMAGED_WKB)
def test_damaged_wkb_is_rejected_not_raised(name: str) -> None:
    geoms, ok = geometries_from_wkb([shapely.to_wkb(shapely.box(120, 30, 121, 31)), DAMAGED_WKB[name]])
    assert ok.tolist() == [True, False]
    assert shapely.equals_identical(geoms[0], shapely.box(120, 30, 121, 31))
