"""ZoneIndex building shortcuts give what the plain ways give: interior cells, ring arrays, columns."""

from __future__ import annotations

import math

import h3
import numpy as np
import pytest
import shapely
from h3.api import basic_int as h3i

from emwatch.geo.cells import cell_polygons
from emwatch.geo.cover import interior_cells
from emwatch.geo.polygon_rings import PolygonRings
from emwatch.geo.zone_build import polygon_rings
from emwatch.geo.zone_columns import ZoneColumns
from emwatch.geo.zones import Zone


def lobed(lon: float, lat: float, r: float, n: int, seed: int) -> shapely.Polygon:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    rr = r * (1 + 0.25 * np.sin(3 * t) + 0.1 * np.sin(11 * t) + 0.02 * rng.standard_normal(n))
    return shapely.Polygon(np.c_[lon + rr * np.cos(t) / math.cos(math.radians(lat)), lat + rr * np.sin(t)])


def every_cell_grown(geometry: shapely.Geometry, res: int) -> np.ndarray:
    """The definition: candidates whose grown polygon the zone contains properly, each one checked."""
    shape = h3.geo_to_h3shape(geometry.__geo_interface__)
    candidates = np.array(h3i.h3shape_to_cells_experimental(shape, res, "center"), dtype=np.uint64)
    inside = shapely.contains_properly(geometry, cell_polygons(candidates)).astype(bool)
    return np.sort(candidates[inside])


HOLED = shapely.Polygon(
    shapely.box(120.0, 30.0, 120.2, 30.15).exterior.coords, [shapely.box(120.05, 30.05, 120.1, 30.1).exterior.coords]
)


@pytest.mark.parametrize(("geometry", "res"), [
    (lobed(120.1, 30.3, 0.12, 800, 1), 9),
    (lobed(126.6, 45.7, 0.08, 300, 2), 9),  # farther north: longitude degrees shrink
    (lobed(-70.0, -33.0, 0.5, 1500, 3), 7),
    (HOLED, 9),
    (shapely.MultiPolygon([lobed(110.0, 20.0, 0.03, 50, 4), lobed(110.2, 20.0, 0.03, 50, 5)]), 10),
])
def test_interior_cells_are_the_cells_whose_grown_polygon_is_inside(geometry: shapely.Geometry, res: int) -> None:
    expected = every_cell_grown(geometry, res)
    got = interior_cells(geometry, res, max_cells=10**7, min_cells=1)
    assert len(expected) > 100
    np.testing.assert_array_equal(got, expected)


def test_polygon_rings_are_the_arrays_polygon_rings_build_makes() -> None:
    polys = np.array([
        shapely.box(0, 0, 1, 1), HOLED, lobed(10, 10, 0.01, 25, 6),
        shapely.Polygon(shapely.box(5, 5, 9, 9).exterior.coords,
                        [shapely.box(6, 6, 7, 7).exterior.coords, shapely.box(7.5, 7.5, 8, 8).exterior.coords]),
        lobed(11, 11, 0.02, 40, 7),
    ], dtype=object)
    for subset in (polys, polys[[0, 2, 4]], polys[:0]):
        got, expected = polygon_rings(subset), PolygonRings.build(subset)
        for name in ("ring_start", "coord_start", "x", "y"):
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), err_msg=name)


def test_zone_columns_give_back_the_zones() -> None:
    zones = [
        Zone("a", "exclusion", shapely.Point(1, 2), 50.0, subject_id="s", properties={"buffer_m": 10}),
        Zone("b", "inclusion", HOLED, group_id="g", schedule={"windows": [{"start": "22:00", "end": "06:00"}]}),
        Zone("c", "inclusion", shapely.box(0, 0, 1, 1), jurisdiction_id="j"),
    ]
    cols = ZoneColumns.from_zones(zones)
    assert list(cols) == zones
    assert cols.is_circle.tolist() == [True, False, False]
    np.testing.assert_array_equal(cols.buffer_m, [10.0, np.nan, np.nan])
    assert ZoneColumns.from_zones(cols) is cols
