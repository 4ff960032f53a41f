"""cells_for, the packed (zone, cell) keys, haversine and cell polygons."""

from __future__ import annotations

import h3
import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from emwatch.geo.cells import cell_polygons, cells_for, compact_cell_key, compact_key_bits, haversine_m

lons = st.integers(0, 200).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float64, n, elements=st.floats(-90, 90)),
        hnp.arrays(np.float64, n, elements=st.floats(-180, 180)),
    )
)


@settings(max_examples=200)
@given(latlon=lons, res=st.integers(0, 15))
def test_cells_for_equals_h3_latlng_to_cell(latlon: tuple[np.ndarray, np.ndarray], res: int) -> None:
    lat, lon = latlon
    expected = [h3.str_to_int(h3.latlng_to_cell(a, o, res)) for a, o in zip(lat, lon, strict=True)]
    got = cells_for(lat, lon, res)
    assert got.dtype == np.uint64
    assert got.tolist() == expected


def test_cells_for_empty_input() -> None:
    assert cells_for(np.empty(0), np.empty(0), 9).shape == (0,)


@settings(max_examples=200)
@given(latlon=lons, res=st.integers(0, 15))
def test_compact_key_keeps_every_bit_that_distinguishes_cells(
    latlon: tuple[np.ndarray, np.ndarray], res: int
) -> None:
    lat, lon = latlon
    cells = cells_for(lat, lon, res)
    keys = compact_cell_key(cells, res)
    assert (keys < np.uint64(1 << compact_key_bits(res))).all()
    # rebuild the full index: mode 1 (cell), resolution, then unused digits all 7
    unused = (1 << (3 * (15 - res))) - 1
    rebuilt = [(1 << 59) | (res << 52) | (int(k) << (3 * (15 - res))) | unused for k in keys]
    assert rebuilt == cells.tolist()


def test_zone_cell_key_fits_64_bits_and_sorts_by_zone_first() -> None:
    res = 9
    cells = cells_for(np.array([30.3, -45.0]), np.array([120.1, 170.0]), res)
    zone = np.array([(1 << (63 - compact_key_bits(res))) - 1, 0], dtype=np.uint64)
    keys = (zone << np.uint64(compact_key_bits(res))) | compact_cell_key(cells, res)
    assert keys[0] > keys[1]
    assert (keys >> np.uint64(compact_key_bits(res))).tolist() == zone.tolist()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((30.3, 120.1), (30.3, 120.1)),
        ((30.3, 120.1), (30.301, 120.101)),
        ((0.0, 179.9999), (0.0, -179.9999)),  # across the antimeridian
        ((89.9, 0.0), (89.9, 180.0)),  # over the pole
        ((-33.9, 18.4), (51.5, -0.1)),
    ],
)
def test_haversine_matches_h3_great_circle_distance(a: tuple[float, float], b: tuple[float, float]) -> None:
    got = float(haversine_m(a[0], a[1], b[0], b[1]))
    assert got == pytest.approx(h3.great_circle_distance(a, b, unit="m"), rel=1e-9, abs=1e-6)


@settings(max_examples=100)
@given(
    latlon=st.integers(1, 300).flatmap(
        lambda n: st.tuples(
            hnp.arrays(np.float64, n, elements=st.floats(-80, 80)),
            hnp.arrays(np.float64, n, elements=st.floats(-179, 179)),
        )
    ),
    res=st.integers(5, 11),
)
def test_a_cells_polygon_holds_every_point_h3_puts_in_that_cell(
    latlon: tuple[np.ndarray, np.ndarray], res: int
) -> None:
    """The soundness the interior-cell shortcut rests on: planar polygon ⊇ spherical cell."""
    lat, lon = latlon
    polys = cell_polygons(cells_for(lat, lon, res))
    known = polys != None  # noqa: E711 (elementwise: None marks antimeridian cells)
    assert shapely.contains_xy(polys[known], lon[known], lat[known]).all()
