"""Shapes, zones and boundary-hugging points for the geo property tests."""

from __future__ import annotations

import math

import numpy as np
import shapely
from hypothesis import assume
from hypothesis import strategies as st
from numpy.typing import NDArray

from emwatch.geo.zones import Zone

LON0, LAT0 = 120.1, 30.3  # Hangzhou: where the pilot county is


def star_polygon(
    lon0: float, lat0: float, radius_deg: float, n: int, rng: np.random.Generator, wobble: float = 0.6
) -> shapely.Polygon:
    """A simple, usually concave polygon: vertices at sorted angles with noisy radii."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    theta = np.unique(theta)
    r = radius_deg * (1 - wobble * rng.uniform(0, 1, len(theta)))
    return shapely.Polygon(
        np.c_[lon0 + r * np.cos(theta) / math.cos(math.radians(lat0)), lat0 + r * np.sin(theta)]
    )


def county_polygon(n: int = 2000, seed: int = 7, radius_deg: float = 0.25) -> shapely.Polygon:
    """A county-like polygon: smooth large-scale lobes plus fine jagged edges, `n` vertices."""
    rng = np.random.default_rng(seed)
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = radius_deg * (
        1
        + 0.25 * np.sin(3 * theta + 1)
        + 0.15 * np.sin(7 * theta)
        + 0.05 * np.sin(23 * theta)
        + 0.02 * rng.standard_normal(n)
    )
    return shapely.Polygon(
        np.c_[LON0 + r * np.cos(theta) / math.cos(math.radians(LAT0)), LAT0 + r * np.sin(theta)]
    )


@st.composite
def polygon_geometries(draw: st.DrawFn) -> shapely.Geometry:
    """Concave polygons, polygons with a hole, and two-part multipolygons, 50 m to 4 km across."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lon = LON0 + draw(st.floats(-0.05, 0.05))
    lat = LAT0 + draw(st.floats(-0.05, 0.05))
    size = draw(st.floats(0.0005, 0.02))
    n = draw(st.integers(3, 40))
    shape = draw(st.sampled_from(["concave", "holed", "multi"]))
    if shape == "concave":
        geom = star_polygon(lon, lat, size, n, rng)
    elif shape == "holed":
        shell = star_polygon(lon, lat, size, n, rng, wobble=0.3)
        hole = star_polygon(lon, lat, 0.3 * size, max(n // 2, 3), rng, wobble=0.5)
        geom = shapely.Polygon(shell.exterior.coords, [hole.exterior.coords])
    else:  # the second part starts >= 1.8 sizes east: disjoint
        a = star_polygon(lon, lat, size, n, rng)
        geom = shapely.MultiPolygon([a, star_polygon(lon + 3 * size, lat, size, n, rng)])
    assume(shapely.is_valid(geom))  # sparse random angles can fold a star onto itself
    return geom


@st.composite
def zones(draw: st.DrawFn, i: int) -> Zone:
    """A polygon zone or a circle, of either kind, shared or per subject."""
    kind = draw(st.sampled_from(["inclusion", "exclusion"]))
    subject = draw(st.sampled_from([None, "s1"]))
    scope = {"subject_id": subject} if subject else {"jurisdiction_id": "j1"}
    if draw(st.booleans()):
        centre = shapely.Point(LON0 + draw(st.floats(-0.05, 0.05)), LAT0 + draw(st.floats(-0.05, 0.05)))
        return Zone(f"z{i}", kind, centre, radius_m=draw(st.floats(10, 3000)), **scope)
    return Zone(f"z{i}", kind, draw(polygon_geometries()), **scope)


@st.composite
def zone_lists(draw: st.DrawFn) -> list[Zone]:
    return [draw(zones(i)) for i in range(draw(st.integers(1, 6)))]


def points_near(
    zone_list: list[Zone], rng: np.random.Generator, n: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(lon, lat) arrays: most points within metres of some zone boundary, some exactly on a vertex
    or edge, a few far away."""
    edge_pts = []
    for z in zone_list:
        if z.is_circle:
            assert z.radius_m is not None
            ring = shapely.buffer(
                z.geometry, z.radius_m / 111_320 / math.cos(math.radians(LAT0)), quad_segs=64
            )
            edge_pts.append(shapely.get_coordinates(ring))
            edge_pts.append(_circle_edge(z, rng, n // 4))
        else:
            edge_pts.append(shapely.get_coordinates(z.geometry))
            b = shapely.boundary(z.geometry)
            t = rng.uniform(0, 1, n // 4) * b.length
            edge_pts.append(shapely.get_coordinates(shapely.line_interpolate_point(b, t)))
    base = np.concatenate(edge_pts)
    pick = base[rng.integers(0, len(base), n)]
    scale = 10.0 ** rng.uniform(-9, -2.5, n)[:, None]  # from 0.1 mm to ~300 m off the boundary
    jitter = rng.standard_normal((n, 2)) * scale
    exact = rng.uniform(0, 1, n) < 0.1
    jitter[exact] = 0.0
    far = rng.uniform(0, 1, n) < 0.1
    jitter[far] = rng.uniform(-0.2, 0.2, (int(far.sum()), 2))
    xy = pick + jitter
    return xy[:, 0].copy(), xy[:, 1].copy()


def _circle_edge(z: Zone, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
    """Points at radius * (1 ± 1e-9 .. 1e-2) from a circle's centre."""
    assert z.radius_m is not None
    bearing = rng.uniform(0, 2 * np.pi, n)
    d = z.radius_m * (1 + rng.choice([-1, 1], n) * 10.0 ** rng.uniform(-9, -2, n))
    dlat = d * np.cos(bearing) / 111_195.0
    dlon = d * np.sin(bearing) / (111_195.0 * math.cos(math.radians(z.geometry.y)))
    return np.c_[z.geometry.x + dlon, z.geometry.y + dlat]


def haversine_scalar(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Reference great-circle distance (m), one pair at a time."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_007.180918475 * math.asin(math.sqrt(min(1.0, a)))
