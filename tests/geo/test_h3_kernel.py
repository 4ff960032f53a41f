"""The compiled latLngToCell (geo/h3_kernel.py) equals h3-py's latlng_to_cell bit for bit."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from h3.api import basic_int as h3i
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from emwatch.geo.h3_kernel import MAX_RES, latlng_to_cells
from emwatch.kernel_threads import KernelThreads

RESOLUTIONS = range(MAX_RES + 1)
_h3py = np.frompyfunc(h3i.latlng_to_cell, 3, 1)


def h3py_cells(lat: NDArray[np.float64], lon: NDArray[np.float64], res: int) -> NDArray[np.uint64]:
    """The reference: h3-py, one point at a time."""
    if len(lat) == 0:
        return np.empty(0, dtype=np.uint64)
    out: NDArray[np.uint64] = _h3py(lat, lon, res).astype(np.uint64)
    return out


def assert_same_cells(lat: NDArray[np.float64], lon: NDArray[np.float64], res: int) -> None:
    got = latlng_to_cells(lat, lon, res)
    want = h3py_cells(lat, lon, res)
    bad = np.flatnonzero(got != want)
    assert got.dtype == np.uint64
    assert len(bad) == 0, [(lat[i], lon[i], res, hex(got[i]), hex(want[i])) for i in bad[:5]]


def jitter(
    lat: NDArray[np.float64], lon: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Each point, and points 1e-14 to 1e-2 degrees away from it in 8 directions."""
    steps = np.array([0.0, 1e-14, 1e-12, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2])
    ang = np.arange(8) * np.pi / 4
    dlat = (steps[:, None] * np.sin(ang)[None, :]).ravel()
    dlon = (steps[:, None] * np.cos(ang)[None, :]).ravel()
    return (lat[:, None] + dlat[None, :]).ravel(), (lon[:, None] + dlon[None, :]).ravel()


def icosahedron_vertices() -> NDArray[np.float64]:
    """Unit vectors of the 12 icosahedron vertices: the res-0 pentagon centres."""
    ll = np.radians([h3.cell_to_latlng(p) for p in h3.get_pentagons(0)])
    out: NDArray[np.float64] = np.c_[
        np.cos(ll[:, 0]) * np.cos(ll[:, 1]), np.cos(ll[:, 0]) * np.sin(ll[:, 1]), np.sin(ll[:, 0])
    ]
    return out


def to_latlon(v: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.degrees(np.arcsin(np.clip(v[:, 2], -1, 1))), np.degrees(np.arctan2(v[:, 1], v[:, 0]))


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_uniform_points_on_the_sphere(res: int) -> None:
    rng = np.random.default_rng(1000 + res)
    n = 200_000
    assert_same_cells(np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n), res)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_points_at_and_around_every_pentagon_centre(res: int) -> None:
    centres = np.array([h3.cell_to_latlng(p) for p in h3.get_pentagons(res)])
    assert len(centres) == 12
    assert_same_cells(*jitter(centres[:, 0], centres[:, 1]), res)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_points_on_and_beside_the_icosahedron_edges(res: int) -> None:
    verts = icosahedron_vertices()
    cos_edge = np.max(verts[1:] @ verts[0])  # neighbouring vertices are the closest ones
    a, b = np.nonzero(np.triu(verts @ verts.T, k=1) > cos_edge - 1e-9)
    assert len(a) == 30  # the icosahedron's edges
    t = np.linspace(0, 1, 41)[None, :, None]
    along = (verts[a][:, None, :] * (1 - t) + verts[b][:, None, :] * t).reshape(-1, 3)
    lat, lon = to_latlon(along)
    assert_same_cells(*jitter(lat, lon), res)


@pytest.mark.parametrize("res", RESOLUTIONS)
def test_face_centres_poles_and_antimeridian(res: int) -> None:
    verts = icosahedron_vertices()
    faces = [(i, j, k) for i in range(12) for j in range(i + 1, 12) for k in range(j + 1, 12)]
    cos_edge = np.max(verts[1:] @ verts[0]) - 1e-9
    faces = [
        f
        for f in faces
        if min(verts[f[0]] @ verts[f[1]], verts[f[1]] @ verts[f[2]], verts[f[0]] @ verts[f[2]]) > cos_edge
    ]
    assert len(faces) == 20
    face_lat, face_lon = to_latlon(np.array([verts[list(f)].sum(axis=0) for f in faces]))
    edge = np.linspace(-90, 90, 181)
    lat = np.r_[face_lat, [90.0] * 9, [-90.0] * 9, edge, edge, edge, edge, 89.999999999, -89.999999999]
    lon = np.r_[
        face_lon,
        np.linspace(-180, 180, 9),
        np.linspace(-180, 180, 9),
        [180.0] * 181,
        [-180.0] * 181,
        [179.9999999999] * 181,
        [-179.9999999999] * 181,
        0.0,
        0.0,
    ]
    assert_same_cells(*jitter(lat, lon), res)


def test_coordinates_outside_the_usual_ranges() -> None:
    lat = np.array([0.0, -0.0, 5e-324, 91.0, -135.0, 720.5, 1e6, 1e300, 45.0, 45.0, 45.0, 45.0])
    lon = np.array([-0.0, 0.0, -5e-324, 10.0, 10.0, 10.0, 10.0, 10.0, 540.0, -900.25, 1e15, -1e300])
    for res in RESOLUTIONS:
        assert_same_cells(lat, lon, res)


@pytest.mark.parametrize("res", [0, 1, 2, 5, 9, 12, 15])
def test_cell_boundary_vertices(res: int) -> None:
    rng = np.random.default_rng(res)
    lat0 = np.degrees(np.arcsin(rng.uniform(-1, 1, 300)))
    lon0 = rng.uniform(-180, 180, 300)
    cells = {h3.latlng_to_cell(a, o, res) for a, o in zip(lat0, lon0, strict=True)}
    cells |= set(h3.get_pentagons(res))
    for probe_res in {max(res - 1, 0), res, min(res + 1, MAX_RES)}:
        verts = np.array([v for c in sorted(cells) for v in h3.cell_to_boundary(c)])
        assert_same_cells(verts[:, 0], verts[:, 1], probe_res)


@settings(max_examples=300)
@given(
    lat=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20),
    lon=st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=20),
    res=st.integers(0, MAX_RES),
)
def test_any_finite_coordinates(lat: list[float], lon: list[float], res: int) -> None:
    n = min(len(lat), len(lon))
    assert_same_cells(np.array(lat[:n], dtype=np.float64), np.array(lon[:n], dtype=np.float64), res)


def test_empty_input_gives_empty_uint64() -> None:
    out = latlng_to_cells(np.empty(0), np.empty(0), 9)
    assert out.shape == (0,)
    assert out.dtype == np.uint64


def test_strided_and_integer_input() -> None:
    lat = np.linspace(-80, 80, 200)
    lon = np.linspace(-170, 170, 200)
    assert latlng_to_cells(lat[::2], lon[::2], 7).tolist() == h3py_cells(lat[::2], lon[::2], 7).tolist()
    ints = np.array([30, -45, 0])
    assert (
        latlng_to_cells(ints, ints, 5).tolist()
        == h3py_cells(ints.astype(float), ints.astype(float), 5).tolist()
    )


@pytest.mark.parametrize("res", [-1, 16, 100])
def test_resolution_outside_0_to_15_is_rejected(res: int) -> None:
    with pytest.raises(ValueError, match="resolution"):
        latlng_to_cells(np.array([30.0]), np.array([120.0]), res)
    with pytest.raises(ValueError):  # as h3-py does
        h3.latlng_to_cell(30.0, 120.0, res)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_coordinates_are_rejected(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        latlng_to_cells(np.array([30.0, bad]), np.array([120.0, 120.0]), 9)
    with pytest.raises(ValueError, match="finite"):
        latlng_to_cells(np.array([30.0, 30.0]), np.array([bad, 120.0]), 9)
    with pytest.raises(ValueError):  # as h3-py does
        h3.latlng_to_cell(bad, 120.0, 9)


def test_mismatched_shapes_are_rejected() -> None:
    with pytest.raises(ValueError, match="one length"):
        latlng_to_cells(np.zeros(3), np.zeros(2), 9)


@pytest.mark.parametrize("threads", [2, 3])
def test_points_split_across_threads_get_the_same_cells(threads: int) -> None:
    """Each thread indexes its own contiguous slice: the cells are h3-py's, whatever the split."""
    rng = np.random.default_rng(77)
    n = 5_003  # not a multiple of the thread count: uneven parts
    lat, lon = np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)
    got = latlng_to_cells(lat, lon, 9, KernelThreads(threads, min_rows=1))
    np.testing.assert_array_equal(got, h3py_cells(lat, lon, 9))
