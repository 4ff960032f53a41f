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
from emwatch.geo.cover import (
    MAX_INTERIOR_CELLS,
    MIN_INTERIOR_CELLS,
    circle_cover,
    interior_cells,
    polygon_cover,
)
from emwatch.geo.zones import Zone

_METRES_PER_DEGREE_ARC = EARTH_RADIUS_M * np.pi / 180  # of any great circle, on haversine_m's sphere


def is_shared_exclusion(zone: Zone) -> bool:
    """Default cover rule: exclusion zones not tied to one subject (schools, stations, ...)."""
    return zone.kind == "exclusion" and zone.subject_id is None


def indexed_geometry(zone: Zone) -> shapely.Geometry:
    """The shape a zone is tested against; the seam where a future `buffer_m` will grow it."""
    return zone.geometry


@dataclass(frozen=True, slots=True, eq=False)
class ZoneIndex:
    """Zones with dense int ids and per-zone numpy arrays (struct of arrays), built once.

    `contains` answers exact membership for given (point, zone) pairs; `candidates` finds, from
    H3 cells alone, the covered zones a point might be in, never missing one.
    """

    zones: list[Zone]
    index_of: dict[str, int]
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
    geometries: NDArray[np.object_]  # prepared polygons, None for circles
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
        n = len(zones)
        bits = compact_key_bits(h3_resolution)
        if n >= 1 << (63 - bits):
            raise ValueError(f"{n} zones do not fit a 64-bit (zone, cell) key at res {h3_resolution}")
        index_of = {z.id: i for i, z in enumerate(zones)}
        if len(index_of) != n:
            raise ValueError("zone ids must be unique")
        geoms = [indexed_geometry(z) for z in zones]
        is_circle = np.array([z.is_circle for z in zones], dtype=bool)
        nan = np.full(n, np.nan)
        bounds = np.array([shapely.bounds(g) for g in geoms], dtype=np.float64).reshape(n, 4)
        bounds[is_circle] = np.nan
        centre = nan.copy(), nan.copy()
        radius = nan.copy()
        polys = np.empty(n, dtype=object)
        interior: list[NDArray[np.uint64]] = []
        has_interior = np.zeros(n, dtype=bool)
        for i, (z, g) in enumerate(zip(zones, geoms, strict=True)):
            if z.is_circle:
                centre[0][i], centre[1][i], radius[i] = g.y, g.x, z.radius_m
                continue
            polys[i] = g
            cells = interior_cells(g, h3_resolution, max_interior_cells, min_interior_cells)
            has_interior[i] = len(cells) > 0
            interior.append((np.uint64(i) << np.uint64(bits)) | compact_cell_key(cells, h3_resolution))
        shapely.prepare(polys[~is_circle])
        covered = np.array([cover(z) for z in zones], dtype=bool)
        cover_cells, cover_zone = _build_cover(zones, geoms, covered, h3_resolution)
        return cls(
            zones=list(zones),
            index_of=index_of,
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
            has_interior=has_interior,
            interior_keys=np.sort(np.concatenate([np.empty(0, np.uint64), *interior])),
            is_covered=covered,
            cover_cells=cover_cells,
            cover_zone=cover_zone,
        )

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
            out[todo] = shapely.contains_xy(self.geometries[zp], lon[todo], lat[todo])
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
            out[poly] = shapely.dwithin(self.geometries[z[poly]], shapely.points(lon[poly], y), degrees)
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


def _build_cover(
    zones: Sequence[Zone], geoms: Sequence[shapely.Geometry], covered: NDArray[np.bool_], res: int
) -> tuple[NDArray[np.uint64], NDArray[np.int32]]:
    """Sorted (cell, zone) rows of every covered zone's cover."""
    cells: list[NDArray[np.uint64]] = [np.empty(0, np.uint64)]
    owners: list[NDArray[np.int32]] = [np.empty(0, np.int32)]
    for i in np.flatnonzero(covered).tolist():
        z, g = zones[i], geoms[i]
        # The cover must also hold the warning ring, or an approach would go unseen.
        ring = z.buffer_m or 0.0
        if z.radius_m is not None:
            c = circle_cover(g.y, g.x, z.radius_m + ring, res)
        else:
            c = polygon_cover(g.buffer(_metres_as_degrees(ring, g)) if ring else g, res)
        cells.append(c)
        owners.append(np.full(len(c), i, dtype=np.int32))
    all_cells, all_owners = np.concatenate(cells), np.concatenate(owners)
    order = np.argsort(all_cells, kind="stable")
    return all_cells[order], all_owners[order]


def _metres_as_degrees(metres: float, geometry: shapely.Geometry) -> float:
    """A buffer in degrees at least `metres` wide everywhere on the geometry (longitude degrees
    shrink towards the poles, so divide by the smallest cosine over its latitudes)."""
    _, min_lat, _, max_lat = shapely.bounds(geometry)
    cos = max(np.cos(np.radians(max(abs(min_lat), abs(max_lat)))), 0.01)
    return float(metres / (111_320.0 * cos))
