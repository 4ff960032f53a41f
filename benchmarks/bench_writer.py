"""Cost of storing fixes, old path vs new, interleaved in one run against a private database.

Each transaction writes several 2,000-fix batches (the committer joins buffered batches) into a
`fixes` table already holding a few million rows. Per fix it reports wall time, the PostgreSQL
backend's CPU (psutil on its pid) and the service's CPU; the paths compared:
  legacy  tuples -> COPY into a staging table -> INSERT .. SELECT .. ON CONFLICT, subject by probe
  merge   binary COPY (numpy) -> staging -> the same merge (the fallback: a redelivered batch)
  direct  binary COPY straight into `fixes`, subject ids from the registry (the common case)
each into the schema of migrations 001-011 (v011: with the btree on (subject_id, ts)) or of 012 (public).
Also the client-side encoding alone: Python tuples as asyncpg encodes them vs the binary payload.

Run: .venv/bin/python benchmarks/bench_writer.py [--subjects N] [--preload ROWS] [--rounds K]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg
import numpy as np
import psutil
from infra import seed
from scene import RES, Walkers, build_scene, device_id

from emwatch.geo.cells import cells_for
from emwatch.model import NO_SEQ, FixBatch, FixColumns
from emwatch.store import fixes

BATCH = 2_000
LEGACY_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS fixes_in_v2 (
    device_id text, ts_ms bigint, lat float8, lon float8, acc real, src smallint,
    batt smallint, seq bigint, h3 bigint, suspect boolean
) ON COMMIT DELETE ROWS
"""
LEGACY_MERGE = f"""
INSERT INTO fixes (device_id, ts, lat, lon, acc, src, batt, seq, h3, subject_id, suspect)
SELECT device_id, to_timestamp(ts_ms / 1000.0), lat, lon, nullif(acc, 'NaN'),
       (ARRAY['gps', 'wifi', 'lbs'])[src + 1], nullif(batt, -1), nullif(seq, {NO_SEQ}), h3,
       (SELECT d.subject_id FROM devices d WHERE d.id = fixes_in_v2.device_id), suspect
FROM fixes_in_v2
ON CONFLICT (minute, device_id, ts) DO NOTHING
"""
Writer = Callable[[asyncpg.Connection, list[FixBatch]], Awaitable[int]]


def legacy_records(batch: FixBatch) -> Iterator[tuple[object, ...]]:
    """The tuples the previous writer built per row (writer._fix_records before the binary COPY)."""
    f = batch.fixes
    return zip(
        f.device_ids, f.ts.tolist(), f.lat.tolist(), f.lon.tolist(), f.acc.tolist(), f.src.tolist(),
        f.batt.tolist(), f.seq.tolist(), batch.cell.astype("int64").tolist(), batch.suspect.tolist(),
        strict=True,
    )


async def legacy(conn: asyncpg.Connection, batches: list[FixBatch]) -> int:
    await conn.execute(LEGACY_STAGING)
    await conn.copy_records_to_table(
        "fixes_in_v2", records=(r for b in batches for r in legacy_records(b))
    )
    return int((await conn.execute(LEGACY_MERGE)).rsplit(" ", 1)[-1])


async def merge(conn: asyncpg.Connection, batches: list[FixBatch]) -> int:
    payload = fixes.FixPayload(batches)
    return await fixes.merge_fixes(conn, payload.stream(payload.resolved, payload.unresolved))


WRITERS: dict[str, Writer] = {"legacy": legacy, "merge": merge, "direct": fixes.write_fixes}


class Source:
    """Batches of realistic fixes: every device reports once per 10 s round, in random order."""

    def __init__(self, subjects: int, seed_: int = 5) -> None:
        self.scene = build_scene(subjects, seed=seed_)
        self.subject_ids = [s.id for s in self.scene.subjects]
        self.device_ids = [device_id(i) for i in range(len(self.subject_ids))]  # device i is subject i's
        start_ms = int(time.time() * 1000) - 400 * 86_400_000  # room for the preloaded history
        self.walkers = Walkers(self.scene, np.random.default_rng(1), start_ms)

    def batch(self, size: int = BATCH) -> FixBatch:
        cols: FixColumns = self.walkers.next_fixes(size)
        subject = self.walkers.subjects_of(cols).astype(np.int32)
        return FixBatch(
            cols, subject, subject, cells_for(cols.lat, cols.lon, RES), np.ones(size, bool),
            np.zeros(size, bool), subject_ids=self.subject_ids, device_ids=self.device_ids,
        )


def cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def preload(conn: asyncpg.Connection, source: Source, rows: int) -> None:
    """Fill `fixes` with older history, copy it into schema v011 with the indexes of migrations
    001-011 (the subject btree 012 drops), then vacuum/analyze both, as tables in service would be."""
    for _ in range(0, rows, 20_000):
        async with conn.transaction():
            await fixes.write_fixes(conn, [source.batch(20_000)])
    await conn.execute(
        "CREATE SCHEMA v011; CREATE TABLE v011.fixes (LIKE public.fixes INCLUDING ALL);"
        " INSERT INTO v011.fixes SELECT * FROM public.fixes;"
        " CREATE INDEX fixes_subject_ts_idx ON v011.fixes (subject_id, ts)"
    )
    await conn.execute("VACUUM ANALYZE public.fixes")
    await conn.execute("VACUUM ANALYZE v011.fixes")


# (path, schema): the schema's `fixes` table is written; v011 has the subject btree, public does not.
CASES = [("legacy", "v011"), ("direct", "v011"), ("merge", "public"), ("direct", "public")]


async def measure(dsn: str, source: Source, per_tx: int, rounds: int) -> dict[str, dict[str, float]]:
    """Per fix: PostgreSQL backend and service CPU (summed over the rounds: /proc counts 10 ms ticks)
    and the median wall time, per case, interleaved round by round."""
    conns = {schema: await asyncpg.connect(dsn, server_settings={"search_path": f"{schema}, public"})
             for schema in ("v011", "public")}
    backends = {s: psutil.Process(await c.fetchval("SELECT pg_backend_pid()")) for s, c in conns.items()}
    pg = dict.fromkeys(CASES, 0.0)
    svc = dict.fromkeys(CASES, 0.0)
    walls: dict[tuple[str, str], list[float]] = {case: [] for case in CASES}
    n = per_tx * BATCH
    try:
        for _ in range(rounds):
            for case in CASES:  # interleaved: the shared machine's noise hits all alike
                path, schema = case
                batches = [source.batch() for _ in range(per_tx)]
                pg0, me0, t0 = cpu_s(backends[schema]), time.process_time(), time.perf_counter()
                async with conns[schema].transaction():
                    stored = await WRITERS[path](conns[schema], batches)
                walls[case].append((time.perf_counter() - t0) / n)
                pg[case] += cpu_s(backends[schema]) - pg0
                svc[case] += time.process_time() - me0
                assert stored == n, (case, stored, n)
    finally:
        for c in conns.values():
            await c.close()
    total = n * rounds
    return {f"{path}@{schema}": {"pg_us": pg[(path, schema)] / total * 1e6,
                                 "svc_us": svc[(path, schema)] / total * 1e6,
                                 "wall_us": statistics.median(walls[(path, schema)]) * 1e6}
            for path, schema in CASES}


def encode_cost(source: Source, per_tx: int, reps: int = 15) -> dict[str, float]:
    """Service CPU per fix to turn the batches into what asyncpg sends (tuples: the records asyncpg then
    encodes per value, timed with a list of them, a lower bound)."""
    batches = [source.batch() for _ in range(per_tx)]
    n = per_tx * BATCH

    def per_fix(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            times.append(time.process_time() - t0)
        return statistics.median(times) / n * 1e6

    return {
        "tuples_us": per_fix(lambda: [r for b in batches for r in legacy_records(b)]),
        "binary_us": per_fix(lambda: fixes.FixPayload(batches).stream([])),
    }


async def run(admin_dsn: str, args: argparse.Namespace) -> None:
    name = f"emwatch_bench_writer_{os.getpid()}_{int(time.time())}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    dsn = admin_dsn.rsplit("/", 1)[0] + f"/{name}"
    try:
        source = Source(args.subjects)
        await seed(dsn, source.scene)
        conn = await asyncpg.connect(dsn)
        t0 = time.perf_counter()
        await preload(conn, source, args.preload)
        rows = await conn.fetchval("SELECT count(*) FROM fixes")
        await conn.close()
        print(f"preloaded {rows:,} fixes in {time.perf_counter() - t0:.0f} s; "
              f"{args.per_tx} x {BATCH:,} fixes per transaction, {args.rounds} interleaved rounds")
        enc = encode_cost(source, args.per_tx)
        print(f"encode only, service CPU per fix: tuples {enc['tuples_us']:.2f} µs, "
              f"binary {enc['binary_us']:.2f} µs ({enc['tuples_us'] / enc['binary_us']:.1f}x)")
        result = await measure(dsn, source, args.per_tx, args.rounds)
        print(f"{'path@schema':14} {'PG CPU µs/fix':>14} {'svc CPU µs/fix':>15} {'wall µs/fix':>12}"
              f" {'fixes/s':>10}")
        for case, r in result.items():
            print(f"{case:14} {r['pg_us']:14.2f} {r['svc_us']:15.2f} {r['wall_us']:12.2f}"
                  f" {1e6 / r['wall_us']:10,.0f}")
        old, new = result["legacy@v011"], result["direct@public"]
        ratio = {k: old[k] / new[k] for k in old}
        print(f"direct@public (new) vs legacy@v011 (old): PG CPU {ratio['pg_us']:.1f}x less, service CPU"
              f" {ratio['svc_us']:.1f}x less, wall {ratio['wall_us']:.1f}x faster")
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", default="postgresql://postgres@127.0.0.1:5432/postgres",
                    help="a server where we may create (and drop) a private database")
    ap.add_argument("--subjects", type=int, default=20_000)
    ap.add_argument("--preload", type=int, default=3_000_000, help="fixes in the table before measuring")
    ap.add_argument("--per-tx", type=int, default=8, help="2,000-fix batches per transaction")
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args()
    asyncio.run(run(args.dsn, args))


if __name__ == "__main__":
    main()
