"""Accuracy-aware containment: a fix is a circle of uncertainty, not a point.

Inclusion zone: an exit is *confirmed* only when the whole circle is outside. Exclusion zone: an
entry is *confirmed* when the fix point is inside, *possible* when the circle only touches the zone.
A cell-tower (LBS) fix never confirms anything.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import haversine_m
from emwatch.geo.zone_index import ZoneIndex

SRC_LBS = 2  # protocol.SOURCE_CODES["lbs"]
METRES_PER_DEGREE = 111_320.0
# Typical horizontal error when a device reports no `acc` (gps, wifi, lbs): field figures for
# bracelets outdoors, Wi-Fi positioning, and cell-tower fallback.
DEFAULT_ACCURACY_M: tuple[float, float, float] = (15.0, 60.0, 1000.0)


def accuracy_m(acc: NDArray[np.float32], src: NDArray[np.int8]) -> NDArray[np.float64]:
    """Each fix's uncertainty radius: its own `acc`, else the default for its source."""
    default = np.asarray(DEFAULT_ACCURACY_M)[src]
    return np.where(np.isnan(acc), default, acc).astype(np.float64)


def distance_to_zone_m(
    zones: ZoneIndex, zone: NDArray[np.int32], lon: NDArray[np.float64], lat: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Distance from each point to its zone's boundary region (0 inside), in metres, never over-estimated."""
    out = np.zeros(len(zone))
    circle = zones.is_circle[zone]
    if circle.any():
        z = zone[circle]
        centre = haversine_m(lat[circle], lon[circle], zones.centre_lat[z], zones.centre_lon[z])
        out[circle] = np.maximum(centre - zones.radius_m[z], 0.0)
    poly = ~circle
    if poly.any():
        degrees = zones.planar_distance(zone[poly], lon[poly], lat[poly])
        # A degree of longitude is the shortest degree at this latitude: the conversion can only shrink.
        out[poly] = degrees * METRES_PER_DEGREE * np.cos(np.radians(np.abs(lat[poly])))
    return out


def classify(
    zones: ZoneIndex,
    zone: NDArray[np.int32],
    lon: NDArray[np.float64],
    lat: NDArray[np.float64],
    inside: NDArray[np.bool_],
    radius_m: NDArray[np.float64],
    src: NDArray[np.int8],
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """(breach, confirmed) for each (fix, zone) pair given exact point containment."""
    inclusion = zones.kind_is_inclusion[zone]
    trusted = src != SRC_LBS
    breach = np.where(inclusion, ~inside, inside)
    confirmed = breach & trusted

    exited = np.flatnonzero(inclusion & ~inside)
    if len(exited):
        # the same test as distance_to_zone_m(...) > radius, without measuring (prepared index)
        far = ~zones.within_m(zone[exited], lon[exited], lat[exited], radius_m[exited])
        confirmed[exited] &= far

    # Outside an exclusion zone but close enough that the circle may reach in: only then measure.
    outside = np.flatnonzero(~inclusion & ~inside)
    near_idx = outside[_within_bbox(zones, zone[outside], lon[outside], lat[outside], radius_m[outside])]
    if len(near_idx):
        touches = zones.within_m(zone[near_idx], lon[near_idx], lat[near_idx], radius_m[near_idx])
        breach[near_idx[touches]] = True
    return breach, confirmed


def _within_bbox(
    zones: ZoneIndex, zone: NDArray[np.int32], lon: NDArray[np.float64], lat: NDArray[np.float64],
    radius_m: NDArray[np.float64],
) -> NDArray[np.bool_]:
    pad_lat = radius_m / METRES_PER_DEGREE
    pad_lon = pad_lat / np.maximum(np.cos(np.radians(np.abs(lat))), 0.01)
    in_box = (
        (lon >= zones.min_lon[zone] - pad_lon) & (lon <= zones.max_lon[zone] + pad_lon)
        & (lat >= zones.min_lat[zone] - pad_lat) & (lat <= zones.max_lat[zone] + pad_lat)
    )  # False for circles: their bbox fields are NaN
    # Circles: a cheap haversine bound instead of a bbox, computed for the circle rows only.
    c = np.flatnonzero(zones.is_circle[zone])
    zc = zone[c]
    centre_m = haversine_m(lat[c], lon[c], zones.centre_lat[zc], zones.centre_lon[zc])
    in_box[c] = centre_m <= zones.radius_m[zc] + radius_m[c]
    return np.asarray(in_box)
