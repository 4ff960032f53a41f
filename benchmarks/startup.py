"""Startup: seconds from an empty process to a registry loaded from PostgreSQL, phase by phase.

    .venv/bin/python benchmarks/startup.py                 # 100k and 700k subjects
    .venv/bin/python benchmarks/startup.py --sizes 100000 --serve

Seeds a private PostgreSQL cluster with the national scene (kept in .emwatch/startup-pg, keyed by the
scene generator and the size, so only the first run pays for seeding: ~3 min at 100k subjects, ~21 min
at 700k on a busy 2-core machine; later migrations are applied on reuse, and zones seeded before
migration 013 get their WKB once, ~4 min at 700k), then times the service's
own load path, `registry_source.load_registry`, split into its phases: fetching rows, parsing zones,
zone versions, the zone index (interior cells, H3 covers) and the rest of `Registry.build`.
`--serve` also times `emwatch serve` from spawn to /healthz 200.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).parent))

from infra import Service, private_mosquitto, private_postgres, seed
from report import table
from scene import RES, build_scene

from emwatch.geo import zone_build
from emwatch.geo import zone_index as zone_index_module
from emwatch.registry import ContactBanRow, DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.store import registry_source, zone_rows
from emwatch.store.db import connect_pool, migrate

PG_ROOT = Path(".emwatch/startup-pg")
TARGET_S = 60.0


@dataclass
class StartupResult:
    """How long one load of the registry took, in total and per phase (seconds)."""

    n_subjects: int
    n_zones: int
    seed_s: float | None  # None: the seeded cluster came from the cache
    phases: dict[str, float] = field(default_factory=dict)
    cpu_s: float = 0.0  # process CPU time of the phased load: steadier than wall time on a shared machine
    load_registry_s: float = 0.0  # registry_source.load_registry, untouched, timed as a whole
    serve_ready_s: float | None = None

    @property
    def total_s(self) -> float:
        """Phases summed: the instrumented run of the same load path."""
        return sum(v for k, v in self.phases.items() if k not in PART_OF.values())


def scene_key(n_subjects: int, seed_value: int) -> str:
    """The seeded cluster depends on the scene generator and the size (later migrations are applied
    on reuse)."""
    digest = hashlib.sha256(f"{n_subjects}-{seed_value}".encode())
    digest.update(Path(__file__).with_name("scene.py").read_bytes())
    return f"{n_subjects}-{digest.hexdigest()[:12]}"


@contextmanager
def seeded_postgres(n_subjects: int, seed_value: int = 42) -> Iterator[tuple[str, float | None]]:
    """A running private cluster holding the scene; yields (dsn, seconds spent seeding or None if cached)."""
    key = scene_key(n_subjects, seed_value)
    data_dir, done = PG_ROOT / key, PG_ROOT / f"{key}.seeded"
    if not done.exists():  # a half-seeded cluster (interrupted run) is thrown away
        shutil.rmtree(data_dir, ignore_errors=True)
        for stale in PG_ROOT.glob(f"{n_subjects}-*"):
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink()
    with private_postgres(data_dir) as (dsn, _pid):
        seed_s = None
        if not done.exists():
            t0 = time.perf_counter()
            scene = build_scene(n_subjects, seed_value)
            asyncio.run(seed(dsn, scene))
            del scene
            seed_s = time.perf_counter() - t0
            done.write_text(f"{seed_s:.1f}\n")
        else:
            asyncio.run(migrate(dsn))  # the schema may have grown since the cluster was seeded
            asyncio.run(backfill_wkb(dsn))
        yield dsn, seed_s


async def backfill_wkb(dsn: str) -> None:
    """Zones seeded before migration 013 get their WKB once (what a deployment's backfill does)."""
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        if written := await zone_rows.backfill_zone_wkb(conn):
            await conn.execute("VACUUM ANALYZE zones")
            print(f"wrote the WKB of {written:,} zones seeded before migration 013 in "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        await conn.close()


@contextmanager
def timed_calls(phases: dict[str, float], module: Any, name: str, label: str) -> Iterator[None]:
    """Add the time spent in `module.name(...)` to phases[label] while the block runs."""
    raw = vars(module).get(name)  # a classmethod stays one when put back
    original: Callable[..., Any] | None = getattr(module, name, None)
    if original is None or raw is None:  # the code moved on: that phase is simply not broken out
        yield
        return

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t0

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, raw)


SUBJECTS_SQL = "SELECT id, jurisdiction_id, risk_level, groups, status FROM subjects"
DEVICES_SQL = "SELECT id, kind, subject_id, protects_subject_id FROM devices ORDER BY id"
BANS_SQL = "SELECT subject_a, subject_b, radius_m, min_seconds FROM subject_contact_bans"
# Time inside these calls is also counted in the phase that makes them (indented in the table).
PART_OF = {
    "geometries_from_wkb": "   in load_zone_columns: WKB parse",
    "geometries_from_geojson": "   in load_zone_columns: GeoJSON parse",
    "zone_from_feature": "   in load_zone_columns: one by one",
    "ZoneIndex.build": "   in Registry.build: ZoneIndex.build",
    "interior_cells": "   in ZoneIndex.build: interior cells",
    "zone_covers": "   in ZoneIndex.build: H3 covers",
    "polygon_rings": "   in ZoneIndex.build: ring polygons",
}


async def phased_load(dsn: str, resolution: int = RES) -> tuple[dict[str, float], int]:
    """load_registry's steps one by one, timed: the same queries and calls, in the same order."""
    phases: dict[str, float] = {}
    src = registry_source
    async with connect_pool(dsn, min_size=1, max_size=2) as pool, pool.acquire() as conn:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            t0 = time.perf_counter()
            jur = [JurisdictionRow(r["id"], r["parent_id"])
                   for r in await conn.fetch("SELECT id, parent_id FROM jurisdictions")]
            subjects = [SubjectRow(r["id"], r["jurisdiction_id"], r["risk_level"], tuple(r["groups"]),
                                       r["status"]) for r in await conn.fetch(SUBJECTS_SQL)]
            devices = [DeviceRow(r["id"], r["kind"], r["subject_id"], r["protects_subject_id"])
                       for r in await conn.fetch(DEVICES_SQL)]
            phases["fetch subjects, devices"] = time.perf_counter() - t0
            with (
                timed_calls(phases, zone_rows, "geometries_from_wkb", PART_OF["geometries_from_wkb"]),
                timed_calls(phases, zone_rows, "geometries_from_geojson", PART_OF["geometries_from_geojson"]),
                timed_calls(phases, zone_rows, "zone_from_feature", PART_OF["zone_from_feature"]),
            ):
                t0 = time.perf_counter()
                zones = await src.load_zone_columns(conn)
                phases["load_zone_columns (fetch + parse)"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            bans = [ContactBanRow(r["subject_a"], r["subject_b"], r["radius_m"], r["min_seconds"])
                    for r in await conn.fetch(BANS_SQL)]
            permits = await src.load_permits(conn)
            severity = await src.load_severity_overrides(conn)
            phases["bans, permits, severity"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            versions = await src.load_zone_versions(conn, 86_400)
            phases["load_zone_versions"] = time.perf_counter() - t0
    with (
        timed_calls(phases, zone_index_module.ZoneIndex, "build", PART_OF["ZoneIndex.build"]),
        timed_calls(phases, zone_build, "interior_cells", PART_OF["interior_cells"]),
        timed_calls(phases, zone_build, "zone_covers", PART_OF["zone_covers"]),
        timed_calls(phases, zone_build, "polygon_rings", PART_OF["polygon_rings"]),
    ):
        t0 = time.perf_counter()
        registry = Registry.build(
            jur, subjects, devices, zones, resolution, bans, permits, severity, versions
        )
        phases["Registry.build"] = time.perf_counter() - t0
    return phases, len(registry.zones.ids)


async def whole_load(dsn: str, resolution: int = RES) -> float:
    """registry_source.load_registry as the service calls it, untouched."""
    async with connect_pool(dsn, min_size=1, max_size=2) as pool:
        t0 = time.perf_counter()
        await registry_source.load_registry(pool, resolution)
        return time.perf_counter() - t0


async def serve_ready(dsn: str, workdir: Path) -> float:
    """`emwatch serve` from spawn until /healthz answers 200."""
    with private_mosquitto(workdir / "mosquitto") as (mqtt_url, _):
        service = Service(dsn, mqtt_url, workdir)
        try:
            return await service.ready(timeout_s=900)
        finally:
            service.stop()


def run_startup(sizes: list[int], *, whole: bool = True, serve: bool = False) -> list[StartupResult]:
    """Seed (or reuse) a cluster per size and time the registry load; prints a table per size."""
    results = []
    for n in sizes:
        with seeded_postgres(n) as (dsn, seed_s):
            cpu0 = time.process_time()
            phases, n_zones = asyncio.run(phased_load(dsn))
            result = StartupResult(n, n_zones, seed_s, phases, time.process_time() - cpu0)
            if whole:
                result.load_registry_s = asyncio.run(whole_load(dsn))
            if serve:
                with tempfile.TemporaryDirectory(prefix="emwatch-startup-") as tmp:
                    result.serve_ready_s = asyncio.run(serve_ready(dsn, Path(tmp)))
        print_result(result)
        results.append(result)
    return results


def print_result(r: StartupResult) -> None:
    rows: list[list[Any]] = [[name.ljust(40), f"{s:.2f}"] for name, s in r.phases.items()]
    rows.append(["total (phases)".ljust(40), f"{r.total_s:.2f}"])
    rows.append(["   CPU time of the phased load".ljust(40), f"{r.cpu_s:.2f}"])
    if r.load_registry_s:
        rows.append(["load_registry (whole, untouched)".ljust(40), f"{r.load_registry_s:.2f}"])
    if r.serve_ready_s is not None:
        rows.append(["emwatch serve → /healthz 200".ljust(40), f"{r.serve_ready_s:.2f}"])
    seeded = "cached cluster" if r.seed_s is None else f"seeded in {r.seed_s:.0f} s"
    title = f"Startup, {r.n_subjects:,} subjects, {r.n_zones:,} zones ({seeded}; target {TARGET_S:.0f} s)"
    print(table(title, ["phase", "s"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 700_000])
    parser.add_argument("--no-whole", action="store_true", help="skip the untouched load_registry run")
    parser.add_argument("--serve", action="store_true", help="also time `emwatch serve` to /healthz 200")
    args = parser.parse_args()
    run_startup(args.sizes, whole=not args.no_whole, serve=args.serve)


if __name__ == "__main__":
    main()
