"""ZoneIndex.contains and .candidates agree exactly with plain shapely / haversine, pair by pair."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from geo_strategies import LAT0, LON0, county_polygon, haversine_scalar, points_near, zone_lists
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emwatch.geo.cells import cell_boundaries, cells_for
from emwatch.geo.zone_index import ZoneIndex
from emwatch.geo.zones import Zone

SQUARE = shapely.box(120.10, 30.30, 120.11, 30.31)
HOLED = shapely.Polygon(
    SQUARE.exterior.coords, [shapely.box(120.104, 30.304, 120.106, 30.306).exterior.coords]
)


def truth(zone: Zone, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Plain per-zone answer: shapely contains_xy on the raw geometry, scalar haversine for circles."""
    if zone.is_circle:
        c = zone.geometry
        return np.array(
            [haversine_scalar(y, x, c.y, c.x) <= zone.radius_m for x, y in zip(lon, lat, strict=True)]
        )
    return np.asarray(shapely.contains_xy(zone.geometry, lon, lat))


def contains_all(index: ZoneIndex, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """index.contains for every (point, zone) pair, as an (n_points, n_zones) matrix."""
    n, m = len(lon), len(index.zones)
    cells = cells_for(lat, lon, index.resolution)
    z = np.tile(np.arange(m, dtype=np.int32), n)
    p = np.repeat(np.arange(n), m)
    return index.contains(z, lon[p], lat[p], cells[p]).reshape(n, m)


@pytest.mark.parametrize(
    ("geometry", "radius_m", "lon", "lat", "inside"),
    [
        (SQUARE, None, 120.105, 30.305, True),
        (SQUARE, None, 120.12, 30.305, False),
        (SQUARE, None, 120.10, 30.305, False),  # on the boundary: outside, as in shapely
        (HOLED, None, 120.105, 30.305, False),  # in the hole
        (HOLED, None, 120.102, 30.302, True),
        (shapely.Point(120.1, 30.3), 100.0, 120.1, 30.3008, True),  # ~89 m north
        (shapely.Point(120.1, 30.3), 100.0, 120.1, 30.3010, False),  # ~111 m north
    ],
)
def test_contains_examples(
    geometry: shapely.Geometry, radius_m: float | None, lon: float, lat: float, inside: bool
) -> None:
    index = ZoneIndex.build([Zone("z", "exclusion", geometry, radius_m=radius_m, subject_id="s")])
    got = contains_all(index, np.array([lon]), np.array([lat]))
    assert got.tolist() == [[inside]]


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(zone_list=zone_lists(), res=st.sampled_from([8, 9, 10]), seed=st.integers(0, 2**32 - 1))
def test_contains_and_candidates_equal_brute_force(zone_list: list[Zone], res: int, seed: int) -> None:
    index = ZoneIndex.build(zone_list, h3_resolution=res, cover=lambda z: True, min_interior_cells=1.0)
    lon, lat = points_near(zone_list, np.random.default_rng(seed), 400)
    expected = np.stack([truth(z, lon, lat) for z in zone_list], axis=1)

    assert (contains_all(index, lon, lat) == expected).all()

    pos, zone = index.candidates(cells_for(lat, lon, res))
    hit = index.contains(zone, lon[pos], lat[pos], cells_for(lat, lon, res)[pos])
    assert set(zip(pos[hit].tolist(), zone[hit].tolist(), strict=True)) == set(
        zip(*np.nonzero(expected), strict=True)
    )


@pytest.fixture(scope="module")
def county() -> tuple[ZoneIndex, Zone]:
    zone = Zone("county", "inclusion", county_polygon(2000), jurisdiction_id="hz")
    index = ZoneIndex.build([zone], h3_resolution=9, cover=lambda z: True, min_interior_cells=1.0)
    assert index.has_interior[0] and len(index.interior_keys) > 10_000  # the shortcut is really in play
    return index, zone


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_county_contains_equals_shapely(county: tuple[ZoneIndex, Zone], seed: int) -> None:
    index, zone = county
    lon, lat = points_near([zone], np.random.default_rng(seed), 2000)
    assert (contains_all(index, lon, lat)[:, 0] == truth(zone, lon, lat)).all()
    pos, _ = index.candidates(cells_for(lat, lon, 9))
    assert set(np.flatnonzero(truth(zone, lon, lat)).tolist()) <= set(pos.tolist())


def test_county_points_on_interior_cell_edges(county: tuple[ZoneIndex, Zone]) -> None:
    """Cell vertices and edge points are where h3 and planar geometry disagree the most."""
    index, zone = county
    cells = index.interior_keys & np.uint64((1 << 34) - 1)
    full = (cells << np.uint64(18)) | np.uint64((1 << 59) | (9 << 52) | ((1 << 18) - 1))
    lonlat, _ = cell_boundaries(full[:: max(1, len(full) // 3000)])
    nudge = np.random.default_rng(1).standard_normal(lonlat.shape) * 1e-9
    pts = np.concatenate([lonlat, lonlat + nudge])
    lon, lat = pts[:, 0].copy(), pts[:, 1].copy()
    assert (contains_all(index, lon, lat)[:, 0] == truth(zone, lon, lat)).all()


def test_zone_over_interior_cap_stays_exact_without_shortcut() -> None:
    zone = Zone("county", "inclusion", county_polygon(500, radius_deg=0.05), jurisdiction_id="hz")
    index = ZoneIndex.build([zone], max_interior_cells=100)
    assert not index.has_interior[0] and len(index.interior_keys) == 0
    lon, lat = points_near([zone], np.random.default_rng(0), 3000)
    assert (contains_all(index, lon, lat)[:, 0] == truth(zone, lon, lat)).all()


def test_candidates_default_cover_is_shared_exclusion_zones_and_mask_filters() -> None:
    shared = Zone("school", "exclusion", SQUARE, jurisdiction_id="hz")
    own = Zone("victim-home", "exclusion", SQUARE, subject_id="s1")
    allowed = Zone("home", "inclusion", SQUARE, jurisdiction_id="hz")
    station = Zone("station", "exclusion", shapely.Point(120.105, 30.305), radius_m=300, group_id="g")
    index = ZoneIndex.build([shared, own, allowed, station])
    assert index.is_covered.tolist() == [True, False, False, True]
    cells = cells_for(np.array([30.305, 10.0]), np.array([120.105, 10.0]), 9)
    pos, zone = index.candidates(cells)
    assert sorted(zip(pos.tolist(), zone.tolist(), strict=True)) == [(0, 0), (0, 3)]
    pos, zone = index.candidates(cells, zone_mask=np.array([False, True, True, True]))
    assert list(zip(pos.tolist(), zone.tolist(), strict=True)) == [(0, 3)]


def test_build_gives_dense_indices_and_kind_flags() -> None:
    zones = [
        Zone("a", "inclusion", SQUARE, subject_id="s"),
        Zone("b", "exclusion", shapely.Point(LON0, LAT0), radius_m=50, subject_id="s"),
    ]
    index = ZoneIndex.build(zones)
    assert index.index_of == {"a": 0, "b": 1}
    assert index.kind_is_inclusion.tolist() == [True, False]
    assert index.is_circle.tolist() == [False, True]
    with pytest.raises(ValueError, match="unique"):
        ZoneIndex.build([zones[0], zones[0]])


def test_cells_at_another_resolution_are_refused() -> None:
    index = ZoneIndex.build([Zone("a", "inclusion", SQUARE, subject_id="s")], h3_resolution=9)
    wrong = cells_for(np.array([30.305]), np.array([120.105]), 8)
    with pytest.raises(ValueError, match="resolution 9"):
        index.contains(np.zeros(1, np.int32), np.array([120.105]), np.array([30.305]), wrong)


def test_small_polygons_are_rings_large_and_multi_stay_shapely_and_zones_read_back() -> None:
    multi = shapely.MultiPolygon([SQUARE, shapely.box(120.2, 30.3, 120.21, 30.31)])
    zones = [
        Zone("small", "exclusion", HOLED, subject_id="s"),
        Zone("county", "inclusion", county_polygon(2000), jurisdiction_id="hz"),
        Zone("multi", "exclusion", multi, subject_id="s"),
        Zone("circle", "exclusion", shapely.Point(LON0, LAT0), radius_m=75.0, subject_id="s"),
    ]
    index = ZoneIndex.build(zones)
    assert (index.ring_of >= 0).tolist() == [True, False, False, False]
    assert [g is None for g in index.geometries] == [True, False, False, True]
    assert len(index.zones) == 4
    for z, back in zip(zones, index.zones, strict=True):
        assert (back.id, back.kind, back.radius_m, back.is_circle) == (z.id, z.kind, z.radius_m, z.is_circle)
        assert shapely.equals_identical(back.geometry, z.geometry)


def test_zone_ids_map_both_ways_and_survive_pickling() -> None:
    import pickle

    ids = ["b", "a", "区-7", "zone-long-id-" + "x" * 40]
    index = ZoneIndex.build([Zone(i, "exclusion", SQUARE, subject_id="s") for i in ids])
    back = pickle.loads(pickle.dumps(index.index_of))
    for table in (index.index_of, back):
        assert dict(table) == {i: k for k, i in enumerate(ids)} and list(table) == ids
        assert [table.id_at(k) for k in range(4)] == ids
        assert table.get("missing", -1) == -1 and "a\x00" not in table and "y" * 99 not in table
    with pytest.raises(KeyError):
        index.index_of["missing"]
    with pytest.raises(ValueError, match="NUL"):
        ZoneIndex.build([Zone("a\x00", "exclusion", SQUARE, subject_id="s")])
