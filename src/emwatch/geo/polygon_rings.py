"""Small polygons as flat coordinate arrays, answered by compiled kernels exactly as GEOS answers.

A shapely polygon of 25 vertices costs ~1 KB of GEOS objects, ~2 KB more once a prepared `dwithin`
has indexed its facets; the same vertices as float64 arrays cost 400 B. The kernels repeat GEOS's
own arithmetic (RayCrossingCounter with the filtered double-double orientation test, and
Distance::pointToSegment), so the answers are the ones shapely gives: the boundary is outside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.jit import cached_njit

_SPLIT = 134217729.0  # 2^27 + 1: Dekker's splitter, as in geos::math::DD
_DP_SAFE_EPSILON = 1e-15  # GEOS CGAlgorithmsDD: safely above double round-off


@dataclass(frozen=True, slots=True)
class PolygonRings:
    """Polygons (with holes) as CSR rings: polygon p owns rings ring_start[p]:ring_start[p + 1], the
    first its shell; ring r owns the closed coordinate run x/y[coord_start[r]:coord_start[r + 1]]."""

    ring_start: NDArray[np.int64]
    coord_start: NDArray[np.int64]
    x: NDArray[np.float64]
    y: NDArray[np.float64]

    @classmethod
    def build(cls, polygons: Sequence[shapely.Polygon] | NDArray[np.object_]) -> PolygonRings:
        """Flatten `polygons` (shapely Polygons, not Multi) in order."""
        geoms = np.asarray(polygons, dtype=object).reshape(-1)
        rings_per = shapely.get_num_interior_rings(geoms) + 1 if len(geoms) else np.empty(0, np.int64)
        ring_start = np.zeros(len(geoms) + 1, dtype=np.int64)
        np.cumsum(rings_per, out=ring_start[1:])
        coords, ring_index = shapely.get_coordinates(shapely.get_rings(geoms), return_index=True)
        coord_start = np.zeros(int(ring_start[-1]) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ring_index, minlength=int(ring_start[-1])), out=coord_start[1:])
        x, y = np.ascontiguousarray(coords[:, 0]), np.ascontiguousarray(coords[:, 1])
        rings = cls(ring_start, coord_start, x, y)
        # compile (or load from numba's cache) now, while the service starts, not on its first batch
        none, nowhere = np.empty(0, np.int64), np.empty(0)
        rings.contains(none, nowhere, nowhere)
        rings.distance(none, nowhere, nowhere)
        return rings

    def __len__(self) -> int:
        return len(self.ring_start) - 1

    @property
    def nbytes(self) -> int:
        return self.ring_start.nbytes + self.coord_start.nbytes + self.x.nbytes + self.y.nbytes

    def contains(
        self, polygon: NDArray[np.integer[Any]], x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> NDArray[np.bool_]:
        """Whether point i lies in the interior of polygon[i] (shapely `contains_xy`)."""
        out: NDArray[np.bool_] = self._per_point(_contains, np.bool_, polygon, x, y)
        return out

    def distance(
        self, polygon: NDArray[np.integer[Any]], x: NDArray[np.float64], y: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Planar distance from point i to polygon[i], 0 inside or on it (shapely `distance`)."""
        out: NDArray[np.float64] = self._per_point(_distance, np.float64, polygon, x, y)
        return out

    def _per_point(self, kernel: Any, dtype: Any, polygon: NDArray[np.integer[Any]], x: NDArray[np.float64],
                   y: NDArray[np.float64]) -> NDArray[Any]:
        """One answer of `kernel` per (polygon[i], x[i], y[i]), written into a new array of `dtype`."""
        out = np.empty(len(polygon), dtype=dtype)
        kernel(self.ring_start, self.coord_start, self.x, self.y,
               np.asarray(polygon, np.int64), np.asarray(x, np.float64), np.asarray(y, np.float64), out)
        return out

    def geometry(self, p: int) -> shapely.Polygon:
        """Polygon p as a shapely geometry again (same coordinates, same ring order)."""
        rings = [
            np.c_[self.x[self.coord_start[r]:self.coord_start[r + 1]],
                  self.y[self.coord_start[r]:self.coord_start[r + 1]]]
            for r in range(int(self.ring_start[p]), int(self.ring_start[p + 1]))
        ]
        return shapely.Polygon(rings[0], rings[1:])


@cached_njit(inline="always")
def _dd_add(ahi: float, alo: float, yhi: float, ylo: float) -> tuple[float, float]:
    """geos::math::DD::selfAdd(yhi, ylo)."""
    s = ahi + yhi
    t = alo + ylo
    e = s - ahi
    f = t - alo
    s2 = s - e
    t2 = t - f
    s2 = (yhi - e) + (ahi - s2)
    t2 = (ylo - f) + (alo - t2)
    e = s2 + t
    h_big = s + e
    h = e + (s - h_big)
    e = t2 + h
    zhi = h_big + e
    return zhi, e + (h_big - zhi)


@cached_njit(inline="always")
def _dd_mul(ahi: float, alo: float, yhi: float, ylo: float) -> tuple[float, float]:
    """geos::math::DD::selfMultiply(yhi, ylo)."""
    c_big = _SPLIT * ahi
    hx = c_big - ahi
    c = _SPLIT * yhi
    hx = c_big - hx
    tx = ahi - hx
    hy = c - yhi
    c_big = ahi * yhi
    hy = c - hy
    ty = yhi - hy
    c = ((((hx * hy - c_big) + hx * ty) + tx * hy) + tx * ty) + (ahi * ylo + alo * yhi)
    zhi = c_big + c
    hx = c_big - zhi
    return zhi, c + hx


@cached_njit(inline="always")
def _sign(v: float) -> int:
    return 1 if v > 0.0 else (-1 if v < 0.0 else 0)


@cached_njit()
def _orientation(p1x: float, p1y: float, p2x: float, p2y: float, qx: float, qy: float) -> int:
    """GEOS CGAlgorithmsDD::orientationIndex: a floating-point filter, double-double when unsure."""
    detleft = (p1x - qx) * (p2y - qy)
    detright = (p1y - qy) * (p2x - qx)
    det = detleft - detright
    if detleft > 0.0:
        if detright <= 0.0:
            return _sign(det)
        detsum = detleft + detright
    elif detleft < 0.0:
        if detright >= 0.0:
            return _sign(det)
        detsum = -detleft - detright
    else:
        return _sign(det)
    errbound = _DP_SAFE_EPSILON * detsum
    if det >= errbound or -det >= errbound:
        return _sign(det)
    dx1 = _dd_add(p2x, 0.0, -p1x, 0.0)
    dy1 = _dd_add(p2y, 0.0, -p1y, 0.0)
    dx2 = _dd_add(qx, 0.0, -p2x, 0.0)
    dy2 = _dd_add(qy, 0.0, -p2y, 0.0)
    m1 = _dd_mul(dx1[0], dx1[1], dy2[0], dy2[1])
    m2 = _dd_mul(dy1[0], dy1[1], dx2[0], dx2[1])
    dhi, dlo = _dd_add(m1[0], m1[1], -m2[0], -m2[1])
    if dhi < 0.0 or (dhi == 0.0 and dlo < 0.0):
        return -1
    if dhi > 0.0 or (dhi == 0.0 and dlo > 0.0):
        return 1
    return 0


# Helpers that take arrays are compiled without reference counting: called per point, two atomic
# increments and decrements per array argument cost more than a short ring's whole scan.
@cached_njit(_nrt=False)
def _ring_location(xs: NDArray[np.float64], ys: NDArray[np.float64], a: int, b: int,
                   px: float, py: float) -> int:
    """GEOS RayCrossingCounter over ring coordinates a:b: 0 exterior, 1 interior, 2 on the boundary."""
    crossings = 0
    for i in range(a + 1, b):
        x1, y1, x2, y2 = xs[i - 1], ys[i - 1], xs[i], ys[i]
        if x1 < px and x2 < px:
            continue
        if px == x2 and py == y2:
            return 2
        if y1 == py and y2 == py:
            lo, hi = (x1, x2) if x1 <= x2 else (x2, x1)
            if lo <= px <= hi:
                return 2
            continue
        if (y1 > py and y2 <= py) or (y2 > py and y1 <= py):
            sign = _orientation(x1, y1, x2, y2, px, py)
            if sign == 0:
                return 2
            if y2 < y1:
                sign = -sign
            if sign > 0:
                crossings += 1
    return crossings & 1


@cached_njit(_nrt=False)
def _polygon_location(ring_start: NDArray[np.int64], coord_start: NDArray[np.int64],
                      xs: NDArray[np.float64], ys: NDArray[np.float64], p: int, px: float, py: float) -> int:
    """0 exterior, 1 interior, 2 boundary of polygon p: shell, then holes (SimplePointInAreaLocator)."""
    r0 = ring_start[p]
    loc = _ring_location(xs, ys, coord_start[r0], coord_start[r0 + 1], px, py)
    if loc != 1:
        return loc
    for r in range(r0 + 1, ring_start[p + 1]):
        hole = _ring_location(xs, ys, coord_start[r], coord_start[r + 1], px, py)
        if hole == 1:
            return 0
        if hole == 2:
            return 2
    return 1


@cached_njit()
def _contains(ring_start: NDArray[np.int64], coord_start: NDArray[np.int64], xs: NDArray[np.float64],
              ys: NDArray[np.float64], polygon: NDArray[np.int64], px: NDArray[np.float64],
              py: NDArray[np.float64], out: NDArray[np.bool_]) -> None:
    for i in range(len(polygon)):
        out[i] = _polygon_location(ring_start, coord_start, xs, ys, polygon[i], px[i], py[i]) == 1


@cached_njit()
def _point_segment(px: float, py: float, ax: float, ay: float, bx: float, by: float) -> float:
    """GEOS Distance::pointToSegment."""
    if ax == bx and ay == by:
        return float(np.sqrt((px - ax) * (px - ax) + (py - ay) * (py - ay)))
    len2 = (bx - ax) * (bx - ax) + (by - ay) * (by - ay)
    r = ((px - ax) * (bx - ax) + (py - ay) * (by - ay)) / len2
    if r <= 0.0:
        return float(np.sqrt((px - ax) * (px - ax) + (py - ay) * (py - ay)))
    if r >= 1.0:
        return float(np.sqrt((px - bx) * (px - bx) + (py - by) * (py - by)))
    s = ((ay - py) * (bx - ax) - (ax - px) * (by - ay)) / len2
    return float(abs(s) * np.sqrt(len2))


@cached_njit()
def _distance(ring_start: NDArray[np.int64], coord_start: NDArray[np.int64], xs: NDArray[np.float64],
              ys: NDArray[np.float64], polygon: NDArray[np.int64], px: NDArray[np.float64],
              py: NDArray[np.float64], out: NDArray[np.float64]) -> None:
    for i in range(len(polygon)):
        p, x, y = polygon[i], px[i], py[i]
        if _polygon_location(ring_start, coord_start, xs, ys, p, x, y) != 0:
            out[i] = 0.0
            continue
        best = np.inf
        for r in range(ring_start[p], ring_start[p + 1]):
            for k in range(coord_start[r] + 1, coord_start[r + 1]):
                d = _point_segment(x, y, xs[k - 1], ys[k - 1], xs[k], ys[k])
                best = min(best, d)
        out[i] = best
