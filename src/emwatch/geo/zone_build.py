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
from emwatch.geo.zone_table import ZoneIds
from emwatch.geo.zones import Zone

# Simple polygons up to this many coordinates are kept as arrays and tested by a compiled scan of
# their edges (~3x faster than a prepared GEOS call at 25 vertices, and ~5x smaller); larger ones
# keep GEOS's indexed prepared geometry, whose cost grows with log(vertices).
MAX_RING_COORDS = 256


def is_shared_exclusion(zone: Zone) -> bool:
    """Default cover rule: exclusion zones not tied to one subject (schools, stations, ...)."""
    return zone.kind == "exclusion" and zone.subject_id is None


def indexed_geometry(zone: Zone) -> shapely.Geometry:
    """The shape a zone is tested against; the seam where a future `buffer_m` will grow it."""
    return zone.geometry


def zone_index_arrays(
    zones: Sequence[Zone],
    h3_resolution: int,
    cover: Callable[[Zone], bool],
    max_interior_cells: int,
    min_interior_cells: float,
) -> dict[str, Any]:
    """The fields of a ZoneIndex over `zones` (see ZoneIndex.build)."""
    n = len(zones)
    bits = compact_key_bits(h3_resolution)
    if n >= 1 << (63 - bits):
        raise ValueError(f"{n} zones do not fit a 64-bit (zone, cell) key at res {h3_resolution}")
    ids = ZoneIds([z.id for z in zones])
    geoms = np.empty(n, dtype=object)
    geoms[:] = [indexed_geometry(z) for z in zones]
    is_circle = np.array([z.is_circle for z in zones], dtype=bool)
    nan = np.full(n, np.nan)
    bounds = np.asarray(shapely.bounds(geoms), dtype=np.float64).reshape(n, 4)
    bounds[is_circle] = np.nan
    centre = nan.copy(), nan.copy()
    radius = nan.copy()
    circles = np.flatnonzero(is_circle)
    centre[0][circles], centre[1][circles] = shapely.get_y(geoms[circles]), shapely.get_x(geoms[circles])
    radius[circles] = [zones[i].radius_m for i in circles.tolist()]
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
    covered = np.array([cover(z) for z in zones], dtype=bool)
    cover_cells, cover_zone = zone_covers(zones, geoms, covered, h3_resolution)
    as_rings = _ring_polygons(geoms, is_circle | has_interior)
    ring_of = np.full(n, -1, dtype=np.int32)
    ring_of[as_rings] = np.arange(len(as_rings), dtype=np.int32)
    polys = geoms.copy()
    polys[is_circle | (ring_of >= 0)] = None
    shapely.prepare(polys[~is_circle & (ring_of < 0)])
    return dict(
        ids=ids,
        resolution=h3_resolution,
        kind_is_inclusion=np.array([z.kind == "inclusion" for z in zones], dtype=bool),
        is_circle=is_circle,
        min_lon=bounds[:, 0].copy(),
        min_lat=bounds[:, 1].copy(),
        max_lon=bounds[:, 2].copy(),
        max_lat=bounds[:, 3].copy(),
        centre_lat=centre[0],
        centre_lon=centre[1],
        radius_m=radius,
        geometries=polys,
        rings=PolygonRings.build(geoms[as_rings]),
        ring_of=ring_of,
        has_interior=has_interior,
        interior_keys=np.sort(np.concatenate([np.empty(0, np.uint64), *interior])),
        is_covered=covered,
        cover_cells=cover_cells,
        cover_zone=cover_zone,
    )


def _ring_polygons(geoms: NDArray[np.object_], skip: NDArray[np.bool_]) -> NDArray[np.intp]:
    """Which zones become `rings` polygons: valid single polygons of at most MAX_RING_COORDS coordinates
    (valid, so the kernel's shell-then-holes answer is GEOS's)."""
    candidates = np.flatnonzero(~skip)
    g = geoms[candidates]
    simple = (shapely.get_type_id(g) == 3) & (shapely.get_num_coordinates(g) <= MAX_RING_COORDS)
    keep = candidates[simple]
    out: NDArray[np.intp] = keep[shapely.is_valid(geoms[keep])]
    return out
