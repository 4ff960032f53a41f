"""Zone geometries (GeoJSON or WKB) parsed and checked in bulk: a few GEOS calls for all, not several each."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import shapely
from numpy.typing import NDArray

# The geometry types a zone may have (geojson._GEOMETRY_TYPES).
_ZONE_TYPES = np.array(
    [shapely.GeometryType.POINT, shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON],
    dtype=np.int32,
)
# Below this many geometries a second thread costs more than it saves.
_MIN_PARALLEL = 50_000


def geometries_from_geojson(texts: Sequence[str]) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """Each GeoJSON geometry text as a 2D shapely geometry, and whether it passes the checks
    `zone_from_feature` makes (type, not empty, finite [lon, lat] in range, valid).

    Where ok[i] is False the geometry may be None: parse that one with `zone_from_feature`, which
    says what is wrong. Parsing a stored zone one by one costs ~170 µs, ~40 % of it in `shape()`.
    """
    arr = np.empty(len(texts), dtype=object)
    arr[:] = list(texts)
    geoms = shapely.from_geojson(arr, on_invalid="ignore")  # malformed text or coordinates: None
    return checked_zone_geometries(geoms)


def geometries_from_wkb(blobs: Sequence[bytes]) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """As `geometries_from_geojson`, from WKB (~20x faster to parse than the same GeoJSON text), but
    without asking GEOS whether each is valid (5.5 s of 1.75M zones): a zone's WKB is only written from a
    geometry that passed every check (`zone_row` of a checked Zone, `backfill_zone_wkb`) and is read back
    byte for byte. What is looked for is damage: no geometry, another type, empty, non-finite or
    out-of-range coordinates."""
    arr = np.empty(len(blobs), dtype=object)
    arr[:] = list(blobs)
    with np.errstate(invalid="ignore"):  # a NaN coordinate: found below
        geoms = np.asarray(shapely.from_wkb(arr, on_invalid="ignore"), dtype=object)
    ok = ~shapely.is_missing(geoms) & np.isin(shapely.get_type_id(geoms), _ZONE_TYPES)
    geoms = _two_d(geoms)
    ok &= ~shapely.is_empty(geoms)
    # A NaN past a geometry's first coordinate escapes its bounds (GEOS envelopes skip it), not its area.
    bounds = shapely.bounds(geoms).reshape(-1, 4)
    with np.errstate(invalid="ignore"):
        ok &= np.isfinite(bounds).all(axis=1) & np.isfinite(shapely.area(geoms))
        ok &= (np.abs(bounds[:, [0, 2]]) <= 180).all(axis=1) & (np.abs(bounds[:, [1, 3]]) <= 90).all(axis=1)
    return geoms, ok


def checked_zone_geometries(geoms: NDArray[np.object_]) -> tuple[NDArray[np.object_], NDArray[np.bool_]]:
    """`geoms` made 2D, and whether each is a zone geometry `zone_from_feature` would accept (None: not)."""
    geoms = np.asarray(geoms, dtype=object)
    ok = ~shapely.is_missing(geoms) & np.isin(shapely.get_type_id(geoms), _ZONE_TYPES)
    geoms = _two_d(geoms)
    ok &= ~shapely.is_empty(geoms)
    xy, owner = shapely.get_coordinates(geoms, return_index=True)
    bad = ~np.isfinite(xy).all(axis=1) | (np.abs(xy[:, 0]) > 180) | (np.abs(xy[:, 1]) > 90)
    ok &= np.bincount(owner[bad], minlength=len(geoms)) == 0
    ok[ok] = _is_valid(geoms[ok])
    return geoms, ok


def _two_d(geoms: NDArray[np.object_]) -> NDArray[np.object_]:
    """`geoms` with the ones that have a Z made 2D (a copy only then)."""
    has_z = np.flatnonzero(shapely.has_z(geoms))
    if len(has_z):
        geoms = geoms.copy()
        geoms[has_z] = shapely.force_2d(geoms[has_z])
    return geoms


def _is_valid(geoms: NDArray[np.object_]) -> NDArray[np.bool_]:
    """shapely.is_valid, on both cores for many geometries (GEOS releases the GIL): the dearest check,
    ~3.5 µs per 25-vertex polygon."""
    workers = min(os.cpu_count() or 1, 4)
    if len(geoms) < _MIN_PARALLEL or workers < 2:
        return np.asarray(shapely.is_valid(geoms), dtype=bool)
    edges = np.linspace(0, len(geoms), workers + 1).astype(np.intp)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(shapely.is_valid, [geoms[a:b] for a, b in itertools.pairwise(edges)]))
    return np.concatenate(parts).astype(bool)
