"""H3 cells remembered per device (geo/cell_memo.py) are h3-py's cells, wherever the fixes move."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from emwatch.geo.cell_memo import anchors, memo_cells
from emwatch.geo.h3_kernel import MAX_RES
from emwatch.kernel_threads import KernelThreads
from tests.geo.test_h3_kernel import h3py_cells, icosahedron_vertices, to_latlon

RESOLUTIONS = range(MAX_RES + 1)


def sphere(rng: np.random.Generator, n: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    v = rng.standard_normal((n, 3))
    return to_latlon(v)


def assert_h3(got: NDArray[np.uint64], lat: NDArray[np.float64], lon: NDArray[np.float64], res: int) -> None:
    want = h3py_cells(lat, lon, res)
    bad = np.flatnonzero(got != want)
    assert len(bad) == 0, [(lat[i], lon[i], res, hex(got[i]), hex(want[i])) for i in bad[:5]]


def edge_of_reach(
    anchor: NDArray[np.void], rng: np.random.Generator, fraction: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """A point `fraction` of the way to the edge of each anchor's reach, in a random direction."""
    reach = np.sqrt(np.maximum(anchor["reach2"].astype(np.float64), 0.0)) * fraction
    angle = rng.uniform(0, 2 * np.pi, len(anchor))
    return (anchor["lat"] + reach * np.sin(angle),
            anchor["lon"] + reach * np.cos(angle) / anchor["cos_lat"].astype(np.float64))


def moved(before: NDArray[np.void], after: NDArray[np.void]) -> NDArray[np.bool_]:
    """Anchors moved to a new point: the fix was computed, not answered from its anchor."""
    out: NDArray[np.bool_] = (before["lat"] != after["lat"]) | (before["lon"] != after["lon"])
    return out


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_points_just_inside_the_reach_keep_the_anchors_cell(res: int) -> None:
    """The hardest points for the memo: at the very edge of each anchor's reach, all round the globe."""
    rng = np.random.default_rng(500 + res)
    n = 40_000
    lat, lon = sphere(rng, n)
    anchor, device = anchors(n), np.arange(n, dtype=np.int32)
    assert_h3(memo_cells(lat, lon, device, anchor, res), lat, lon, res)
    assert (anchor["reach2"] > 0).mean() > 0.8  # most points are not near a hex edge
    lat2, lon2 = edge_of_reach(anchor, rng, 0.999999)
    before = anchor.copy()
    assert_h3(memo_cells(lat2, lon2, device, anchor, res), lat2, lon2, res)
    # they were answered from the anchors (but where rounding the test's own sums crosses a tiny reach)
    assert (~moved(before, anchor)[before["reach2"] > 0]).mean() > 0.999


@pytest.mark.parametrize("res", [0, 3, 9, 15])
def test_points_near_icosahedron_edges_and_high_latitudes(res: int) -> None:
    """Where another face is near (H3 indexes on the nearest face) and where degrees stretch."""
    rng = np.random.default_rng(res)
    verts = icosahedron_vertices()
    a, b = np.nonzero(np.triu(verts @ verts.T, k=1) > np.max(verts[1:] @ verts[0]) - 1e-9)
    t = rng.uniform(0, 1, (len(a), 400, 1))
    along = (verts[a][:, None, :] * (1 - t) + verts[b][:, None, :] * t).reshape(-1, 3)
    along += rng.standard_normal(along.shape) * 1e-4
    lat, lon = to_latlon(along)
    lat = np.r_[lat, rng.uniform(75, 80, 4000) * rng.choice([-1, 1], 4000)]
    lon = np.r_[lon, rng.uniform(-180, 180, 4000)]
    anchor, device = anchors(len(lat)), np.arange(len(lat), dtype=np.int32)
    memo_cells(lat, lon, device, anchor, res)
    for fraction in (0.5, 0.999999):
        lat2, lon2 = edge_of_reach(anchor.copy(), rng, fraction)
        assert_h3(memo_cells(lat2, lon2, device, anchor.copy(), res), lat2, lon2, res)


@pytest.mark.parametrize("res", [5, 9, 12])
def test_random_walks_get_h3s_cells(res: int) -> None:
    """Devices wandering by steps of a hundredth to a whole hex edge, fix after fix."""
    rng = np.random.default_rng(90 + res)
    n = 5_000
    lat, lon = sphere(rng, n)
    lat = np.clip(lat, -85, 85)
    anchor, device = anchors(n), np.arange(n, dtype=np.int32)
    edge_deg = h3.average_hexagon_edge_length(res, unit="km") / 111.0
    for _ in range(20):
        assert_h3(memo_cells(lat, lon, device, anchor, res), lat, lon, res)
        step = edge_deg * rng.choice([0.01, 0.1, 0.5, 1.0], (n, 1)) * rng.standard_normal((n, 2))
        lat = np.clip(lat + step[:, 0], -89.9, 89.9)
        lon = (lon + step[:, 1] + 180) % 360 - 180


def test_small_moves_are_answered_from_the_anchor() -> None:
    """A fix a few metres from its device's last one (a subject at home) mostly skips latLngToCell."""
    rng = np.random.default_rng(3)
    n = 10_000
    lat, lon = rng.uniform(20, 45, n), rng.uniform(100, 120, n)
    anchor, device = anchors(n), np.arange(n, dtype=np.int32)
    memo_cells(lat, lon, device, anchor, 9)
    before = anchor.copy()
    lat2, lon2 = lat + rng.normal(0, 5e-5, n), lon + rng.normal(0, 5e-5, n)  # ~5 m
    assert_h3(memo_cells(lat2, lon2, device, anchor, 9), lat2, lon2, 9)
    assert (~moved(before, anchor)).mean() > 0.8


def test_a_fix_within_reach_takes_the_anchors_cell_as_stored() -> None:
    """The anchor is what answers: a (made-up) cell stored with a wide reach comes back unchanged."""
    anchor = anchors(1)
    made_up = h3.str_to_int(h3.latlng_to_cell(10.0, 10.0, 9))
    anchor[0] = (30.0, 120.0, np.cos(np.radians(30.0)), 1e-4, made_up)
    got = memo_cells(np.array([30.001]), np.array([120.001]), np.array([0], np.int32), anchor, 9)
    assert got.tolist() == [made_up]
    # another resolution's anchor is not used, and is replaced
    got = memo_cells(np.array([30.001]), np.array([120.001]), np.array([0], np.int32), anchor, 8)
    assert got.tolist() == [h3.str_to_int(h3.latlng_to_cell(30.001, 120.001, 8))]
    assert anchor[0]["lat"] == 30.001


def test_fixes_without_a_device_are_not_remembered() -> None:
    anchor = anchors(2)
    lat, lon = np.array([30.0, 31.0]), np.array([120.0, 121.0])
    assert_h3(memo_cells(lat, lon, np.array([-1, 1], np.int32), anchor, 9), lat, lon, 9)
    assert anchor[0]["reach2"] < 0 and anchor[1]["lat"] == 31.0


@pytest.mark.parametrize("threads", [2, 3])
def test_split_across_threads_keeps_each_device_in_one_part(threads: int) -> None:
    """Runs of one device's fixes straddle the naive part bounds; the cells and anchors match one thread."""
    rng = np.random.default_rng(11)
    n_devices = 400
    device = np.sort(rng.integers(0, n_devices, 3_001)).astype(np.int32)
    lat = 30 + device * 1e-3 + rng.normal(0, 1e-4, len(device))
    lon = 120 + device * 1e-3 + rng.normal(0, 1e-4, len(device))
    serial, split = anchors(n_devices), anchors(n_devices)
    want = memo_cells(lat, lon, device, serial, 9)
    got = memo_cells(lat, lon, device, split, 9, KernelThreads(threads, min_rows=1))
    np.testing.assert_array_equal(got, want)
    assert_h3(got, lat, lon, 9)
    np.testing.assert_array_equal(split, serial)
    # unsorted devices are not split (one device in two parts would race on its anchor): same answers
    order = rng.permutation(len(device))
    shuffled = anchors(n_devices)
    got = memo_cells(lat[order], lon[order], device[order], shuffled, 9, KernelThreads(threads, min_rows=1))
    assert_h3(got, lat[order], lon[order], 9)


@settings(max_examples=200, deadline=None)
@given(
    points=st.lists(
        st.tuples(st.floats(-90, 90), st.floats(-180, 180), st.floats(-1e-2, 1e-2), st.floats(-1e-2, 1e-2)),
        min_size=1, max_size=20,
    ),
    res=st.integers(0, MAX_RES),
)
def test_any_point_then_any_small_move(points: list[tuple[float, float, float, float]], res: int) -> None:
    lat, lon, dlat, dlon = (np.array(c, dtype=np.float64) for c in zip(*points, strict=True))
    anchor, device = anchors(len(lat)), np.arange(len(lat), dtype=np.int32)
    assert_h3(memo_cells(lat, lon, device, anchor, res), lat, lon, res)
    lat2, lon2 = np.clip(lat + dlat, -90, 90), np.clip(lon + dlon, -180, 180)
    assert_h3(memo_cells(lat2, lon2, device, anchor, res), lat2, lon2, res)


def test_bad_input_is_rejected() -> None:
    one, dev = np.array([30.0]), np.array([0], np.int32)
    with pytest.raises(ValueError, match="resolution"):
        memo_cells(one, one, dev, anchors(1), 16)
    with pytest.raises(ValueError, match="finite"):
        memo_cells(np.array([np.nan]), one, dev, anchors(1), 9)
    with pytest.raises(ValueError, match="one length"):
        memo_cells(one, np.zeros(2), dev, anchors(1), 9)
    with pytest.raises(IndexError, match="no anchor"):
        memo_cells(one, one, np.array([3], np.int32), anchors(2), 9)
