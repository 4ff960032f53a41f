"""The committed demo geofences follow the zone format in geofences/README.md."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import shapely

DEMO = Path(__file__).resolve().parents[2] / "geofences" / "demo"
ZONES = json.loads((DEMO / "zones.geojson").read_text("utf-8"))["features"]
JURISDICTIONS = json.loads((DEMO / "jurisdictions.json").read_text("utf-8"))["features"]
SCOPES = ("subject_id", "group_id", "jurisdiction_id")


@pytest.mark.parametrize("zone", ZONES, ids=[z["id"] for z in ZONES])
def test_zone_feature_format(zone: dict[str, Any]) -> None:
    assert set(zone) == {"type", "id", "geometry", "properties"} and zone["type"] == "Feature"
    p = zone["properties"]
    assert p["kind"] in ("inclusion", "exclusion") and isinstance(p["name"], str) and p["schedule"] is None
    assert sum(p.get(scope) is not None for scope in SCOPES) == 1
    is_circle = zone["geometry"]["type"] == "Point"
    assert ("radius_m" in p) == is_circle
    assert set(p) <= {"kind", "name", "radius_m", "schedule", *SCOPES}
    geometry = shapely.geometry.shape(zone["geometry"])
    assert geometry.is_valid
    assert -180 <= geometry.bounds[0] <= geometry.bounds[2] <= 180
    assert -90 <= geometry.bounds[1] <= geometry.bounds[3] <= 90


def test_county_is_one_irregular_polygon_of_one_to_three_thousand_vertices() -> None:
    county = next(z for z in ZONES if z["id"] == "zone-demo-county")
    assert county["properties"] == {
        "kind": "inclusion",
        "name": county["properties"]["name"],
        "jurisdiction_id": "demo-county",
        "schedule": None,
    }
    polygon = shapely.geometry.shape(county["geometry"])
    assert 1_000 <= shapely.get_num_coordinates(polygon) <= 3_000
    west, south, east, north = polygon.bounds
    assert 0.35 < east - west < 0.5 and 0.22 < north - south < 0.33  # ~40 km x 30 km at 30.3 N


def test_shared_exclusion_zones_lie_inside_the_county() -> None:
    county = shapely.geometry.shape(next(z for z in ZONES if z["id"] == "zone-demo-county")["geometry"])
    for zone in ZONES:
        if zone["properties"]["kind"] == "exclusion":
            assert county.contains(shapely.geometry.shape(zone["geometry"])), zone["id"]


def test_jurisdiction_tree_is_city_district_offices() -> None:
    kinds = {j["id"]: j["properties"]["kind"] for j in JURISDICTIONS}
    parents = {j["id"]: j["properties"]["parent_id"] for j in JURISDICTIONS}
    assert kinds["demo-city"] == "city" and parents["demo-city"] is None
    assert kinds["demo-county"] == "district" and parents["demo-county"] == "demo-city"
    offices = [j for j, kind in kinds.items() if kind == "office"]
    assert 3 <= len(offices) <= 4 and all(parents[o] == "demo-county" for o in offices)


def test_generator_reproduces_the_committed_files() -> None:
    path = DEMO.parent / "tools" / "make_demo.py"
    spec = importlib.util.spec_from_file_location("make_demo", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.one_feature_per_line(module.zones()) == (DEMO / "zones.geojson").read_bytes()
    assert module.one_feature_per_line(module.jurisdictions()) == (DEMO / "jurisdictions.json").read_bytes()
