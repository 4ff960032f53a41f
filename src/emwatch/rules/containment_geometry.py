"""One (point, zone) containment answer, compiled: ZoneIndex.contains, then accuracy `classify`.

The arithmetic is the numpy path's (geo/zone_index.py, rules/accuracy.py) operation by operation; only
sin/cos/asin come from libm rather than numpy's SIMD loops and may round differently in the last bit.
A comparison that close to its limit (`_unsure`, ~1e-9) is not answered here but flagged NEEDS_REFERENCE
for the numpy path, so the answers are the same bit for bit. Polygons too large for PolygonRings (a
county) are answered from `BandedPolygons`: the same per-edge arithmetic over only the edges that can
matter, found by horizontal band.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.cells import EARTH_RADIUS_M, METRES_PER_DEGREE, haversine_m_one
from emwatch.geo.polygon_rings import _point_segment, _polygon_location, _ring_location
from emwatch.jit import cached_njit

SETTLED, NEEDS_CONTAINS, NEEDS_REFERENCE = 0, 1, 2
NEEDS_DISTANCE = 3  # pair_answer's: the walk measures, distance_answer finishes (never returned)

_D2R = math.pi / 180.0  # what np.radians multiplies by
_ARC_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180  # as in geo/zone_index.py
# Half-widths of the bands where libm's and numpy's sin/cos may round a comparison differently.
_REL, _ABS_M, _ABS_DEG = 1e-9, 1e-6, 1e-11
_EDGES_PER_BAND = 4  # bands per banded polygon: its edges / this


def banded_polygons(polygons: NDArray[np.object_]) -> tuple[NDArray[Any], ...]:
    """BandedPolygons of shapely `polygons` (valid Polygons without holes): for polygon p, its shell
    coordinates x/y[coord_start[p]:coord_start[p + 1]], and per horizontal band of its height the edges
    whose y range meets the band (edge k: vertices k - 1 to k)."""
    if len(polygons) == 0:
        ints, floats = np.zeros(1, np.int64), np.empty(0)
        return ints, floats, floats, floats, floats, ints, ints, np.empty(0, np.int64)
    coords, owner = shapely.get_coordinates(shapely.get_exterior_ring(polygons), return_index=True)
    coord_start = np.zeros(len(polygons) + 1, np.int64)
    np.cumsum(np.bincount(owner, minlength=len(polygons)), out=coord_start[1:])
    xs, ys = np.ascontiguousarray(coords[:, 0]), np.ascontiguousarray(coords[:, 1])
    n_bands = np.maximum(np.diff(coord_start) // _EDGES_PER_BAND, 1)
    y0 = np.minimum.reduceat(ys, coord_start[:-1])
    y1 = np.maximum.reduceat(ys, coord_start[:-1])
    per_band = n_bands / np.where(y1 > y0, y1 - y0, 1.0)
    band_base = np.zeros(len(polygons) + 1, np.int64)
    np.cumsum(n_bands, out=band_base[1:])
    edge_start, edges = _band_edges(coord_start, ys, y0, per_band, band_base)
    return coord_start, xs, ys, y0, per_band, band_base, edge_start, edges


@cached_njit(inline="always")
def _band(y: float, y0: float, per_band: float, n: int) -> int:
    """The band of y: monotonic in y, so an edge spanning y is listed in y's band."""
    v = (y - y0) * per_band
    if not v >= 0.0:
        return 0
    return n - 1 if v >= n else int(v)


@cached_njit()
def _band_edges(coord_start: Any, ys: Any, y0: Any, per_band: Any, band_base: Any) -> tuple[Any, Any]:
    """CSR (edge_start, edges) over all polygons' bands."""
    count = np.zeros(band_base[-1] + 1, np.int64)
    for p in range(len(coord_start) - 1):
        n = band_base[p + 1] - band_base[p]
        for k in range(coord_start[p] + 1, coord_start[p + 1]):
            lo = _band(min(ys[k - 1], ys[k]), y0[p], per_band[p], n)
            hi = _band(max(ys[k - 1], ys[k]), y0[p], per_band[p], n)
            for b in range(lo, hi + 1):
                count[band_base[p] + b + 1] += 1
    edge_start = np.cumsum(count)
    edges = np.empty(edge_start[-1], np.int64)
    fill = edge_start[:-1].copy()
    for p in range(len(coord_start) - 1):
        n = band_base[p + 1] - band_base[p]
        for k in range(coord_start[p] + 1, coord_start[p + 1]):
            lo = _band(min(ys[k - 1], ys[k]), y0[p], per_band[p], n)
            hi = _band(max(ys[k - 1], ys[k]), y0[p], per_band[p], n)
            for b in range(lo, hi + 1):
                edges[fill[band_base[p] + b]] = k
                fill[band_base[p] + b] += 1
    return edge_start, edges


@cached_njit(_nrt=False)
def _banded_location(bt: Any, p: int, x: float, y: float) -> int:
    """geo.polygon_rings' _ring_location for banded polygon p, over the edges of y's band: an edge whose
    y range misses y neither crosses the ray from (x, y) nor holds the point, so the answer is the same."""
    _, xs, ys, y0, per_band, band_base, edge_start, edges = bt
    b = band_base[p] + _band(y, y0[p], per_band[p], band_base[p + 1] - band_base[p])
    crossings = 0
    for e in range(edge_start[b], edge_start[b + 1]):
        k = edges[e]
        loc = _ring_location(xs, ys, k - 1, k + 1, x, y)
        if loc == 2:
            return 2
        crossings += loc
    return crossings & 1


@cached_njit(_nrt=False)
def _banded_distance(bt: Any, p: int, x: float, y: float, limit: float) -> float:
    """_ring_distance for banded polygon p when it is at most `limit`, else some distance above `limit`:
    the nearest of the edges within a margin of `limit` in y (the others are farther than `limit`)."""
    if _banded_location(bt, p, x, y) != 0:
        return 0.0
    _, xs, ys, y0, per_band, band_base, edge_start, edges = bt
    n = band_base[p + 1] - band_base[p]
    reach = limit * (1 + 1e-6) + 1e-12
    best = np.inf
    for b in range(_band(y - reach, y0[p], per_band[p], n), _band(y + reach, y0[p], per_band[p], n) + 1):
        at = band_base[p] + b
        for e in range(edge_start[at], edge_start[at + 1]):
            k = edges[e]
            best = min(best, _point_segment(x, y, xs[k - 1], ys[k - 1], xs[k], ys[k]))
    # past `reach` the nearest edge may be one not looked at, but it is farther than `limit` all the same
    return min(best, reach)


@cached_njit(_nrt=False)
def _ring_distance(ring_start: Any, coord_start: Any, xs: Any, ys: Any, p: int, x: float, y: float) -> float:
    """geo.polygon_rings' distance for one point: 0 inside or on polygon p, else to its nearest edge."""
    if _polygon_location(ring_start, coord_start, xs, ys, p, x, y) != 0:
        return 0.0
    best = np.inf
    for r in range(ring_start[p], ring_start[p + 1]):
        for k in range(coord_start[r] + 1, coord_start[r + 1]):
            best = min(best, _point_segment(x, y, xs[k - 1], ys[k - 1], xs[k], ys[k]))
    return best


@cached_njit(inline="always")
def _unsure(v: float, limit: float, abs_tol: float) -> bool:
    return abs(v - limit) <= _REL * (abs(v) + abs(limit)) + abs_tol


@cached_njit(_nrt=False)
def polygon_location(rt: Any, ring: int, x: float, y: float) -> int:
    """0 exterior, 1 interior, 2 boundary of the polygon at `ring` (pair_answer's `ring`; not -1) of
    rt = (PolygonRings columns..., BandedPolygons)."""
    ring_start, coord_start, xs, ys, bt = rt
    if ring >= 0:
        return int(_polygon_location(ring_start, coord_start, xs, ys, ring, x, y))
    return int(_banded_location(bt, -2 - ring, x, y))


@cached_njit(_nrt=False)
def polygon_distance(rt: Any, ring: int, x: float, y: float, limit: float) -> float:
    """Planar distance from the point to the polygon at `ring` (0 inside), exact up to `limit`."""
    ring_start, coord_start, xs, ys, bt = rt
    if ring >= 0:
        return float(_ring_distance(ring_start, coord_start, xs, ys, ring, x, y))
    return float(_banded_distance(bt, -2 - ring, x, y, limit))


# Scalars only: a call passing arrays copies each one's descriptor (seven words), which cost more than
# most answers; the walk looks up a polygon's location or distance itself, in the few pairs that need one.
@cached_njit()
def pair_answer(
    x: float, y: float, r: float, trusted: bool, circle: bool, inclusion: bool, ring: int, a: float, b: float,
    c: float, d: float, interior_hit: bool, location: int,
) -> tuple[int, bool, bool, bool, float]:
    """(status, inside, breach, confirmed, degrees) of one point against one zone: ZoneIndex.contains, then
    classify. (a, b, c) is a circle's (centre lat, centre lon, radius), else (a, b, c, d) the polygon's
    bbox (min lon, min lat, max lon, max lat); `ring` its row in PolygonRings, -2 - its row in the
    BandedPolygons, or -1 (a shapely geometry); `interior_hit` whether the point's cell is one wholly
    inside the polygon; `location` polygon_location's answer where the point is in the bbox, no interior
    hit and ring != -1. NEEDS_DISTANCE: finish with distance_answer(polygon_distance(.., degrees), ..)."""
    inside, centre_m, lat_gap_m = False, -1.0, 0.0
    if circle:
        c_lat, c_lon, radius = a, b, c
        # A great-circle distance is at least R·|Δφ| (geo/zone_index.py): far in latitude, no trigonometry
        lat_gap_m = abs(y - c_lat) * _ARC_M_PER_DEG
        if lat_gap_m <= radius * (1 + 1e-9) + 1e-6:
            centre_m = haversine_m_one(y, x, c_lat, c_lon)
            if _unsure(centre_m, radius, _ABS_M):
                return NEEDS_REFERENCE, False, False, False, 0.0
            inside = centre_m <= radius
    elif a <= x <= c and b <= y <= d:
        if interior_hit:
            inside = True
        elif ring != -1:
            inside = location == 1
        else:
            return NEEDS_CONTAINS, False, False, False, 0.0
    breach = inside != inclusion
    confirmed = breach and trusted
    if inside or (inclusion and not trusted):
        # an untrusted exit stays unconfirmed whatever the distance
        return SETTLED, inside, breach, confirmed, 0.0
    # Outside: an inclusion exit is confirmed when the circle is wholly out; an exclusion zone is
    # possibly entered when the circle reaches it (rules/accuracy.py, with its bbox pre-test).
    if circle:
        if lat_gap_m > (radius + r) * (1 + 1e-9) + 1e-6:
            within = False
        else:
            if centre_m < 0:
                centre_m = haversine_m_one(y, x, c_lat, c_lon)
            gap = max(centre_m - radius, 0.0)
            if _unsure(gap, r, _ABS_M) or (not inclusion and _unsure(centre_m, radius + r, _ABS_M)):
                return NEEDS_REFERENCE, False, False, False, 0.0
            within = gap <= r and (inclusion or centre_m <= radius + r)
        return distance_answer(0.0, -1.0, inclusion, inside, breach, confirmed, within)
    if not inclusion:
        pad_lat = r / METRES_PER_DEGREE
        if not (b - pad_lat <= y <= d + pad_lat):
            return SETTLED, inside, breach, confirmed, 0.0
        pad_lon = pad_lat / max(math.cos(abs(y) * _D2R), 0.01)
        lo, hi = a - pad_lon, c + pad_lon
        if _unsure(x, lo, _ABS_DEG) or _unsure(x, hi, _ABS_DEG):
            return NEEDS_REFERENCE, False, False, False, 0.0
        if not lo <= x <= hi:
            return SETTLED, inside, breach, confirmed, 0.0
    if ring == -1:
        return NEEDS_REFERENCE, False, False, False, 0.0
    degrees = r / (METRES_PER_DEGREE * max(math.cos(abs(y) * _D2R), 1e-300))
    return NEEDS_DISTANCE, inside, breach, confirmed, degrees


@cached_njit()
def distance_answer(
    distance: float, degrees: float, inclusion: bool, inside: bool, breach: bool, confirmed: bool,
    within: bool = False,
) -> tuple[int, bool, bool, bool, float]:
    """pair_answer's end for a point outside the zone, `distance` (degrees) from it: confirmed or
    possibly entered by whether the accuracy circle reaches it. `degrees` < 0: `within` is known."""
    if degrees >= 0:
        if _unsure(distance, degrees, _ABS_DEG * 1e-3):
            return NEEDS_REFERENCE, False, False, False, 0.0
        within = distance <= degrees
    if inclusion:
        return SETTLED, inside, breach, confirmed and not within, 0.0
    return SETTLED, inside, within, confirmed, 0.0
