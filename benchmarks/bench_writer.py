"""Commit cost of one batch of fixes (writer.commit_batch) against a private PostgreSQL, by batch size.

Run: .venv/bin/python benchmarks/bench_writer.py [--subjects N] [--batches K]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg
import numpy as np
from infra import private_postgres, seed
from scene import Walkers, build_scene, ingest_batch

from emwatch.pipeline import rule_config
from emwatch.rules.engine import RuleEngine
from emwatch.settings import Settings
from emwatch.store.writer import commit_batch


async def measure(dsn: str, subjects: int, sizes: list[int], batches: int) -> None:
    scene = build_scene(subjects, seed=5)
    await seed(dsn, scene)
    engine = RuleEngine(scene.registry(), rule_config(Settings()))
    walkers = Walkers(scene, np.random.default_rng(1), int(time.time() * 1000) - 3_600_000)
    conn = await asyncpg.connect(dsn)
    try:
        for size in sizes:
            times = []
            for _ in range(batches):
                ev = engine.evaluate(ingest_batch(walkers.next_fixes(size)), (np.empty(0, np.int32),) * 2)
                t0 = time.perf_counter()
                stored, _ = await commit_batch(conn, ev, [])
                times.append(time.perf_counter() - t0)
                assert stored == size, (stored, size)
            med = statistics.median(times)
            print(f"batch {size:6,}: commit {med * 1e3:7.2f} ms  {size / med:10,.0f} fixes/s")
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--subjects", type=int, default=20_000)
    ap.add_argument("--batches", type=int, default=15)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp, private_postgres(Path(tmp) / "pg") as (dsn, _):
        asyncio.run(measure(dsn, args.subjects, [500, 2_000, 5_000, 10_000], args.batches))


if __name__ == "__main__":
    main()
