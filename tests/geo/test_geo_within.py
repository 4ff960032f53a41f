"""ZoneIndex.within_m answers "is the point within d metres of the zone" exactly as measuring does."""

from __future__ import annotations

import math

import numpy as np
import shapely
from geo_strategies import county_polygon, haversine_scalar, points_near, zone_lists
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emwatch.geo.cells import METRES_PER_DEGREE
from emwatch.geo.zone_index import ZoneIndex
from emwatch.geo.zones import Zone


def measured_m(zone: Zone, lon: float, lat: float) -> float:
    """Distance to the zone (0 inside) the slow way: unprepared shapely distance, scalar haversine."""
    g = zone.geometry
    if zone.is_circle:
        return max(haversine_scalar(lat, lon, g.y, g.x) - float(zone.radius_m or 0.0), 0.0)
    degrees = float(shapely.distance(g, shapely.Point(lon, lat)))
    return degrees * METRES_PER_DEGREE * math.cos(math.radians(abs(lat)))


def check(zone_list: list[Zone], lon: np.ndarray, lat: np.ndarray, rng: np.random.Generator) -> int:
    """Compare within_m with measured distances on every (point, zone) pair; returns pairs compared."""
    index = ZoneIndex.build(zone_list)
    n, m = len(lon), len(zone_list)
    z = np.tile(np.arange(m, dtype=np.int32), n)
    p = np.repeat(np.arange(n), m)
    distance = np.array([measured_m(zone_list[i], lon[j], lat[j]) for i, j in zip(z, p, strict=True)])
    # radii straddling the true distance, plus 0 (inside only) and the typical GPS accuracies
    metres = np.where(rng.uniform(size=len(z)) < 0.5, distance * rng.uniform(0.5, 1.5, len(z)),
                      rng.choice([0.0, 8.0, 15.0, 60.0, 1000.0], len(z)))
    clear = np.abs(distance - metres) > 1e-6  # a tie within float rounding may go either way
    got = index.within_m(z, lon[p], lat[p], metres)
    assert (got[clear] == (distance <= metres)[clear]).all()
    return int(clear.sum())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_list=zone_lists(), seed=st.integers(0, 2**32 - 1))
def test_within_m_equals_measured_distance(zone_list: list[Zone], seed: int) -> None:
    rng = np.random.default_rng(seed)
    lon, lat = points_near(zone_list, rng, 60)
    check(zone_list, lon, lat, rng)


def test_within_m_against_a_county_outline() -> None:
    rng = np.random.default_rng(5)
    zone = Zone("county", "inclusion", county_polygon(2000), jurisdiction_id="hz")
    lon, lat = points_near([zone], rng, 400)
    assert check([zone], lon, lat, rng) > 100  # inside points with metres 0 are ties: skipped


def test_within_m_examples() -> None:
    square = Zone("sq", "exclusion", shapely.box(120.10, 30.30, 120.11, 30.31), subject_id="s")
    circle = Zone("c", "exclusion", shapely.Point(120.2, 30.3), radius_m=100.0, subject_id="s")
    index = ZoneIndex.build([square, circle])
    east_100m = 120.11 + 100 / (METRES_PER_DEGREE * math.cos(math.radians(30.305)))
    zone = np.array([0, 0, 0, 1, 1, 1], dtype=np.int32)
    lon = np.array([120.105, east_100m, east_100m, 120.2, 120.2, 120.2])
    lat = np.array([30.305, 30.305, 30.305, 30.3, 30.3018, 30.3018])  # ~200 m north of the centre
    metres = np.array([0.0, 99.0, 101.0, 0.0, 99.0, 101.0])
    assert index.within_m(zone, lon, lat, metres).tolist() == [True, False, True, True, False, True]
