"""The compiled containment walk answers exactly as the numpy path it replaced (containment_reference.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from emwatch.geo.cells import EARTH_RADIUS_M, cells_for
from emwatch.geo.zones import Zone
from emwatch.kernel_threads import SERIAL, KernelThreads
from emwatch.model import NO_BATT, NO_SEQ, FixBatch, FixColumns, Observations
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.containment import evaluate_containment
from emwatch.rules.containment_geometry import NEEDS_REFERENCE
from emwatch.rules.containment_listing import _SAMPLE, _block_lower_bound, _run_end, _sampled_block
from emwatch.rules.containment_pairs import answered_pairs, registry_columns
from emwatch.rules.permits import PERMIT_DESTINATION, PermitRow
from tests.geo.geo_strategies import LAT0, LON0, county_polygon, points_near, star_polygon
from tests.rules.containment_reference import reference_containment

T0 = 1_000_000_000_000
SUBJECTS = 12
CURFEW = {"windows": [{"start": "22:00", "end": "06:00"}]}


def _zones(rng: np.random.Generator) -> list[Zone]:
    """A county (shapely, interior cells), per-subject circles and ring polygons of both kinds, a holed
    and a two-part polygon, group and shared zones (some with a warning ring), a curfew, a destination."""
    zones = [Zone("county", "inclusion", county_polygon(), jurisdiction_id="j1")]
    for s in range(SUBJECTS):
        for k in range(int(rng.integers(1, 4))):
            lon, lat = LON0 + rng.uniform(-0.05, 0.05), LAT0 + rng.uniform(-0.05, 0.05)
            kind = "inclusion" if rng.uniform() < 0.3 else "exclusion"
            if rng.uniform() < 0.4:
                geom, radius = shapely.Point(lon, lat), float(rng.uniform(20, 800))
                zones.append(Zone(f"c{s}-{k}", kind, geom, radius_m=radius, subject_id=f"s{s}"))
            else:
                poly = star_polygon(lon, lat, float(rng.uniform(0.0008, 0.01)), int(rng.integers(5, 40)), rng)
                zones.append(Zone(f"p{s}-{k}", kind, shapely.make_valid(poly).convex_hull, subject_id=f"s{s}"))
    shell = star_polygon(LON0 + 0.02, LAT0, 0.01, 30, rng, wobble=0.2)
    hole = shapely.buffer(shapely.Point(LON0 + 0.02, LAT0), 0.003)
    zones.append(Zone("holed", "exclusion", shapely.Polygon(shell.exterior.coords, [hole.exterior.coords]),
                      subject_id="s0"))
    parts = [shapely.box(LON0 - 0.03, LAT0, LON0 - 0.02, LAT0 + 0.01), shapely.box(LON0, LAT0 - 0.03, LON0 + 0.01,
                                                                                   LAT0 - 0.02)]
    zones.append(Zone("two-part", "exclusion", shapely.MultiPolygon(parts), subject_id="s1"))
    zones.append(Zone("group", "exclusion", shapely.Point(LON0, LAT0), radius_m=900.0, group_id="g"))
    for i in range(15):
        lon, lat = LON0 + rng.uniform(-0.05, 0.05), LAT0 + rng.uniform(-0.05, 0.05)
        props = {"buffer_m": float(rng.uniform(50, 300))} if i % 3 == 0 else {}
        jur = "j1" if i % 4 else "j2"
        if i % 2:
            zones.append(Zone(f"shared{i}", "exclusion", shapely.Point(lon, lat), radius_m=float(rng.uniform(50, 600)),
                              jurisdiction_id=jur, properties=props))
        else:
            zones.append(Zone(f"shared{i}", "exclusion", star_polygon(lon, lat, 0.004, 12, rng).convex_hull,
                              jurisdiction_id=jur, properties=props))
    zones.append(Zone("home", "inclusion", shapely.box(LON0, LAT0, LON0 + 0.002, LAT0 + 0.002), subject_id="s2",
                      schedule=CURFEW))
    zones.append(Zone("clinic", "inclusion", shapely.Point(LON0 + 0.01, LAT0 + 0.01), radius_m=300.0,
                      properties={"role": PERMIT_DESTINATION}))
    return zones


def _registry(rng: np.random.Generator) -> Registry:
    subjects = [SubjectRow(f"s{s}", "j1" if s % 5 else "j2", groups=("g",) if s % 3 == 0 else ())
                for s in range(SUBJECTS)]
    devices = [DeviceRow(f"ankle-{s}", "ankle", f"s{s}") for s in range(SUBJECTS)]
    devices += [DeviceRow("phone-0", "phone", "s0"), DeviceRow("spare", "ankle", None)]
    permits = [PermitRow(1, "s3", T0 + 60_000, T0 + 600_000, 120_000, ("clinic",)),
               PermitRow(2, "s4", T0 - 600_000, T0 + 100_000, 60_000, ("clinic",))]
    jurisdictions = [JurisdictionRow("j0", None), JurisdictionRow("j1", "j0"), JurisdictionRow("j2", "j0")]
    return Registry.build(jurisdictions, subjects, devices, _zones(rng), h3_resolution=9, permits=permits)


def _batch(registry: Registry, zones: list[Zone], rng: np.random.Generator, n: int) -> FixBatch:
    """Fixes hugging zone boundaries (on vertices and edges, at 1e-9 of a circle's radius), ordered by
    device and time as the engine orders them, with stale, suspect, unassigned and phone rows."""
    lon, lat = points_near([z for z in zones if z.id != "county"], rng, n)
    county = shapely.get_coordinates(zones[0].geometry)
    edge = rng.uniform(0, 1, n) < 0.1
    lon[edge], lat[edge] = county[rng.integers(0, len(county), int(edge.sum()))].T
    device = rng.integers(0, len(registry.device_ids), n).astype(np.int32)
    ts = T0 + rng.integers(-300_000, 900_000, n)
    order = np.lexsort((ts, device))
    device, ts, lon, lat = device[order], ts[order], lon[order], lat[order]
    acc = rng.choice([np.nan, 3.0, 25.0, 150.0, 2000.0], n).astype(np.float32)
    cols = FixColumns([registry.device_ids[d] for d in device], ts, lat, lon, acc,
                      rng.integers(0, 3, n).astype(np.int8), np.full(n, NO_BATT, np.int16), np.full(n, NO_SEQ))
    return FixBatch(cols, device, registry.device_subject[device], cells_for(lat, lon, 9),
                    fresh=rng.uniform(0, 1, n) < 0.9, suspect=rng.uniform(0, 1, n) < 0.05)


def _open_pairs(registry: Registry, rng: np.random.Generator, n: int = 20) -> tuple[np.ndarray, np.ndarray]:
    subject = np.sort(rng.integers(0, SUBJECTS, n)).astype(np.int32)
    return subject, rng.integers(0, len(registry.zones.zones), n).astype(np.int32)


def _assert_same(got: Observations, want: Observations) -> None:
    for name in ("subject", "rule", "zone", "device", "ts", "lat", "lon", "breach", "confirmed"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert got.detail == want.detail


@pytest.fixture(scope="module")
def world() -> tuple[Registry, list[Zone]]:
    rng = np.random.default_rng(5)
    registry = _registry(rng)
    return registry, _zones(np.random.default_rng(5))


@pytest.mark.parametrize("seed", range(8))
def test_fused_checks_equal_the_numpy_path(world: tuple[Registry, list[Zone]], seed: int) -> None:
    registry, zones = world
    rng = np.random.default_rng(seed)
    batch = _batch(registry, zones, rng, 1500)
    open_pairs = _open_pairs(registry, rng)
    returned = rng.uniform(0, 1, len(registry.permits.ids)) < 0.5
    want = reference_containment(registry, batch, open_pairs, returned)
    got = evaluate_containment(registry, batch, open_pairs, returned)
    assert len(want) > 1500  # several zones per fix, and some of every kind of answer
    assert want.breach.any() and (~want.breach).any() and (want.confirmed != want.breach).any()
    _assert_same(got, want)
    _assert_same(evaluate_containment(registry, batch, open_pairs, returned, at_own_time=True),
                 reference_containment(registry, batch, open_pairs, returned, at_own_time=True))


@pytest.mark.parametrize("n_open", [31, 32, 33, 700])
def test_many_open_episodes_equal_the_numpy_path(world: tuple[Registry, list[Zone]], n_open: int) -> None:
    """Open pairs are searched block by block (containment_listing's sample): a subject's run of open
    pairs may cross from one block into the next."""
    registry, zones = world
    rng = np.random.default_rng(n_open)
    batch = _batch(registry, zones, rng, 1500)
    open_pairs = _open_pairs(registry, rng, n_open)
    returned = rng.uniform(0, 1, len(registry.permits.ids)) < 0.5
    _assert_same(evaluate_containment(registry, batch, open_pairs, returned),
                 reference_containment(registry, batch, open_pairs, returned))


@pytest.mark.parametrize("threads", [2, 3])
def test_answers_split_across_threads_equal_the_numpy_path(
    world: tuple[Registry, list[Zone]], threads: int
) -> None:
    """Pairs answered in ranges on several threads: the same observations, in the same order."""
    registry, zones = world
    rng = np.random.default_rng(40 + threads)
    batch = _batch(registry, zones, rng, 1500)
    open_pairs = _open_pairs(registry, rng)
    returned = rng.uniform(0, 1, len(registry.permits.ids)) < 0.5
    split = KernelThreads(threads, min_rows=7)
    _assert_same(evaluate_containment(registry, batch, open_pairs, returned, threads=split),
                 reference_containment(registry, batch, open_pairs, returned))


def test_pairs_at_a_rounding_limit_are_left_to_numpy(world: tuple[Registry, list[Zone]]) -> None:
    """A point 1e-12 of a radius off a circle's edge: libm and numpy may round the distance apart."""
    registry, _ = world
    z = registry.zones
    circle = int(np.flatnonzero(z.is_circle & ~registry.shared_mask & ~registry.permit_destination)[0])
    subject = int(np.searchsorted(registry.pair_start, np.flatnonzero(registry.pair_zone == circle)[0], "right") - 1)
    device = np.int32(registry.device_ids.index(f"ankle-{subject}"))
    lat0, lon0 = z.centre_lat[circle], z.centre_lon[circle]
    lat = np.array([lat0 + z.radius_m[circle] * (1 - 1e-12) / (EARTH_RADIUS_M * math.pi / 180)])
    lon = np.array([lon0])
    cols = FixColumns([registry.device_ids[device]], np.array([T0]), lat, lon, np.array([5.0], np.float32),
                      np.zeros(1, np.int8), np.full(1, NO_BATT, np.int16), np.full(1, NO_SEQ))
    batch = FixBatch(cols, np.array([device]), registry.device_subject[[device]], cells_for(lat, lon, 9),
                     np.ones(1, bool), np.zeros(1, bool))
    rc = registry_columns(registry)
    none = np.empty(0, np.int32)
    fix_cols = (batch.device, batch.subject, batch.fresh, batch.suspect, batch.cell, lon, lat, cols.ts,
                cols.acc, cols.src)
    _, _, zone, status, *_ = answered_pairs(fix_cols, rc, none, none, SERIAL)
    assert status[zone == circle].tolist() == [NEEDS_REFERENCE]
    _assert_same(evaluate_containment(registry, batch, (none, none)),
                 reference_containment(registry, batch, (none, none)))


def test_cells_at_another_resolution_are_refused(world: tuple[Registry, list[Zone]]) -> None:
    registry, zones = world
    batch = _batch(registry, zones, np.random.default_rng(1), 50)
    wrong = FixBatch(batch.fixes, batch.device, batch.subject, cells_for(batch.fixes.lat, batch.fixes.lon, 8),
                     np.ones(50, bool), np.zeros(50, bool))
    with pytest.raises(ValueError, match="index resolution 9"):
        evaluate_containment(registry, wrong, (np.empty(0, np.int32), np.empty(0, np.int32)))


@settings(max_examples=200, deadline=None)  # the first example compiles the search (numba's cache aside)
@given(values=st.lists(st.integers(0, 60), max_size=300), probe=st.integers(-1, 62))
def test_sampled_search_finds_what_searchsorted_finds(values: list[int], probe: int) -> None:
    """The open-episode search: the first index whose subject is not below the probe, and its run's end."""
    a = np.sort(np.array(values, dtype=np.int32))
    lo = _block_lower_bound(a, probe, _sampled_block(a[::_SAMPLE].copy(), probe))
    assert lo == np.searchsorted(a, probe, side="left")
    assert _run_end(a, probe, lo) == np.searchsorted(a, probe, side="right")
