"""Which fixes violate which zones, computed independently of the simulator with shapely/haversine."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from device_sim.geo import haversine_m
from device_sim.world import World

BoolArray = npt.NDArray[np.bool_]


def inside_zone(zone: dict[str, Any], lon: np.ndarray, lat: np.ndarray) -> BoolArray:
    """Whether each point lies in the zone: polygon containment, or haversine distance for circles."""
    geometry = shapely.geometry.shape(zone["geometry"])
    radius = zone["properties"].get("radius_m")
    if radius is not None:
        return np.asarray(haversine_m(geometry.x, geometry.y, lon, lat) <= radius)
    return np.asarray(shapely.contains_xy(geometry, lon, lat))


def zone_applies(zone: dict[str, Any], world: World, subject: np.ndarray) -> BoolArray:
    """Whether the zone applies to each subject (everyone in the county, group members, or one subject)."""
    p = zone["properties"]
    if p.get("subject_id") is not None:
        return np.array([world.subjects.ids[s] == p["subject_id"] for s in subject], dtype=bool)
    if p.get("group_id") is not None:
        return np.array([p["group_id"] in world.subjects.groups[s] for s in subject], dtype=bool)
    return np.ones(len(subject), dtype=bool)


def violations(world: World, subject: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> dict[str, BoolArray]:
    """Per zone id, which fixes break it: outside an inclusion zone, or inside an exclusion zone."""
    out: dict[str, BoolArray] = {}
    for zone in [*world.geography.shared_zones, *world.own_zones]:
        applies = zone_applies(zone, world, subject)
        inside = inside_zone(zone, lon, lat)
        broken = ~inside if zone["properties"]["kind"] == "inclusion" else inside
        out[str(zone["id"])] = applies & broken
    return out
