"""ZoneIndex: exact point-in-zone answers for many (point, zone) pairs at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.cells import (
    EARTH_RADIUS_M,
    METRES_PER_DEGREE,
    cell_resolution,
    compact_cell_key,
    compact_key_bits,
    haversine_m,
)
from emwatch.geo.cover import MAX_INTERIOR_CELLS, MIN_INTERIOR_CELLS
from emwatch.geo.polygon_rings import PolygonRings
from emwatch.geo.zone_build import is_shared_exclusion, zone_index_arrays
from emwatch.geo.zone_table import IndexedZones, ZoneIds
from emwatch.geo.zones import Zone

_METRES_PER_DEGREE_ARC = EARTH_RADIUS_M * np.pi / 180  # of any great circle, on haversine_m's sphere


@dataclass(frozen=True, slots=True, eq=False)
class ZoneIndex:
    """Zones with dense int ids and per-zone numpy arrays (struct of arrays), built once.

    `contains` answers exact membership for given (point, zone) pairs; `candidates` finds, from
    H3 cells alone, the covered zones a point might be in, never missing one. Small simple polygons
    are kept as coordinate arrays (`rings`), the rest as prepared shapely geometries; both answer
    as shapely does. No `Zone` objects are kept: `zones` rebuilds a view of one on demand.
    """

    ids: ZoneIds  # zone id <-> dense index
    resolution: int
    kind_is_inclusion: NDArray[np.bool_]
    is_circle: NDArray[np.bool_]
    min_lon: NDArray[np.float64]  # bbox, polygons only (circles are NaN: haversine is as cheap)
    min_lat: NDArray[np.float64]
    max_lon: NDArray[np.float64]
    max_lat: NDArray[np.float64]
    centre_lat: NDArray[np.float64]  # circles only, NaN for polygons
    centre_lon: NDArray[np.float64]
    radius_m: NDArray[np.float64]
    geometries: NDArray[np.object_]  # prepared shapely polygons; None for circles and `rings` polygons
    rings: PolygonRings  # small simple polygons as coordinate arrays (compiled kernels)
    ring_of: NDArray[np.int32]  # polygon's row in `rings`, -1 where it is a shapely geometry or a circle
    has_interior: NDArray[np.bool_]  # False where the zone was too big (or too small) for the shortcut
    interior_keys: NDArray[np.uint64]  # sorted (zone << bits) | compact cell, cells wholly inside
    is_covered: NDArray[np.bool_]
    cover_cells: NDArray[np.uint64]  # sorted; cover_zone[i] is the zone whose cover holds cover_cells[i]
    cover_zone: NDArray[np.int32]

    @classmethod
    def build(
        cls,
        zones: Sequence[Zone],
        h3_resolution: int = 9,
        cover: Callable[[Zone], bool] = is_shared_exclusion,
        max_interior_cells: int = MAX_INTERIOR_CELLS,
        min_interior_cells: float = MIN_INTERIOR_CELLS,
    ) -> ZoneIndex:
        """Index `zones`; those for which `cover(zone)` is True also get an H3 cover for `candidates`."""
        return cls(**zone_index_arrays(zones, h3_resolution, cover, max_interior_cells, min_interior_cells))

    @property
    def index_of(self) -> ZoneIds:
        """Zone id → dense index."""
        return self.ids

    @property
    def zones(self) -> IndexedZones:
        """The zones in index order: id, kind and shape of each, made on access."""
        return IndexedZones(self)

    def geometry(self, zone: int) -> shapely.Geometry:
        """Zone `zone`'s polygon, or its centre Point when it is a circle."""
        if self.is_circle[zone]:
            return shapely.Point(self.centre_lon[zone], self.centre_lat[zone])
        ring = int(self.ring_of[zone])
        return self.rings.geometry(ring) if ring >= 0 else self.geometries[zone]

    def planar_distance(
        self, zone_idx: NDArray[np.int32], lon: NDArray[np.float64], lat: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """Planar distance in degrees from point i to polygon zone_idx[i], 0 inside (shapely `distance`).
        Polygons only."""
        z = np.asarray(zone_idx, dtype=np.intp)
        out = np.empty(len(z))
        ring = self.ring_of[z]
        k = np.flatnonzero(ring >= 0)
        out[k] = self.rings.distance(ring[k], lon[k], lat[k])
        s = np.flatnonzero(ring < 0)
        if len(s):
            out[s] = shapely.distance(self.geometries[z[s]], shapely.points(lon[s], lat[s]))
        return out

    def contains(
        self,
        zone_idx: NDArray[np.int32],
        lon: NDArray[np.float64],
        lat: NDArray[np.float64],
        cells: NDArray[np.uint64],
    ) -> NDArray[np.bool_]:
        """Whether point i lies inside zone zone_idx[i]: shapely contains_xy for polygons (boundary
        is outside), haversine distance <= radius_m for circles. `cells` are the points' H3 cells."""
        self._check_cells(cells)
        z = np.asarray(zone_idx, dtype=np.intp)
        out = np.zeros(len(z), dtype=bool)
        circ = np.flatnonzero(self.is_circle[z])
        if len(circ):
            # A great-circle distance is at least the latitude difference (R·|Δφ|): pairs farther
            # apart than the radius in latitude alone are outside without trigonometry. The bound
            # is padded far beyond rounding, so only pairs that are clearly out are skipped.
            zc = z[circ]
            lat_gap_m = np.abs(lat[circ] - self.centre_lat[zc]) * _METRES_PER_DEGREE_ARC
            near = lat_gap_m <= self.radius_m[zc] * (1 + 1e-9) + 1e-6
            circ, zc = circ[near], zc[near]
            dist = haversine_m(lat[circ], lon[circ], self.centre_lat[zc], self.centre_lon[zc])
            out[circ] = dist <= self.radius_m[zc]
        todo = np.flatnonzero(~self.is_circle[z])
        zp, x, y = z[todo], lon[todo], lat[todo]
        in_box = (
            (x >= self.min_lon[zp])
            & (x <= self.max_lon[zp])
            & (y >= self.min_lat[zp])
            & (y <= self.max_lat[zp])
        )
        todo, zp = todo[in_box], zp[in_box]
        if len(self.interior_keys) and len(todo):
            # the key is exact (no hashing), so a match proves the cell is one verified wholly inside
            shift = np.uint64(compact_key_bits(self.resolution))
            keys = (zp.astype(np.uint64) << shift) | compact_cell_key(cells[todo], self.resolution)
            at = _search_sorted(self.interior_keys, keys).clip(max=len(self.interior_keys) - 1)
            hit = self.interior_keys[at] == keys
            out[todo[hit]] = True
            todo, zp = todo[~hit], zp[~hit]
        if len(todo):
            ring = self.ring_of[zp]
            k = ring >= 0
            kt = todo[k]
            out[kt] = self.rings.contains(ring[k], lon[kt], lat[kt])
            st, zs = todo[~k], zp[~k]
            if len(st):
                out[st] = shapely.contains_xy(self.geometries[zs], lon[st], lat[st])
        return out

    def within_m(
        self,
        zone_idx: NDArray[np.int32],
        lon: NDArray[np.float64],
        lat: NDArray[np.float64],
        metres: NDArray[np.float64],
    ) -> NDArray[np.bool_]:
        """Whether point i lies within metres[i] of zone zone_idx[i] (inside counts): circles by
        haversine, polygons by planar degrees converted at the point's latitude (a degree of longitude,
        the shortest, so never over-estimated). The same answer as measuring the distance, but a
        prepared `dwithin` walks the polygon's segment index: ~1 µs instead of ~50 µs per point
        against a 3,000-vertex county."""
        z = np.asarray(zone_idx, dtype=np.intp)
        out = np.zeros(len(z), dtype=bool)
        circ = np.flatnonzero(self.is_circle[z])
        if len(circ):
            zc = z[circ]
            centre = haversine_m(lat[circ], lon[circ], self.centre_lat[zc], self.centre_lon[zc])
            out[circ] = np.maximum(centre - self.radius_m[zc], 0.0) <= metres[circ]
        poly = np.flatnonzero(~self.is_circle[z])
        if len(poly):
            y = lat[poly]
            # at a pole every distance converts to 0 m (within): a huge radius in degrees says the same
            cos = np.maximum(np.cos(np.radians(np.abs(y))), 1e-300)
            degrees = metres[poly] / (METRES_PER_DEGREE * cos)
            zp, ring = z[poly], self.ring_of[z[poly]]
            k = ring >= 0
            kp = poly[k]
            out[kp] = self.rings.distance(ring[k], lon[kp], y[k]) <= degrees[k]
            s = ~k
            if s.any():
                sp = poly[s]
                out[sp] = shapely.dwithin(self.geometries[zp[s]], shapely.points(lon[sp], y[s]), degrees[s])
        return out

    def candidates(
        self, cells: NDArray[np.uint64], zone_mask: NDArray[np.bool_] | None = None
    ) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
        """(point position, zone idx) pairs whose covered zone's H3 cover holds the point's cell.

        A superset of the true hits among covered zones (filter with `contains`); `zone_mask`
        (one bool per zone) keeps only the zones where it is True.
        """
        self._check_cells(cells)
        lo = _search_sorted(self.cover_cells, cells, side="left")
        hi = _search_sorted(self.cover_cells, cells, side="right")
        counts = hi - lo
        pos = np.repeat(np.arange(len(cells), dtype=np.int64), counts)
        # run i of the output starts at cover position lo[i]: shift a running counter by it
        first_out = np.cumsum(counts) - counts
        flat = np.arange(len(pos), dtype=np.int64) + np.repeat(lo - first_out, counts)
        zone = self.cover_zone[flat]
        if zone_mask is not None:
            keep = np.asarray(zone_mask, dtype=bool)[zone]
            pos, zone = pos[keep], zone[keep]
        return pos, zone

    def _check_cells(self, cells: NDArray[np.uint64]) -> None:
        if len(cells) and not np.all(cell_resolution(cells) == self.resolution):
            raise ValueError(f"cells must be H3 cells at the index resolution {self.resolution}")


def _search_sorted(
    haystack: NDArray[np.uint64], needles: NDArray[np.uint64], side: Literal["left", "right"] = "left"
) -> NDArray[np.intp]:
    """np.searchsorted, with the needles searched in sorted order: numpy then narrows each search
    from the previous one, ~2x faster than random order for 2,000 needles in 100k sorted keys."""
    if len(needles) < 64:
        return np.searchsorted(haystack, needles, side=side)
    order = np.argsort(needles)
    out = np.empty(len(needles), dtype=np.intp)
    out[order] = np.searchsorted(haystack, needles[order], side=side)
    return out
