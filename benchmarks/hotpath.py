"""Hot path, in-process: containment and the whole engine vs a naive loop vs PostGIS, same batches."""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import numpy as np
import shapely
from baselines import NaiveLoop, load_postgis, postgis_evaluate
from numpy.typing import NDArray
from scene import Scene, Walkers, build_scene, ingest_batch

import emwatch
from emwatch.alerts.episodes import EpisodeBook
from emwatch.geo.cell_memo import memo_cells
from emwatch.geo.cells import cells_for
from emwatch.ingest.batcher import IngestBatch
from emwatch.kernel_threads import SERIAL, KernelThreads, default_thread_count
from emwatch.model import FixBatch, FixColumns, Observations
from emwatch.pipeline import debounce_policies, rule_config
from emwatch.registry import Registry
from emwatch.rules.batch_order import device_time_order
from emwatch.rules.containment import evaluate_containment, subject_pairs
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


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def _code_key() -> str:
    """Hash of the code a registry build depends on: a change there invalidates cached builds."""
    root = Path(emwatch.__file__).parent
    return _digest([*root.glob("geo/*.py"), root / "registry.py", Path(__file__).with_name("scene.py")])


def _cached(path: Path, make: Callable[[], Any]) -> tuple[Any, bool]:
    """The pickled value at `path`, else make() pickled there (older versions of the same name go)."""
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f), True
    value = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.rename(path)
    stem = path.name.rsplit("-", 1)[0]
    for stale in CACHE.glob(f"{stem}-*.pickle"):
        if stale != path:  # made by code that has changed since
            stale.unlink()
    return value, False


def built(n_subjects: int, seed: int = 42) -> Built:
    """Scene + registry for n_subjects, from the on-disk cache when the code has not changed. The scene
    (minutes at 700k) is cached apart from the registry, so that a change to geo/ rebuilds only the latter."""
    scene_key = _digest([Path(__file__).with_name("scene.py")])
    scene, _ = _cached(CACHE / f"scene-{n_subjects}-{seed}-{scene_key}.pickle",
                       lambda: build_scene(n_subjects, seed))

    def build() -> tuple[Registry, float]:
        t0 = time.perf_counter()
        registry = scene.registry()
        return registry, time.perf_counter() - t0

    (registry, build_s), cached = _cached(CACHE / f"registry-{n_subjects}-{seed}-{_code_key()}.pickle", build)
    if cached:
        geoms = registry.zones.geometries
        polygons = np.array([g is not None for g in geoms], dtype=bool)
        shapely.prepare(geoms[polygons])  # prepared state does not survive pickling
    return Built(scene, registry, build_s, cached=cached)


def no_mark(stage: str) -> None:
    pass


def containment_pass(
    engine: RuleEngine, batch: IngestBatch, open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
    mark: Callable[[str], None] = no_mark, threads: KernelThreads | None = None,
) -> Observations:
    """Containment alone, as `RuleEngine.evaluate` runs it: resolve devices, order by event time, H3
    cells (from each device's cell anchor: geo/cell_memo.py), then `evaluate_containment` (own + shared +
    open-episode zones, accuracy-aware). It moves the batch's devices' cell anchors as the engine would;
    a caller timing a batch more than once puts them back (`kept_anchors`), so that each pass meets the
    anchors of the reports before the batch, not its own. The question the naive loop and PostGIS
    answer, and more.
    `mark(stage)` is called as each stage ends (hotpath_rate.py --stages times them); `threads`: the
    compiled kernels' split (the engine's own by default)."""
    registry, cols = engine.registry, batch.fixes
    threads = threads or engine.threads
    device = engine.devices.resolve(cols.device_ids, threads)
    mark("device lookup")
    rows = device_time_order(np.flatnonzero(device >= 0), device, cols.ts)
    mark("event-time order")
    fixes, device = cols.take(rows), device[rows]
    mark("FixColumns.take")
    cells = memo_cells(fixes.lat, fixes.lon, device, engine.state.cell_anchor, engine.h3_resolution, threads)
    mark("H3 cells")
    fix_batch = FixBatch(
        fixes=fixes, device=device, subject=registry.device_subject[device], cell=cells,
        fresh=fixes.ts > engine.last_ts[device], suspect=np.zeros(len(device), dtype=bool),
    )
    mark("FixBatch")
    out = evaluate_containment(registry, fix_batch, open_pairs, threads=threads)
    mark("evaluate_containment")
    return out


def geo_hits(registry: Registry, subject: NDArray[np.int32], lon: NDArray[np.float64],
             lat: NDArray[np.float64], res: int) -> int:
    """(fix, zone) pairs with the fix inside: own zones + applicable shared zones, by the engine's geo
    index. The number the naive loop and PostGIS must also find, if they answer the same question."""
    rows_a, zone_a = subject_pairs(registry, subject)
    cells = cells_for(lat, lon, res)
    pos_b, zone_b = registry.zones.candidates(cells, registry.shared_mask)
    keep = registry.shared_zone_applies(subject[pos_b], zone_b)
    rows = np.concatenate([rows_a, pos_b[keep]])
    zones = np.concatenate([zone_a, zone_b[keep]]).astype(np.int32)
    return int(registry.zones.contains(zones, lon[rows], lat[rows], cells[rows]).sum())


@dataclass
class HotpathResult:
    """Median fixes/s per batch of each contender. The ratios compare like with like: containment on one
    thread against single-threaded baselines answering the containment question, each batch timed back
    to back with containment on the same fixes (paired), the median of the per-batch ratios."""

    subjects: int
    zones: int
    batch: int
    containment_fixes_per_s: float  # containment_pass over a kernel thread per core: the target's figure
    containment_serial_fixes_per_s: float  # the same on one thread: what the ratios compare (like with like)
    kernel_threads: int
    threads_ratio: float  # median paired ratio, kernel threads over one thread
    engine_fixes_per_s: float  # RuleEngine.evaluate + EpisodeBook.update: every rule, episodes
    naive_fixes_per_s: float
    postgis_fixes_per_s: float | None
    ratio_vs_naive: float
    ratio_vs_postgis: float | None
    alerts_per_batch: float
    build_s: float
    hits: dict[str, int]  # inside (fix, zone) pairs on the baselines' fixes: engine index vs each

    @property
    def engine_ratio_vs_naive(self) -> float:
        return self.engine_fixes_per_s / self.naive_fixes_per_s

    @property
    def engine_ratio_vs_postgis(self) -> float | None:
        return self.engine_fixes_per_s / self.postgis_fixes_per_s if self.postgis_fixes_per_s else None


def run_hotpath(
    b: Built, batches: int, naive_fixes: int, postgis_url: str | None, postgis_batches: int, seed: int = 7
) -> HotpathResult:
    """Median fixes/s of each contender over the same stream of batches (one warm-up round first).

    Containment is timed over the stream (a thread per core, then one thread, twice), then the whole
    engine batch by batch on the same batches. The naive loop and PostGIS then answer the containment
    question for further batches, each right after one-thread containment is timed on the same fixes.
    """
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
    rates, contain_rates, serial_rates, alerts = [], [], [], []
    stream = [walkers.next_fixes(batch_size) for _ in range(batches)]
    both_cores = KernelThreads(default_thread_count())  # the rules with the machine to themselves
    # Containment as a busy service meets it, batch after batch: the whole stream at each thread count
    # in turn, twice. Timed between engine batches instead, the split pays numba's pool waking up
    # (0.1-0.5 ms on this VM) at every batch: a pool that is never idle does not.
    open_pairs = book.open_pairs()
    for _ in range(2):
        contain_rates += [_containment_rate(engine, cols, open_pairs, both_cores) for cols in stream]
        serial_rates += [_containment_rate(engine, cols, open_pairs) for cols in stream]
    for cols in stream:
        batch = ingest_batch(cols)
        t0 = time.perf_counter()
        ev = engine.evaluate(batch, book.open_pairs())
        events = book.update(ev.observations)
        rates.append(len(cols) / (time.perf_counter() - t0))
        alerts.append(len(events))

    # Fresh batches the engine has not seen (containment only acts on fixes newer than the state)
    pair_stream = [walkers.next_fixes(batch_size) for _ in range(max(3, postgis_batches))]
    registry, res = b.registry, engine.h3_resolution
    hits = {"index (naive fixes)": 0, "naive": 0}
    naive = NaiveLoop(scene)
    naive_rates, naive_ratios = [], []
    for full in pair_stream[:3]:
        k = min(naive_fixes, len(full))
        cols = full.take(np.arange(k))
        contain = _containment_rate(engine, cols, book.open_pairs())
        subj = walkers.subjects_of(cols)
        t0 = time.perf_counter()
        hits["naive"] += naive.evaluate(subj, cols.lon, cols.lat)
        naive_rates.append(k / (time.perf_counter() - t0))
        naive_ratios.append(contain / naive_rates[-1])
        subjects = _registry_subjects(registry, cols)
        hits["index (naive fixes)"] += geo_hits(registry, subjects, cols.lon, cols.lat, res)

    pg_rate = pg_ratio = None
    if postgis_url is not None:
        pg_stream = pair_stream[:postgis_batches]
        pg_rate, pg_ratio, hits["PostGIS"] = asyncio.run(
            _postgis_rates(postgis_url, scene, walkers, pg_stream, engine, book.open_pairs())
        )
        hits["index (PostGIS fixes)"] = sum(
            geo_hits(registry, _registry_subjects(registry, c), c.lon, c.lat, res) for c in pg_stream
        )
    return HotpathResult(
        subjects=scene.n_subjects, zones=len(registry.zones.zones), batch=batch_size,
        containment_fixes_per_s=statistics.median(contain_rates),
        containment_serial_fixes_per_s=statistics.median(serial_rates), kernel_threads=both_cores.threads,
        threads_ratio=statistics.median(a / b for a, b in zip(contain_rates, serial_rates, strict=True)),
        engine_fixes_per_s=statistics.median(rates),
        naive_fixes_per_s=statistics.median(naive_rates), postgis_fixes_per_s=pg_rate,
        ratio_vs_naive=statistics.median(naive_ratios), ratio_vs_postgis=pg_ratio,
        alerts_per_batch=statistics.mean(alerts), build_s=b.build_s, hits=hits,
    )


def _containment_rate(
    engine: RuleEngine, cols: FixColumns, open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
    threads: KernelThreads = SERIAL,
) -> float:
    """Fixes/s of one containment_pass over `cols` (on one thread unless told)."""
    batch = ingest_batch(cols)
    with kept_anchors(engine, cols):
        t0 = time.perf_counter()
        containment_pass(engine, batch, open_pairs, threads=threads)
        return len(cols) / (time.perf_counter() - t0)


@contextmanager
def kept_anchors(engine: RuleEngine, cols: FixColumns) -> Iterator[None]:
    """The cell anchors of the devices of `cols` as they were before the block, put back after it."""
    device = engine.devices.resolve(cols.device_ids)
    device = device[device >= 0]
    anchor = engine.state.cell_anchor
    saved = anchor[device]
    try:
        yield
    finally:
        anchor[device] = saved


def _registry_subjects(registry: Registry, cols: FixColumns) -> NDArray[np.int32]:
    device = np.array([registry.device_index[d] for d in cols.device_ids], dtype=np.int32)
    out: NDArray[np.int32] = registry.device_subject[device]
    return out


async def _postgis_rates(
    url: str, scene: Scene, walkers: Walkers, stream: list[FixColumns], engine: RuleEngine,
    open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
) -> tuple[float, float, int]:
    """Median fixes/s of PostGIS per batch, the median paired ratio containment / PostGIS, and the
    inside (fix, zone) pairs PostGIS found."""
    conn = await asyncpg.connect(url)
    try:
        await load_postgis(conn, scene)
        rates, ratios, hits = [], [], 0
        for cols in stream:
            contain = _containment_rate(engine, cols, open_pairs)
            subj = walkers.subjects_of(cols)
            t0 = time.perf_counter()
            hits += await postgis_evaluate(conn, subj, scene.subject_county[subj], cols.lon, cols.lat)
            rates.append(len(cols) / (time.perf_counter() - t0))
            ratios.append(contain / rates[-1])
        return float(statistics.median(rates)), float(statistics.median(ratios)), hits
    finally:
        await conn.close()
