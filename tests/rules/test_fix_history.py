"""The late-fix history keeps every fix of the horizon packed without loss, and finds a device's fixes
since a time exactly as a scan of everything kept would."""

from __future__ import annotations

import h3
import numpy as np
import pytest
from numpy.typing import NDArray

from emwatch.rules.fix_history import EMPTY_ROWS, FixHistory, FixRows, PackedChunk

RES = 9
T0 = 1_717_228_800_000


def rows(rng: np.random.Generator, n: int, devices: int, *, decimals: int | None = 6, t0: int = T0,
         span_ms: int = 10_000) -> FixRows:
    lat = rng.uniform(29.5, 30.5, n)
    lon = rng.uniform(119.5, 120.5, n)
    if decimals is not None:  # as a gateway's JSON has them
        lat = np.array([float(f"{v:.{decimals}f}") for v in lat])
        lon = np.array([float(f"{v:.{decimals}f}") for v in lon])
    return FixRows(
        rng.integers(0, devices, n).astype(np.int32), t0 + rng.integers(0, span_ms, n).astype(np.int64),
        lat, lon, rng.uniform(3, 60, n).astype(np.float32), rng.integers(0, 3, n).astype(np.int8),
        np.zeros(n, np.uint64), rng.random(n) < 0.1,
    )


def as_set(r: FixRows) -> set[tuple[object, ...]]:
    return set(zip(r.device.tolist(), r.ts.tolist(), r.lat.tolist(), r.lon.tolist(), r.acc.tolist(),
                   r.src.tolist(), r.suspect.tolist(), strict=True))


def bitwise_equal(a: NDArray[np.float64], b: NDArray[np.float64]) -> bool:
    return bool(np.array_equal(a.view(np.uint64), b.view(np.uint64)))


@pytest.mark.parametrize("decimals", [5, 6, 7])
def test_decimal_coordinates_pack_to_22_bytes_a_fix_and_come_back_bit_for_bit(decimals: int) -> None:
    original = rows(np.random.default_rng(decimals), 5_000, 800, decimals=decimals)
    chunk = PackedChunk.pack(original)
    assert chunk.lat.dtype == chunk.lon.dtype == np.int32 and chunk.dt.dtype == np.uint32
    assert chunk.nbytes == 22 * 5_000
    back = chunk.unpack()
    assert bool((np.diff(back.device) >= 0).all())  # sorted by device
    assert as_set(back) == as_set(original)
    assert bitwise_equal(np.sort(back.lat), np.sort(original.lat))
    assert bitwise_equal(np.sort(back.lon), np.sort(original.lon))


def test_coordinates_that_are_not_short_decimals_are_kept_as_doubles() -> None:
    original = rows(np.random.default_rng(1), 1_000, 100, decimals=None)
    original.lat[3] = 30.12345678  # eight places: one value is enough to keep the chunk's column wide
    chunk = PackedChunk.pack(original)
    assert chunk.lat.dtype == np.float64 and chunk.lon.dtype == np.float64
    assert as_set(chunk.unpack()) == as_set(original)


def test_a_chunk_spanning_more_than_49_days_keeps_64_bit_times() -> None:
    original = rows(np.random.default_rng(2), 100, 10, span_ms=10_000)
    original.ts[0] = T0 - 60 * 86_400_000  # a device's first fix, two months old
    chunk = PackedChunk.pack(original)
    assert chunk.dt.dtype == np.int64
    assert as_set(chunk.unpack()) == as_set(original)


def test_a_packed_chunk_holds_copies_not_views_of_the_batch() -> None:
    original = rows(np.random.default_rng(3), 100, 10, decimals=None)
    original = FixRows(*(getattr(original, n) for n in FixRows.__slots__))
    chunk = PackedChunk.pack(original)
    for name in ("device", "dt", "lat", "lon", "acc", "src", "suspect"):
        for source in FixRows.__slots__:
            assert not np.shares_memory(getattr(chunk, name), getattr(original, source))


def test_since_finds_exactly_what_a_scan_of_every_kept_fix_finds_with_h3_cells() -> None:
    rng = np.random.default_rng(4)
    history = FixHistory(horizon_ms=10**9, h3_resolution=RES)
    added = [rows(rng, int(rng.integers(1, 400)), 300, t0=T0 + k * 5_000) for k in range(40)]
    for part in added:
        history.add(part)
    everything = FixRows.concat(added)
    for _ in range(25):
        devices = np.unique(rng.integers(0, 300, int(rng.integers(1, 40)))).astype(np.int32)
        start = T0 + rng.integers(0, 200_000, len(devices)).astype(np.int64)
        found = history.since(devices, start)
        at = np.minimum(np.searchsorted(devices, everything.device), len(devices) - 1)
        wanted = everything.take(np.flatnonzero((devices[at] == everything.device) & (everything.ts >= start[at])))
        assert len(found.ts) == len(wanted.ts)
        assert as_set(found) == as_set(wanted)
        assert found.cell.tolist() == [int(h3.latlng_to_cell(a, o, RES), 16)
                                       for a, o in zip(found.lat.tolist(), found.lon.tolist(), strict=True)]


def test_a_device_with_no_kept_fix_gets_nothing() -> None:
    history = FixHistory(horizon_ms=60_000, h3_resolution=RES)
    history.add(rows(np.random.default_rng(5), 50, 10))
    assert history.since(np.array([10, 11], np.int32), np.array([0, 0], np.int64)) is EMPTY_ROWS


def test_chunks_older_than_the_horizon_are_forgotten_and_their_newest_time_remembered() -> None:
    rng = np.random.default_rng(6)
    history = FixHistory(horizon_ms=60_000, h3_resolution=RES)
    first = rows(rng, 100, 10, t0=T0, span_ms=1_000)
    history.add(first)
    history.add(rows(rng, 100, 10, t0=T0 + 30_000, span_ms=1_000))
    assert history.fixes == 200 and history.forgotten == np.iinfo(np.int64).min
    history.add(rows(rng, 100, 10, t0=T0 + 62_000, span_ms=1_000))  # the first chunk falls out
    assert history.fixes == 200 and history.nbytes == 200 * 22
    assert history.forgotten == int(first.ts.max())
    every = history.since(np.arange(10, dtype=np.int32), np.zeros(10, np.int64))
    assert int(every.ts.min()) >= T0 + 30_000


def test_remap_carries_fixes_to_new_device_numbers_and_drops_removed_devices() -> None:
    rng = np.random.default_rng(7)
    history = FixHistory(horizon_ms=10**9, h3_resolution=RES)
    original = rows(rng, 500, 20)
    history.add(original)
    new_of_old = np.array([19 - d if d % 4 else -1 for d in range(20)], np.int32)  # reversed; every 4th gone
    history.remap(new_of_old)
    found = history.since(np.arange(20, dtype=np.int32), np.zeros(20, np.int64))
    kept = original.take(np.flatnonzero(original.device % 4 != 0))
    moved = FixRows(new_of_old[kept.device], *(getattr(kept, n) for n in FixRows.__slots__[1:]))
    assert as_set(found) == as_set(moved)
    assert history.fixes == len(kept.ts)
