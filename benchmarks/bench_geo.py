"""Benchmark ZoneIndex on a county-sized scene: vectorized pairs vs a naive per-point shapely loop.

Run: .venv/bin/python benchmarks/bench_geo.py [--quick]
"""

from __future__ import annotations

import argparse
import math
import resource
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.cells import cells_for, haversine_m
from emwatch.geo.zone_index import ZoneIndex
from emwatch.geo.zones import Zone

LON0, LAT0 = 120.1, 30.3
RES = 9
T = TypeVar("T")


def star(
    lon: float, lat: float, radius_deg: float, n: int, rng: np.random.Generator, wobble: float
) -> shapely.Polygon:
    """Simple polygon with vertices at sorted angles and noisy radii (concave when wobble > 0)."""
    theta = np.unique(np.sort(rng.uniform(0, 2 * np.pi, n)))
    r = radius_deg * (1 - wobble * rng.uniform(0, 1, len(theta)))
    return shapely.Polygon(
        np.c_[lon + r * np.cos(theta) / math.cos(math.radians(lat)), lat + r * np.sin(theta)]
    )


def county(n: int, rng: np.random.Generator) -> shapely.Polygon:
    """~2,400 km² with lobes and a jagged edge, like a real county outline."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = 0.25 * (
        1
        + 0.25 * np.sin(3 * theta + 1)
        + 0.15 * np.sin(7 * theta)
        + 0.05 * np.sin(23 * theta)
        + 0.02 * rng.standard_normal(n)
    )
    return shapely.Polygon(
        np.c_[LON0 + r * np.cos(theta) / math.cos(math.radians(LAT0)), LAT0 + r * np.sin(theta)]
    )


def small_zone(zid: str, rng: np.random.Generator, scope: dict[str, str], kind: str) -> Zone:
    """A 50-400 m circle or a 12-40 vertex polygon of similar size somewhere in the county."""
    lon, lat = LON0 + rng.uniform(-0.2, 0.2), LAT0 + rng.uniform(-0.15, 0.15)
    if rng.uniform() < 0.4:
        return Zone(zid, kind, shapely.Point(lon, lat), radius_m=float(rng.uniform(50, 400)), **scope)  # type: ignore[arg-type]
    geom = star(lon, lat, float(rng.uniform(0.0008, 0.004)), int(rng.integers(12, 40)), rng, 0.3)
    if not geom.is_valid:
        geom = shapely.convex_hull(geom)
    return Zone(zid, kind, geom, **scope)  # type: ignore[arg-type]


@dataclass
class Scene:
    index: ZoneIndex
    fix_subject: NDArray[np.int64]
    lon: NDArray[np.float64]
    lat: NDArray[np.float64]
    pair_fix: NDArray[np.int64]  # one row per (fix, zone of that fix's subject or the county)
    pair_zone: NDArray[np.int32]


def build_scene(n_subjects: int, n_pairs: int, rng: np.random.Generator) -> tuple[Scene, float]:
    zones = [Zone("county", "inclusion", county(3000, rng), jurisdiction_id="hz")]
    own: list[list[int]] = []
    for s in range(n_subjects):
        first = len(zones)
        kinds = ["inclusion"] + ["exclusion"] * int(rng.integers(1, 4))
        zones += [small_zone(f"s{s}-{k}", rng, {"subject_id": f"s{s}"}, kind) for k, kind in enumerate(kinds)]
        own.append([0, *range(first, len(zones))])
    zones += [small_zone(f"shared-{i}", rng, {"jurisdiction_id": "hz"}, "exclusion") for i in range(1000)]
    t0 = time.perf_counter()
    index = ZoneIndex.build(zones, h3_resolution=RES)
    build_s = time.perf_counter() - t0

    per_fix = np.array([len(z) for z in own])
    n_fixes = int(n_pairs / per_fix.mean())
    fix_subject = rng.integers(0, n_subjects, n_fixes)
    # fixes hug the subject's own zones (home, work, victim's street) or roam the county
    anchor = np.array([index.zones[rng.choice(own[s][1:])].geometry.centroid.coords[0] for s in fix_subject])
    roam = rng.uniform(0, 1, n_fixes) < 0.3
    spread = np.where(roam, 0.2, 0.004)[:, None]
    xy = np.where(roam[:, None], [LON0, LAT0], anchor) + rng.standard_normal((n_fixes, 2)) * spread
    pair_fix = np.repeat(np.arange(n_fixes), per_fix[fix_subject])
    pair_zone = np.concatenate([own[s] for s in fix_subject]).astype(np.int32)
    scene = Scene(index, fix_subject, xy[:, 0].copy(), xy[:, 1].copy(), pair_fix, pair_zone)
    return scene, build_s


def evaluate(scene: Scene) -> int:
    """The per-batch geo work of the rule engine: cells, own-zone pairs, then shared zones."""
    cells = cells_for(scene.lat, scene.lon, RES)
    p = scene.pair_fix
    inside = scene.index.contains(scene.pair_zone, scene.lon[p], scene.lat[p], cells[p])
    pos, zone = scene.index.candidates(cells)
    shared = scene.index.contains(zone, scene.lon[pos], scene.lat[pos], cells[pos])
    return int(inside.sum() + shared.sum())


def naive(scene: Scene, sample: NDArray[np.int64]) -> int:
    """What one would write first: a shapely Point per pair and an unprepared `.contains`."""
    hits = 0
    for i in sample.tolist():
        zone = scene.index.zones[scene.pair_zone[i]]
        x, y = scene.lon[scene.pair_fix[i]], scene.lat[scene.pair_fix[i]]
        if zone.is_circle:
            assert zone.radius_m is not None
            hits += float(haversine_m(y, x, zone.geometry.y, zone.geometry.x)) <= zone.radius_m
        else:
            hits += zone.geometry.contains(shapely.Point(x, y))
    return hits


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[float, T]:
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    assert result is not None
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small scene, fewer repeats")
    args = parser.parse_args()
    n_subjects, n_pairs, n_naive, repeat = (
        (300, 20_000, 2_000, 2) if args.quick else (3_000, 200_000, 20_000, 5)
    )
    rng = np.random.default_rng(42)
    scene, build_s = build_scene(n_subjects, n_pairs, rng)
    ix, n_fix, n_pair = scene.index, len(scene.lon), len(scene.pair_zone)
    print(
        f"scene: {len(ix.zones)} zones ({ix.is_covered.sum()} shared), {n_fix} fixes, {n_pair} own-zone pairs"
    )
    print(f"build: {build_s:.2f} s, {len(ix.interior_keys)} interior keys, {len(ix.cover_cells)} cover rows")

    cells = cells_for(scene.lat, scene.lon, RES)
    p = scene.pair_fix
    t_cells, _ = best_of(repeat, lambda: cells_for(scene.lat, scene.lon, RES))
    t_contains, _ = best_of(
        repeat, lambda: ix.contains(scene.pair_zone, scene.lon[p], scene.lat[p], cells[p])
    )
    t_cand, (pos, zone) = best_of(repeat, lambda: ix.candidates(cells))
    t_shared, _ = best_of(repeat, lambda: ix.contains(zone, scene.lon[pos], scene.lat[pos], cells[pos]))
    t_total, _ = best_of(repeat, lambda: evaluate(scene))
    sample = rng.choice(n_pair, min(n_naive, n_pair), replace=False)
    t_naive, _ = best_of(1, lambda: naive(scene, sample))
    pairs_per_s, naive_per_s = n_pair / t_contains, len(sample) / t_naive

    print(f"cells_for:      {t_cells * 1e3:8.1f} ms  {n_fix / t_cells:12,.0f} fixes/s")
    print(f"contains:       {t_contains * 1e3:8.1f} ms  {pairs_per_s:12,.0f} pairs/s")
    print(f"candidates:     {t_cand * 1e3:8.1f} ms  {len(pos):,} shared candidate pairs")
    print(f"shared contains:{t_shared * 1e3:8.1f} ms")
    print(f"whole batch:    {t_total * 1e3:8.1f} ms  {n_fix / t_total:12,.0f} fixes/s")
    print(f"naive loop:     {naive_per_s:12,.0f} pairs/s on {len(sample):,} sampled pairs")
    print(f"contains speed-up over naive: {pairs_per_s / naive_per_s:.0f}x")

    tracemalloc.start()
    evaluate(scene)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"memory: batch peak {peak / 2**20:.1f} MiB (tracemalloc), process max RSS {rss_mb:.0f} MiB")


if __name__ == "__main__":
    main()
