"""Which H3 cells lie wholly inside a zone, and which cells a zone can touch at all."""

from __future__ import annotations

import math

import h3
import numpy as np
import shapely
from h3.api import basic_int as h3i
from numpy.typing import NDArray

from emwatch.geo.cells import EARTH_RADIUS_M, cell_boundaries, cell_polygons, haversine_m

MAX_INTERIOR_CELLS = 200_000  # ~20,000 km² at res 9, 1.6 MB of keys per zone; bigger zones skip the shortcut
# Below this many cells the shortcut saves less than finding the cells costs: a small polygon's
# bbox check + prepared contains_xy is already cheap, and building interior sets for every small
# zone was 88 % of a 700k-subject registry build (benchmarks/RESULTS.md, 2026-11-22).
MIN_INTERIOR_CELLS = 32.0
MAX_COVER_CELLS = 2_000_000  # a cover must be complete, so past this we refuse rather than truncate
_M_PER_DEG = 2 * math.pi * EARTH_RADIUS_M / 360


class CoverTooLargeError(ValueError):
    """A zone's H3 cover at the requested resolution would exceed MAX_COVER_CELLS."""


def estimated_cell_count(geometry: shapely.Geometry, res: int) -> float:
    """Rough number of res-`res` cells in a lon/lat polygon (equirectangular area / mean cell area)."""
    _, south, _, north = shapely.bounds(geometry)
    lat_mid = (south + north) / 2
    area_m2 = float(shapely.area(geometry)) * _M_PER_DEG**2 * math.cos(math.radians(lat_mid))
    return area_m2 / float(h3.average_hexagon_area(res, "m^2"))


def estimated_cell_counts(geometries: NDArray[np.object_], res: int) -> NDArray[np.float64]:
    """estimated_cell_count of each geometry, in one pass over all of them."""
    bounds = shapely.bounds(geometries).reshape(-1, 4)
    lat_mid = (bounds[:, 1] + bounds[:, 3]) / 2
    area_m2 = shapely.area(geometries) * _M_PER_DEG**2 * np.cos(np.radians(lat_mid))
    return np.asarray(area_m2 / float(h3.average_hexagon_area(res, "m^2")), dtype=np.float64)


def interior_cells(
    geometry: shapely.Geometry, res: int, max_cells: int = MAX_INTERIOR_CELLS,
    min_cells: float = MIN_INTERIOR_CELLS,
) -> NDArray[np.uint64]:
    """Sorted res-`res` cells every point of which `contains_xy(geometry, ...)` answers True for.

    Candidates come from h3 (cell centre inside), but each one is verified with shapely against the
    cell grown outward (see cell_polygons), because h3 tests in planar lat/lng with its own rounding.
    Returns an empty array when the zone would need more than `max_cells` or fewer than `min_cells`
    cells: it then stays exact, only without the shortcut.
    """
    estimate = estimated_cell_count(geometry, res)
    if estimate > max_cells or estimate < min_cells:
        return np.empty(0, dtype=np.uint64)
    shape = h3.geo_to_h3shape(geometry.__geo_interface__)
    candidates = np.array(h3i.h3shape_to_cells_experimental(shape, res, "center"), dtype=np.uint64)
    if len(candidates) > max_cells:
        return np.empty(0, dtype=np.uint64)
    shapely.prepare(geometry)
    inside = _deep_inside(geometry, candidates)
    near = np.flatnonzero(~inside)
    # contains_properly: the grown cell must not even touch the boundary, which contains_xy excludes
    inside[near] = shapely.contains_properly(geometry, cell_polygons(candidates[near])).astype(bool)
    return np.sort(candidates[inside])


def _deep_inside(geometry: shapely.Geometry, cells: NDArray[np.uint64]) -> NDArray[np.bool_]:
    """Cells that lie, grown as `cell_polygons` grows them, inside `geometry` by far: a disk around the
    mean of a cell's vertices, twice as wide as the farthest vertex plus the growth's reach, that is
    inside and touches no boundary holds the grown cell. Growing every cell of a county cost ~1.3 s;
    only cells near the boundary need it."""
    lonlat, owner = cell_boundaries(cells)
    count = np.bincount(owner, minlength=len(cells))
    cx = np.bincount(owner, lonlat[:, 0], minlength=len(cells)) / count
    cy = np.bincount(owner, lonlat[:, 1], minlength=len(cells)) / count
    reach = np.zeros(len(cells))
    np.maximum.at(reach, owner, np.hypot(lonlat[:, 0] - cx[owner], lonlat[:, 1] - cy[owner]))
    # A mitred buffer reaches at most mitre_limit (5) times its width past a corner; the width is
    # cell_polygons' margin (1e-6) plus twice the arc bulge, far below half a cell's reach at res >= 1.
    clearance = 2 * reach + 1e-5
    boundary = shapely.boundary(geometry)
    shapely.prepare(boundary)
    far = ~shapely.dwithin(boundary, shapely.points(cx, cy), clearance)
    return np.asarray(shapely.contains_xy(geometry, cx, cy) & far, dtype=bool)


def polygon_cover(geometry: shapely.Geometry, res: int) -> NDArray[np.uint64]:
    """Sorted res-`res` cells that overlap a polygon, dilated by one ring.

    h3's 'overlap' mode tests straight lat/lng edges while cells are spherical; a point can sit in
    the sliver between the two, so one ring of neighbours is added. Vertex cells make sure a polygon
    smaller than a cell is never empty.
    """
    if estimated_cell_count(geometry, res) > MAX_COVER_CELLS:
        raise CoverTooLargeError(f"zone needs more than {MAX_COVER_CELLS} cells at resolution {res}")
    shape = h3.geo_to_h3shape(geometry.__geo_interface__)
    cells = set(h3i.h3shape_to_cells_experimental(shape, res, "overlap"))
    xy = shapely.get_coordinates(geometry)
    cells.update(h3i.latlng_to_cell(lat, lon, res) for lon, lat in xy.tolist())
    return _dilate(cells)


def circle_cover(lat: float, lon: float, radius_m: float, res: int) -> NDArray[np.uint64]:
    """Sorted res-`res` cells that can hold a point within `radius_m` of (lat, lon), dilated by one ring."""
    centre = h3i.latlng_to_cell(lat, lon, res)
    # neighbouring centres are >= ~1.5 mean edge lengths apart even on distorted faces; 0.5 is slack
    spacing_m = 0.5 * float(h3.average_hexagon_edge_length(res, "m"))
    k = math.ceil(radius_m / spacing_m) + 1
    if 3 * k * (k + 1) + 1 > MAX_COVER_CELLS:
        raise CoverTooLargeError(f"circle of {radius_m} m is too large to cover at resolution {res}")
    disk = np.array(h3i.grid_disk(centre, k), dtype=np.uint64)
    lonlat, owner = cell_boundaries(disk)
    centres = np.array([h3i.cell_to_latlng(int(c)) for c in disk], dtype=np.float64)
    vertex_dist = haversine_m(centres[owner, 0], centres[owner, 1], lonlat[:, 1], lonlat[:, 0])
    circumradius = np.zeros(len(disk))
    np.maximum.at(circumradius, owner, vertex_dist)
    near = haversine_m(lat, lon, centres[:, 0], centres[:, 1]) - circumradius <= radius_m
    return _dilate(set(disk[near].tolist()))


def _dilate(cells: set[int]) -> NDArray[np.uint64]:
    """The cells plus their immediate neighbours, sorted."""
    grown: set[int] = set()
    for c in cells:
        grown.update(h3i.grid_disk(c, 1))
    return np.array(sorted(grown), dtype=np.uint64)


def zone_covers(
    geoms: NDArray[np.object_], covered: NDArray[np.bool_], radius_m: NDArray[np.float64],
    buffer_m: NDArray[np.float64], res: int,
) -> tuple[NDArray[np.uint64], NDArray[np.int32]]:
    """Sorted (cell, zone) rows of the covers of the zones where `covered` is True (`geoms`: their shapes;
    `radius_m`: NaN unless a circle; `buffer_m`: the warning ring, NaN for none)."""
    cells: list[NDArray[np.uint64]] = [np.empty(0, np.uint64)]
    owners: list[NDArray[np.int32]] = [np.empty(0, np.int32)]
    for i in np.flatnonzero(covered).tolist():
        g, radius, buffer = geoms[i], float(radius_m[i]), float(buffer_m[i])
        # The cover must also hold the warning ring, or an approach would go unseen.
        ring = 0.0 if math.isnan(buffer) else buffer
        if not math.isnan(radius):
            c = circle_cover(g.y, g.x, radius + ring, res)
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
