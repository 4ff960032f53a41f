"""PostgreSQL's cost per stored fix as the `fixes` table's history grows, at a fleet size.

The end-to-end benchmark starts from an empty table and 20k devices; a service in production writes
into weeks of history from up to 700k devices. This loads history in the service's own transactions
(16 batches of 2,000 fixes, binary COPY in key order, `store/fixes.write_fixes`) into a private cluster
with the ingest settings (`emwatch.embedded.INGEST_SETTINGS`), and at each stop measures 10 more such
transactions: the backend's CPU and the wall time per fix. Last, the time a restart takes to find each
device's newest fix.

`--key minute` (the schema, migration 015): unique (minute, device_id, ts), and device_minutes noted as
the committer notes it (store/minute_notes.py). `--key device` measures the former schema instead:
unique (device_id, ts), no minute column, nothing noted; every device keeps a hot leaf page of its own.

Run: .venv/bin/python benchmarks/bench_history.py [--subjects 700000] [--stops 0,7000000,21000000]
     [--key minute|device]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import asyncpg
import psutil
from bench_writer import Source, cpu_s
from infra import private_postgres, seed

from emwatch.store import fixes
from emwatch.store.minute_notes import MinuteNotes, Notes
from emwatch.store.registry_source import load_device_positions

BATCHES_PER_TX = 16
MEASURED_TX = 10
DEVICE_KEY = """
ALTER TABLE fixes DROP COLUMN minute;
ALTER TABLE fixes ADD PRIMARY KEY (device_id, ts);
"""


async def write(conn: asyncpg.Connection, source: Source, notes: MinuteNotes | None) -> None:
    """One transaction as the committer writes it, noting minutes as it does (store/minute_notes.py);
    with no notes, none (the former schema)."""
    payload = fixes.FixPayload([source.batch() for _ in range(BATCHES_PER_TX)], notes)
    if notes is None:
        payload.notes = Notes.none()
    async with conn.transaction():
        await fixes.write_payload(conn, payload, duplicates="raise")


async def run(args: argparse.Namespace) -> None:
    source = Source(args.subjects)
    per_tx = BATCHES_PER_TX * 2_000
    print(f"{args.subjects:,} devices, key {args.key}; {per_tx:,} fixes per transaction")
    print(f"{'history rows':>14} {'table':>9} {'key index':>10} {'PG CPU µs/fix':>14} {'wall µs/fix':>12}"
          f" {'load s':>7}")
    with tempfile.TemporaryDirectory() as tmp, private_postgres(Path(tmp) / "pg") as (dsn, _):
        await seed(dsn, source.scene)
        conn = await asyncpg.connect(dsn)
        try:
            if args.key == "device":
                await conn.execute(DEVICE_KEY)
            notes = None if args.key == "device" else MinuteNotes()
            backend = psutil.Process(await conn.fetchval("SELECT pg_backend_pid()"))
            stored = 0
            for stop in args.stops:
                t0 = time.perf_counter()
                while stored < stop:
                    await write(conn, source, notes)
                    stored += per_tx
                load_s = time.perf_counter() - t0
                await conn.execute("CHECKPOINT")  # each stop starts from the same state: no dirty backlog
                cpu0, wall0 = cpu_s(backend), time.perf_counter()
                for _ in range(MEASURED_TX):
                    await write(conn, source, notes)
                n = MEASURED_TX * per_tx
                pg_us, wall_us = (cpu_s(backend) - cpu0) / n * 1e6, (time.perf_counter() - wall0) / n * 1e6
                table, key = await conn.fetchrow(
                    "SELECT pg_size_pretty(pg_total_relation_size('fixes')),"
                    " pg_size_pretty(pg_relation_size('fixes_pkey'))"
                )
                print(f"{stored:>14,} {table:>9} {key:>10} {pg_us:14.2f} {wall_us:12.2f} {load_s:7.0f}",
                      flush=True)
                stored += n
            if notes is not None:
                # A restart's seed (registry_source.load_device_positions): each device's newest fix,
                # found through device_minutes. The walkers' clock started 400 days ago.
                t0 = time.perf_counter()
                positions = await load_device_positions(conn, days=500)
                print(f"seed: newest fix of {len(positions):,} devices in {time.perf_counter() - t0:.1f} s")
        finally:
            await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=700_000)
    ap.add_argument("--stops", type=lambda s: [int(x) for x in s.split(",")],
                    default=[0, 7_000_000, 21_000_000], help="history rows at which to measure")
    ap.add_argument("--key", choices=["minute", "device"], default="minute")
    asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    main()
