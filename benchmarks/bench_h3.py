"""Benchmark H3 cell computation: the compiled kernel (geo/h3_kernel.py) vs h3-py called per point.

Run: .venv/bin/python benchmarks/bench_h3.py [--quick] [--res 9]

Both are timed in turn on the same points (interleaved repetitions, medians), so the ratio holds even
when the shared machine is busy. Batches of 2,000 are the engine's micro-batch size.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import numpy as np
from h3.api import basic_int as h3i
from numpy.typing import NDArray

_IMPORT_START = time.perf_counter()
from emwatch.geo.h3_kernel import latlng_to_cells  # noqa: E402  (timed: numba compiles or loads here)

_IMPORT_DONE = time.perf_counter()

LON0, LAT0 = 120.1, 30.3  # Hangzhou

_per_point = np.frompyfunc(h3i.latlng_to_cell, 3, 1)


def h3py_cells(lat: NDArray[np.float64], lon: NDArray[np.float64], res: int) -> NDArray[np.uint64]:
    """The previous cells_for: h3-py's latlng_to_cell once per point through np.frompyfunc."""
    out: NDArray[np.uint64] = _per_point(lat, lon, res).astype(np.uint64)
    return out


def points(where: str, n: int, rng: np.random.Generator) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """`n` points within ~50 km of Hangzhou, or uniform on the sphere."""
    if where == "hangzhou":
        return LAT0 + rng.uniform(-0.4, 0.4, n), LON0 + rng.uniform(-0.45, 0.45, n)
    return np.degrees(np.arcsin(rng.uniform(-1, 1, n))), rng.uniform(-180, 180, n)


def rate(
    fn: Callable[[NDArray[np.float64], NDArray[np.float64], int], NDArray[np.uint64]],
    batches: list[tuple[NDArray[np.float64], NDArray[np.float64]]],
    res: int,
) -> tuple[float, float]:
    """Points per wall-clock second and per CPU second of `fn` over all batches (one timing)."""
    n = sum(len(lat) for lat, _ in batches)
    t0, c0 = time.perf_counter(), time.process_time()
    for lat, lon in batches:
        fn(lat, lon, res)
    return n / (time.perf_counter() - t0), n / max(time.process_time() - c0, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer points and repetitions")
    parser.add_argument("--res", type=int, default=9)
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 15, quick 3)")
    args = parser.parse_args()
    reps = args.reps or (3 if args.quick else 15)
    total = 20_000 if args.quick else 200_000
    rng = np.random.default_rng(5)

    t0 = time.perf_counter()
    latlng_to_cells(np.array([LAT0]), np.array([LON0]), args.res)
    first_call_s = time.perf_counter() - t0
    import_s = _IMPORT_DONE - _IMPORT_START

    print(f"# H3 latlng -> cell, res {args.res}, {reps} interleaved repetitions, medians")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores; importing h3_kernel took "
        f"{import_s:.2f} s (numba compile or cache load), then the first call {first_call_s * 1e3:.0f} ms"
    )
    print("# pts/s: per wall-clock second; per CPU second (moves less with the other load on the box)")
    print(
        f"{'points':<10} {'shape':<14} {'kernel pts/s':>13} {'h3-py pts/s':>12} {'ratio':>6}"
        f" {'kernel /cpu-s':>14} {'h3-py /cpu-s':>13} {'ratio':>6}"
    )
    for where in ("hangzhou", "global"):
        lat, lon = points(where, total, rng)
        assert np.array_equal(latlng_to_cells(lat, lon, args.res), h3py_cells(lat, lon, args.res))
        for label, size in ((f"{total:,}", total), ("2,000 batches", 2_000)):
            batches = [(lat[i : i + size], lon[i : i + size]) for i in range(0, total, size)]
            wall: list[tuple[float, float]] = []
            cpu: list[tuple[float, float]] = []
            for _ in range(reps):
                kw, kc = rate(latlng_to_cells, batches, args.res)
                hw, hc = rate(h3py_cells, batches, args.res)
                wall.append((kw, hw))
                cpu.append((kc, hc))
            w, c = np.array(wall), np.array(cpu)
            print(
                f"{where:<10} {label:<14} {np.median(w[:, 0]):>13,.0f} {np.median(w[:, 1]):>12,.0f}"
                f" {np.median(w[:, 0] / w[:, 1]):>5.1f}x {np.median(c[:, 0]):>14,.0f}"
                f" {np.median(c[:, 1]):>13,.0f} {np.median(c[:, 0] / c[:, 1]):>5.1f}x"
            )


if __name__ == "__main__":
    main()
