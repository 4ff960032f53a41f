"""A polygon too large for PolygonRings (a county) is answered from its bands exactly as GEOS answers it."""

from __future__ import annotations

import numpy as np
import pytest
import shapely

from emwatch.geo.polygon_rings import PolygonRings
from emwatch.rules.containment_geometry import _banded_distance, _banded_location, banded_polygons
from tests.geo.geo_strategies import county_polygon


def _points(county: shapely.Polygon, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Its vertices, points on and beside its edges, and points all over its bbox."""
    xy = shapely.get_coordinates(county)
    t = rng.uniform(0, 1, (len(xy) - 1, 1))
    on_edge = xy[:-1] + t * (xy[1:] - xy[:-1])
    beside = on_edge + rng.normal(0, 1e-5, on_edge.shape)
    lo, hi = xy.min(axis=0) - 0.01, xy.max(axis=0) + 0.01
    spread = lo + rng.uniform(0, 1, (3000, 2)) * (hi - lo)
    pts = np.concatenate([xy, on_edge, beside, spread])
    return pts[:, 0], pts[:, 1]


@pytest.fixture(scope="module")
def county() -> shapely.Polygon:
    return county_polygon(n=3000, seed=11)


def test_band_location_is_geos_contains(county: shapely.Polygon) -> None:
    bands = banded_polygons(np.array([county], dtype=object))
    x, y = _points(county, np.random.default_rng(1))
    loc = np.array([_banded_location(bands, 0, a, b) for a, b in zip(x, y, strict=True)])
    np.testing.assert_array_equal(loc == 1, shapely.contains_xy(county, x, y))
    assert (loc[:3000] == 2).all()  # the vertices are on the boundary
    assert (loc == 1).any() and (loc == 0).any()


@pytest.mark.parametrize("limit", [1e-6, 1e-4, 3e-3])
def test_band_distance_is_the_full_scan_within_the_limit(county: shapely.Polygon, limit: float) -> None:
    bands = banded_polygons(np.array([county], dtype=object))
    x, y = _points(county, np.random.default_rng(2))
    got = np.array([_banded_distance(bands, 0, a, b, limit) for a, b in zip(x, y, strict=True)])
    full = PolygonRings.build([county]).distance(np.zeros(len(x), np.int64), x, y)
    near = full <= limit
    np.testing.assert_array_equal(got[near], full[near])  # the same nearest edge, the same arithmetic
    assert (got[~near] > limit).all()
    np.testing.assert_array_equal(got <= limit, shapely.dwithin(county, shapely.points(x, y), limit))
    assert near.any() and (~near).any()


def test_no_polygons_make_empty_bands() -> None:
    bands = banded_polygons(np.empty(0, dtype=object))
    assert [len(a) for a in bands] == [1, 0, 0, 0, 0, 1, 1, 0]
