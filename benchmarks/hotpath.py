"""Hot path, in-process: RuleEngine.evaluate + EpisodeBook.update vs a naive loop vs PostGIS, same batches."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import numpy as np
import shapely
from baselines import NaiveLoop, load_postgis, postgis_evaluate
from scene import Scene, Walkers, build_scene, ingest_batch

import emwatch
from emwatch.alerts.episodes import EpisodeBook
from emwatch.model import FixColumns
from emwatch.pipeline import debounce_policies, rule_config
from emwatch.registry import Registry
from emwatch.rules.engine import RuleEngine
from emwatch.settings import Settings

CACHE = Path(".emwatch/bench-cache")
TS0_MS = 1_717_200_000_000


@dataclass
class Built:
    """A scene and the registry the service would build from it, with how long the build took."""

    scene: Scene
    registry: Registry
    build_s: float  # Registry.build (zones, H3 covers and interior cells) on a cold cache
    cached: bool


def _code_key() -> str:
    """Hash of the code a registry build depends on: a change there invalidates cached builds."""
    root = Path(emwatch.__file__).parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("geo/*.py"), root / "registry.py", Path(__file__).with_name("scene.py")]):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def built(n_subjects: int, seed: int = 42) -> Built:
    """Scene + registry for n_subjects, from the on-disk cache when the code has not changed."""
    path = CACHE / f"registry-{n_subjects}-{seed}-{_code_key()}.pickle"
    if path.exists():
        with path.open("rb") as f:
            scene, registry, build_s = pickle.load(f)
        geoms = registry.zones.geometries
        polygons = np.array([g is not None for g in geoms], dtype=bool)
        shapely.prepare(geoms[polygons])  # prepared state does not survive pickling
        return Built(scene, registry, build_s, cached=True)
    scene = build_scene(n_subjects, seed)
    t0 = time.perf_counter()
    registry = scene.registry()
    build_s = time.perf_counter() - t0
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump((scene, registry, build_s), f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.rename(path)
    for stale in CACHE.glob(f"registry-{n_subjects}-{seed}-*.pickle"):
        if stale != path:  # built by code that has changed since
            stale.unlink()
    return Built(scene, registry, build_s, cached=False)


@dataclass
class HotpathResult:
    subjects: int
    zones: int
    batch: int
    engine_fixes_per_s: float
    naive_fixes_per_s: float
    postgis_fixes_per_s: float | None
    alerts_per_batch: float
    build_s: float

    @property
    def ratio_vs_naive(self) -> float:
        return self.engine_fixes_per_s / self.naive_fixes_per_s

    @property
    def ratio_vs_postgis(self) -> float | None:
        return self.engine_fixes_per_s / self.postgis_fixes_per_s if self.postgis_fixes_per_s else None


def run_hotpath(
    b: Built, batches: int, naive_fixes: int, postgis_url: str | None, postgis_batches: int, seed: int = 7
) -> HotpathResult:
    """Median fixes/s of each contender over the same stream of batches (one warm-up round first)."""
    settings = Settings()
    batch_size = settings.batch_max_fixes
    scene = b.scene
    walkers = Walkers(scene, np.random.default_rng(seed), TS0_MS)
    # built exactly as the pipeline builds them, so every rule that exists runs
    engine = RuleEngine(b.registry, rule_config(settings))
    book = EpisodeBook(b.registry, (), debounce_policies(settings))
    # warm-up: one full round opens the episodes of subjects who start in breach
    for _ in range(max(1, scene.n_subjects // batch_size)):
        ev = engine.evaluate(ingest_batch(walkers.next_fixes(batch_size)), book.open_pairs())
        book.update(ev.observations)
    rates, alerts = [], []
    stream = [walkers.next_fixes(batch_size) for _ in range(batches)]
    for cols in stream:
        t0 = time.perf_counter()
        ev = engine.evaluate(ingest_batch(cols), book.open_pairs())
        events = book.update(ev.observations)
        rates.append(len(cols) / (time.perf_counter() - t0))
        alerts.append(len(events))

    naive = NaiveLoop(scene)
    naive_rates = []
    for cols in stream[:3]:
        k = min(naive_fixes, len(cols))
        subj = walkers.subjects_of(cols)[:k]
        t0 = time.perf_counter()
        naive.evaluate(subj, cols.lon[:k], cols.lat[:k])
        naive_rates.append(k / (time.perf_counter() - t0))

    pg_rate = None
    if postgis_url is not None:
        pg_rate = asyncio.run(_postgis_rates(postgis_url, scene, walkers, stream[:postgis_batches]))
    return HotpathResult(
        subjects=scene.n_subjects, zones=len(b.registry.zones.zones), batch=batch_size,
        engine_fixes_per_s=statistics.median(rates), naive_fixes_per_s=statistics.median(naive_rates),
        postgis_fixes_per_s=pg_rate, alerts_per_batch=statistics.mean(alerts), build_s=b.build_s,
    )


async def _postgis_rates(url: str, scene: Scene, walkers: Walkers, stream: list[FixColumns]) -> float:
    conn = await asyncpg.connect(url)
    try:
        await load_postgis(conn, scene)
        rates = []
        for cols in stream:
            subj = walkers.subjects_of(cols)
            t0 = time.perf_counter()
            await postgis_evaluate(conn, subj, scene.subject_county[subj], cols.lon, cols.lat)
            rates.append(len(cols) / (time.perf_counter() - t0))
        return float(statistics.median(rates))
    finally:
        await conn.close()
