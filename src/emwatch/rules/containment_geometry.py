"""One (point, zone) containment answer, compiled: ZoneIndex.contains, then accuracy `classify`.

The arithmetic is the numpy path's (geo/zone_index.py, rules/accuracy.py) operation by operation; only
sin/cos/asin come from libm rather than numpy's SIMD loops and may round differently in the last bit.
A comparison that close to its limit (`_unsure`, ~1e-9) is not answered here but flagged NEEDS_REFERENCE
for the numpy path, so the answers are the same bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from emwatch.geo.cells import EARTH_RADIUS_M, METRES_PER_DEGREE
from emwatch.geo.polygon_rings import _point_segment, _polygon_location
from emwatch.jit import cached_njit

SETTLED, NEEDS_CONTAINS, NEEDS_REFERENCE = 0, 1, 2

_D2R = math.pi / 180.0  # what np.radians multiplies by
_ARC_M_PER_DEG = EARTH_RADIUS_M * math.pi / 180  # as in geo/zone_index.py
# Half-widths of the bands where libm's and numpy's sin/cos may round a comparison differently.
_REL, _ABS_M, _ABS_DEG = 1e-9, 1e-6, 1e-11


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


@cached_njit(inline="always")
def _haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """geo.cells.haversine_m for one pair, in the same operation order."""
    p1, l1, p2, l2 = lat1 * _D2R, lon1 * _D2R, lat2 * _D2R, lon2 * _D2R
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


# Compiled without reference counting (numba's NRT), like the walk's other helpers that take arrays.
@cached_njit(_nrt=False)
def pair_answer(
    x: float, y: float, r: float, trusted: bool, circle: bool, inclusion: bool, ring: int, a: float, b: float,
    c: float, d: float, interior_hit: bool, ring_start: Any, coord_start: Any, xs: Any, ys: Any,
) -> tuple[int, bool, bool, bool]:
    """(status, inside, breach, confirmed) of one point against one zone: ZoneIndex.contains, then
    classify. (a, b, c) is a circle's (centre lat, centre lon, radius), else (a, b, c, d) the polygon's
    bbox (min lon, min lat, max lon, max lat); `ring` its row in PolygonRings or -1; `interior_hit`
    whether the point's cell is one wholly inside the polygon."""
    inside, centre_m, lat_gap_m = False, -1.0, 0.0
    if circle:
        c_lat, c_lon, radius = a, b, c
        # A great-circle distance is at least R·|Δφ| (geo/zone_index.py): far in latitude, no trigonometry
        lat_gap_m = abs(y - c_lat) * _ARC_M_PER_DEG
        if lat_gap_m <= radius * (1 + 1e-9) + 1e-6:
            centre_m = _haversine_m(y, x, c_lat, c_lon)
            if _unsure(centre_m, radius, _ABS_M):
                return NEEDS_REFERENCE, False, False, False
            inside = centre_m <= radius
    elif a <= x <= c and b <= y <= d:
        if interior_hit:
            inside = True
        elif ring >= 0:
            inside = _polygon_location(ring_start, coord_start, xs, ys, ring, x, y) == 1
        else:
            return NEEDS_CONTAINS, False, False, False
    breach = inside != inclusion
    confirmed = breach and trusted
    if inside or (inclusion and not trusted):
        return SETTLED, inside, breach, confirmed  # an untrusted exit stays unconfirmed whatever the distance
    # Outside: an inclusion exit is confirmed when the circle is wholly out; an exclusion zone is
    # possibly entered when the circle reaches it (rules/accuracy.py, with its bbox pre-test).
    if circle:
        if lat_gap_m > (radius + r) * (1 + 1e-9) + 1e-6:
            within = False
        else:
            if centre_m < 0:
                centre_m = _haversine_m(y, x, c_lat, c_lon)
            gap = max(centre_m - radius, 0.0)
            if _unsure(gap, r, _ABS_M) or (not inclusion and _unsure(centre_m, radius + r, _ABS_M)):
                return NEEDS_REFERENCE, False, False, False
            within = gap <= r and (inclusion or centre_m <= radius + r)
    else:
        if not inclusion:
            pad_lat = r / METRES_PER_DEGREE
            if not (b - pad_lat <= y <= d + pad_lat):
                return SETTLED, inside, breach, confirmed
            pad_lon = pad_lat / max(math.cos(abs(y) * _D2R), 0.01)
            lo, hi = a - pad_lon, c + pad_lon
            if _unsure(x, lo, _ABS_DEG) or _unsure(x, hi, _ABS_DEG):
                return NEEDS_REFERENCE, False, False, False
            if not lo <= x <= hi:
                return SETTLED, inside, breach, confirmed
        if ring < 0:
            return NEEDS_REFERENCE, False, False, False
        degrees = r / (METRES_PER_DEGREE * max(math.cos(abs(y) * _D2R), 1e-300))
        d = _ring_distance(ring_start, coord_start, xs, ys, ring, x, y)
        if _unsure(d, degrees, _ABS_DEG * 1e-3):
            return NEEDS_REFERENCE, False, False, False
        within = d <= degrees
    if inclusion:
        return SETTLED, inside, breach, confirmed and not within
    return SETTLED, inside, within, confirmed


