"""H3 cells and great-circle distances for arrays of points."""

from __future__ import annotations

import math

import numpy as np
import shapely
from h3.api import basic_int as h3i
from numpy.typing import ArrayLike, NDArray

from emwatch.geo.h3_kernel import latlng_to_cells
from emwatch.jit import cached_njit
from emwatch.kernel_threads import SERIAL, KernelThreads

EARTH_RADIUS_M = 6_371_007.180918475  # authalic radius, as h3.great_circle_distance uses
METRES_PER_DEGREE = 111_320.0  # of latitude; times cos(lat) for longitude (rules/accuracy.py's value)

# H3 index layout: 4 resolution bits at 52..55, 7 base-cell bits at 45..51, then 15 3-bit digits.
_RES_SHIFT = 52
_DIGIT_BITS = 3
_MAX_RES = 15
_D2R = math.pi / 180.0  # what np.radians multiplies by

# h3 4 has no array API. Measured on the 2-core dev box, 200k points near Hangzhou, res 9:
#   for-loop into a preallocated array  1.15-1.47 M/s
#   list comprehension over tolist()    1.45-1.61 M/s
#   map(...) into np.fromiter           1.49-1.62 M/s
#   np.frompyfunc(latlng_to_cell)       1.65-1.75 M/s   (the previous choice: exact, no extra dependency)
#   h3ronpy 0.22 coordinates_to_cells   1.75-1.90 M/s   (exact, but +2 wheels for ~10%: not worth it)
#   geo/h3_kernel.py, a numba port      2.3-2.9x np.frompyfunc in the same run   <- chosen: bit-exact
#     (benchmarks/bench_h3.py, res 9, Hangzhou and global, 200k and 2,000-point batches: 3.1-3.3 M points
#     per CPU-second vs 1.1-1.4 M; the box was loaded then, so wall-clock rates were lower for both)
# Like h3-py, it raises ValueError for non-finite lat/lon or a resolution outside 0..15; the callers pass
# validated, finite fixes.


def cells_for(
    lat: NDArray[np.float64], lon: NDArray[np.float64], res: int, threads: KernelThreads = SERIAL
) -> NDArray[np.uint64]:
    """H3 cell (as uint64) of every point at resolution `res`; equals h3.latlng_to_cell exactly."""
    return latlng_to_cells(lat, lon, res, threads)


def cell_resolution(cells: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """Resolution field of each H3 cell index."""
    return ((cells >> np.uint64(_RES_SHIFT)) & np.uint64(0xF)).astype(np.uint8)


def compact_key_bits(res: int) -> int:
    """Number of significant bits of a res-`res` cell: 7 base-cell bits plus 3 per digit."""
    return 7 + _DIGIT_BITS * res


def compact_cell_key(cells: NDArray[np.uint64], res: int) -> NDArray[np.uint64]:
    """Pack res-`res` cells into their base cell + digits, so `(zone << compact_key_bits(res)) | key`
    is an exact, order-preserving 64-bit (zone, cell) key."""
    shift = np.uint64(_DIGIT_BITS * (_MAX_RES - res))
    mask = np.uint64((1 << compact_key_bits(res)) - 1)
    out: NDArray[np.uint64] = (np.asarray(cells, dtype=np.uint64) >> shift) & mask
    return out


def haversine_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> NDArray[np.float64]:
    """Great-circle distance in metres between points given in degrees (broadcasts)."""
    p1, l1, p2, l2 = (np.radians(np.asarray(a, dtype=np.float64)) for a in (lat1, lon1, lat2, lon2))
    a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin((l2 - l1) / 2) ** 2
    out: NDArray[np.float64] = 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return out


@cached_njit(inline="always")
def haversine_m_one(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """haversine_m for one pair of points, compiled, in the same operation order (for kernels; libm's
    sin/cos/asin may round the last bit differently from numpy's)."""
    p1, l1, p2, l2 = lat1 * _D2R, lon1 * _D2R, lat2 * _D2R, lon2 * _D2R
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin((l2 - l1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(min(max(a, 0.0), 1.0)))


def cell_boundaries(cells: NDArray[np.uint64]) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Boundary vertices (lon, lat) of each cell, flattened, with the owning cell's position."""
    rings = [h3i.cell_to_boundary(int(c)) for c in cells]
    owner = np.repeat(np.arange(len(rings)), [len(r) for r in rings])
    latlng = np.array([v for r in rings for v in r], dtype=np.float64).reshape(-1, 2)
    return latlng[:, ::-1].copy(), owner


def cell_polygons(cells: NDArray[np.uint64], margin_deg: float = 1e-6) -> NDArray[np.object_]:
    """Planar lon/lat polygon of each cell, grown outward so it covers the spherical cell.

    H3 edges are great-circle arcs, not straight lon/lat lines; the bulge (about 5e-9 deg at res 9,
    lat 30, but 1e-5 at res 5) is measured per cell at each edge midpoint and added to `margin_deg`.
    Cells straddling the antimeridian come back as None.
    """
    if len(cells) == 0:
        return np.empty(0, dtype=object)
    lonlat, owner = cell_boundaries(cells)
    nxt = _next_in_ring(owner)
    bulge = _arc_bulge_deg(lonlat, lonlat[nxt])
    per_cell_bulge = np.zeros(len(cells))
    np.maximum.at(per_cell_bulge, owner, bulge)
    polys = shapely.polygons(shapely.linearrings(lonlat, indices=owner))
    grown = shapely.buffer(polys, margin_deg + 2 * per_cell_bulge, join_style="mitre")
    lon_span = np.zeros(len(cells))
    np.maximum.at(lon_span, owner, np.abs(lonlat[:, 0] - lonlat[nxt, 0]))
    grown[lon_span > 180.0] = None
    return np.asarray(grown, dtype=object)


def _next_in_ring(owner: NDArray[np.intp]) -> NDArray[np.intp]:
    """Index of the following vertex of the same ring (wrapping to the ring's first vertex)."""
    idx = np.arange(len(owner))
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    ends = np.r_[starts[1:], len(owner)] - 1
    nxt = idx + 1
    nxt[ends] = starts
    return nxt


def _arc_bulge_deg(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """How far (deg, max of lon/lat) the great-circle midpoint of a-b lies from the straight midpoint."""

    def unit(p: NDArray[np.float64]) -> NDArray[np.float64]:
        lon, lat = np.radians(p[:, 0]), np.radians(p[:, 1])
        return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=1)

    m = unit(a) + unit(b)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    gc = np.stack([np.degrees(np.arctan2(m[:, 1], m[:, 0])), np.degrees(np.arcsin(m[:, 2]))], axis=1)
    dev = np.abs(gc - (a + b) / 2)
    dev[:, 0] = np.where(dev[:, 0] > 180.0, 0.0, dev[:, 0])  # antimeridian cells are dropped anyway
    out: NDArray[np.float64] = dev.max(axis=1)
    return out
