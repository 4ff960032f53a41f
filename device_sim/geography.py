"""The demo geofences: jurisdictions and shared zones, in lon/lat as published and in local metres."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from device_sim.geo import FloatArray, LocalFrame

DEFAULT_GEOFENCE_DIR = Path(__file__).resolve().parent.parent / "geofences" / "demo"

# Ordinary paths keep this far from every boundary a subject must not cross: lateral wander (60 m)
# plus clipped GPS noise (<= 120 m) then still cannot put a fix on the wrong side.
SAFE_MARGIN_M = 250.0


@dataclass(frozen=True, slots=True)
class Geography:
    """The demo geofences, in lon/lat as published and in local metres for movement."""

    frame: LocalFrame
    jurisdictions: list[dict[str, Any]]  # GeoJSON Point Features, parents before children
    shared_zones: list[dict[str, Any]]  # Features exactly as POSTed to /api/zones
    county: shapely.Geometry  # union of the inclusion zones, lon/lat
    county_xy: shapely.Geometry
    exclusions_xy: list[shapely.Geometry]  # every shared exclusion zone, circles as polygons
    safe_xy: shapely.Geometry  # county shrunk and exclusions grown by SAFE_MARGIN_M (prepared)
    offices: list[str]
    office_x: FloatArray
    office_y: FloatArray
    office_radius_m: FloatArray

    @property
    def exclusion_features(self) -> list[dict[str, Any]]:
        """The shared exclusion zones, in the same order as `exclusions_xy`."""
        return [z for z in self.shared_zones if z["properties"]["kind"] == "exclusion"]


def load_geography(directory: Path | None = None) -> Geography:
    """Read `jurisdictions.json` and `zones.geojson` from `directory` (default: geofences/demo)."""
    directory = directory or DEFAULT_GEOFENCE_DIR
    jurisdictions = json.loads((directory / "jurisdictions.json").read_text("utf-8"))["features"]
    zones = json.loads((directory / "zones.geojson").read_text("utf-8"))["features"]
    inclusions = [
        shapely.geometry.shape(z["geometry"]) for z in zones if z["properties"]["kind"] == "inclusion"
    ]
    county = shapely.union_all(inclusions)
    c = county.centroid
    frame = LocalFrame(round(c.x, 2), round(c.y, 2))
    county_xy = frame.project(county)
    exclusions_xy = [zone_area_xy(frame, z) for z in zones if z["properties"]["kind"] == "exclusion"]
    safe_xy = county_xy.buffer(-SAFE_MARGIN_M).difference(
        shapely.union_all([e.buffer(SAFE_MARGIN_M) for e in exclusions_xy])
    )
    shapely.prepare(safe_xy)
    offices = [j for j in jurisdictions if j["properties"]["kind"] == "office"]
    ox, oy = frame.to_xy(
        np.array([o["geometry"]["coordinates"][0] for o in offices]),
        np.array([o["geometry"]["coordinates"][1] for o in offices]),
    )
    return Geography(
        frame=frame,
        jurisdictions=jurisdictions,
        shared_zones=zones,
        county=county,
        county_xy=county_xy,
        exclusions_xy=exclusions_xy,
        safe_xy=safe_xy,
        offices=[o["id"] for o in offices],
        office_x=ox,
        office_y=oy,
        office_radius_m=np.array([float(o["properties"].get("settlement_radius_m", 2000)) for o in offices]),
    )


def zone_area_xy(frame: LocalFrame, feature: dict[str, Any]) -> shapely.Geometry:
    """A zone's area in local metres; a circle zone (Point + radius_m) becomes a 64-gon."""
    geom = frame.project(shapely.geometry.shape(feature["geometry"]))
    radius = feature["properties"].get("radius_m")
    return geom.buffer(float(radius), quad_segs=16) if radius is not None else geom
