"""Building a ZoneIndex: bounds, circles, interior cells, H3 covers and ring polygons from zones."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.cells import compact_cell_key, compact_key_bits
from emwatch.geo.cover import estimated_cell_counts, interior_cells, zone_covers
from emwatch.geo.polygon_rings import PolygonRings
from emwatch.geo.zone_columns import ZoneColumns
from emwatch.geo.zone_table import ZoneIds
from emwatch.geo.zones import Zone

# Simple polygons up to this many coordinates are kept as arrays and tested by a compiled scan of
# their edges (~3x faster than a prepared GEOS call at 25 vertices, and ~5x smaller); larger ones
# keep GEOS's indexed prepared geometry, whose cost grows with log(vertices).
MAX_RING_COORDS = 256


def is_shared_exclusion(zone: Zone) -> bool:
    """Default cover rule: exclusion zones not tied to one subject (schools, stations, ...)."""
    return zone.kind == "exclusion" and zone.subject_id is None


def zone_index_arrays(
    zones: Sequence[Zone],
    h3_resolution: int,
    cover: Callable[[Zone], bool],
    max_interior_cells: int,
    min_interior_cells: float,
) -> dict[str, Any]:
    """The fields of a ZoneIndex over `zones` (see ZoneIndex.build); ZoneColumns are used as they are."""
    cols = ZoneColumns.from_zones(zones)
    n = len(cols)
    bits = compact_key_bits(h3_resolution)
    if n >= 1 << (63 - bits):
        raise ValueError(f"{n} zones do not fit a 64-bit (zone, cell) key at res {h3_resolution}")
    if cover is is_shared_exclusion:  # the default, without a Zone per zone
        covered = ~cols.is_inclusion & np.array([s is None for s in cols.subject_id], dtype=bool)
    else:
        covered = np.array([cover(z) for z in cols], dtype=bool)
    ids = ZoneIds(cols.ids)
    geoms = cols.geometry
    is_circle = cols.is_circle
    nan = np.full(n, np.nan)
    bounds = np.asarray(shapely.bounds(geoms), dtype=np.float64).reshape(n, 4)
    bounds[is_circle] = np.nan
    centre = nan.copy(), nan.copy()
    circles = np.flatnonzero(is_circle)
    centre[0][circles], centre[1][circles] = shapely.get_y(geoms[circles]), shapely.get_x(geoms[circles])
    radius = np.where(is_circle, cols.radius_m, np.nan)
    # Only zones whose estimated size is in the shortcut's range are worth looking at one by one
    # (4 counties of 1.75M zones in the national scene); the estimate in one pass, not per zone.
    estimate = np.full(n, np.nan)
    estimate[~is_circle] = estimated_cell_counts(geoms[~is_circle], h3_resolution)
    interior: list[NDArray[np.uint64]] = []
    has_interior = np.zeros(n, dtype=bool)
    # (widened a little: interior_cells decides on its own estimate, rounded slightly differently)
    maybe = (estimate >= min_interior_cells * 0.99) & (estimate <= max_interior_cells * 1.01)
    for i in np.flatnonzero(maybe).tolist():
        cells = interior_cells(geoms[i], h3_resolution, max_interior_cells, min_interior_cells)
        has_interior[i] = len(cells) > 0
        interior.append((np.uint64(i) << np.uint64(bits)) | compact_cell_key(cells, h3_resolution))
    cover_cells, cover_zone = zone_covers(geoms, covered, cols.radius_m, cols.buffer_m, h3_resolution)
    as_rings = _ring_polygons(geoms, is_circle | has_interior, cols.known_valid)
    ring_of = np.full(n, -1, dtype=np.int32)
    ring_of[as_rings] = np.arange(len(as_rings), dtype=np.int32)
    polys = geoms.copy()
    polys[is_circle | (ring_of >= 0)] = None
    shapely.prepare(polys[~is_circle & (ring_of < 0)])
    return dict(
        ids=ids,
        resolution=h3_resolution,
        kind_is_inclusion=cols.is_inclusion.copy(),
        is_circle=is_circle,
        min_lon=bounds[:, 0].copy(),
        min_lat=bounds[:, 1].copy(),
        max_lon=bounds[:, 2].copy(),
        max_lat=bounds[:, 3].copy(),
        centre_lat=centre[0],
        centre_lon=centre[1],
        radius_m=radius,
        geometries=polys,
        rings=polygon_rings(geoms[as_rings]),
        ring_of=ring_of,
        has_interior=has_interior,
        interior_keys=np.sort(np.concatenate([np.empty(0, np.uint64), *interior])),
        is_covered=covered,
        cover_cells=cover_cells,
        cover_zone=cover_zone,
    )


def _ring_polygons(
    geoms: NDArray[np.object_], skip: NDArray[np.bool_], known_valid: bool
) -> NDArray[np.intp]:
    """Which zones become `rings` polygons: valid single polygons of at most MAX_RING_COORDS coordinates
    (valid, so the kernel's shell-then-holes answer is GEOS's; `known_valid`: all were checked already)."""
    candidates = np.flatnonzero(~skip)
    g = geoms[candidates]
    simple = (shapely.get_type_id(g) == 3) & (shapely.get_num_coordinates(g) <= MAX_RING_COORDS)
    keep: NDArray[np.intp] = candidates[simple]
    return keep if known_valid else keep[shapely.is_valid(geoms[keep])]


def polygon_rings(polygons: NDArray[np.object_]) -> PolygonRings:
    """PolygonRings.build(polygons), the same arrays, with `get_rings` (a GEOS object per ring) only for
    the polygons that have holes: 5x faster (0.2 vs 1.0 s at 300k polygons of 25 vertices)."""
    n = len(polygons)
    holes = shapely.get_num_interior_rings(polygons) if n else np.empty(0, np.int64)
    ring_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(holes + 1, out=ring_start[1:])
    coords, owner = shapely.get_coordinates(polygons, return_index=True)  # shell, then holes, in order
    ring_sizes = np.bincount(owner, minlength=n).astype(np.int64)  # one ring each, unless holed...
    holed = np.flatnonzero(holes > 0)
    if len(holed):
        per_ring = np.zeros(int(ring_start[-1]), dtype=np.int64)
        per_ring[ring_start[:-1]] = ring_sizes
        rings, ring_owner = shapely.get_rings(polygons[holed], return_index=True)
        first = ring_start[holed][ring_owner]  # each ring's row: its polygon's first, plus its rank
        rank = np.arange(len(rings)) - np.searchsorted(ring_owner, ring_owner)
        per_ring[first + rank] = shapely.get_num_coordinates(rings)
        ring_sizes = per_ring
    coord_start = np.zeros(int(ring_start[-1]) + 1, dtype=np.int64)
    np.cumsum(ring_sizes, out=coord_start[1:])
    rings_arrays = PolygonRings(
        ring_start, coord_start, np.ascontiguousarray(coords[:, 0]), np.ascontiguousarray(coords[:, 1])
    )
    # compile (or load from numba's cache) now, while the service starts, not on its first batch
    none, nowhere = np.empty(0, np.int64), np.empty(0)
    rings_arrays.contains(none, nowhere, nowhere)
    rings_arrays.distance(none, nowhere, nowhere)
    return rings_arrays
