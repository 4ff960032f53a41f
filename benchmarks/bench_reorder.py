"""The late-fix history at national scale: memory and replay lookup, packed vs. as the fixes arrive.

The rule engine keeps every fix of the reorder horizon (300 s) for late-fix replays (rules/reorder.py):
at 70k fixes/s that is 21M fixes. This fills a history with the design point's traffic (700k devices
reporting every 10 s, batches of 8,000 fixes sorted by device as the engine hands them over, coordinates
with 6 decimals as gateways send them) and measures, each variant in a fresh process:
- RSS growth per kept fix, and the time `add` takes per batch;
- the time `since` takes to find the kept fixes of 1 / 10 / 100 devices (a replay's lookup).
The baseline is the former history (rules/reorder.py before session 12), kept here: chunks of the
columns as they came (42 bytes a fix) and a scan of every kept fix per lookup.

Run: .venv/bin/python benchmarks/bench_reorder.py [--devices 700000] [--rate 70000] [--horizon-s 300]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np
import psutil
from numpy.typing import NDArray
from report import table

from emwatch.heap import release_free_heap
from emwatch.rules.fix_history import FixHistory, FixRows

BATCH = 8_000
RES = 9
T0 = 1_790_000_000_000


class History(Protocol):
    def add(self, rows: FixRows) -> None: ...
    def since(self, devices: NDArray[np.int32], start: NDArray[np.int64]) -> FixRows: ...


class ArrivalChunks:
    """The baseline: the former FixHistory, the columns of each batch as they came, scanned per lookup."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._chunks: deque[tuple[int, FixRows]] = deque()
        self._newest = np.iinfo(np.int64).min

    def add(self, rows: FixRows) -> None:
        newest = int(rows.ts.max())
        self._chunks.append((newest, rows))
        self._newest = max(self._newest, newest)
        while self._chunks and self._chunks[0][0] < self._newest - self.horizon_ms:
            self._chunks.popleft()

    def since(self, devices: NDArray[np.int32], start: NDArray[np.int64]) -> FixRows:
        parts = []
        for _, rows in self._chunks:
            at = np.minimum(np.searchsorted(devices, rows.device), len(devices) - 1)
            keep = (devices[at] == rows.device) & (rows.ts >= start[at])
            if keep.any():
                parts.append(rows.take(np.flatnonzero(keep)))
        return FixRows.concat(parts)


def batches(devices: int, rate: float, seconds: float) -> Any:
    """The design point's traffic: every device once per devices/rate seconds, BATCH fixes at a time."""
    rng = np.random.default_rng(5)
    lat0 = np.round(rng.uniform(20, 45, devices), 6)
    lon0 = np.round(rng.uniform(100, 125, devices), 6)
    cursor, total = 0, int(rate * seconds)
    for first in range(0, total, BATCH):
        n = min(BATCH, total - first)
        device = (cursor + np.arange(n)) % devices
        cursor += n
        order = np.argsort(device, kind="stable")
        device = device[order].astype(np.int32)
        ts = T0 + ((first + order) / rate * 1000).astype(np.int64)
        step = np.round(rng.normal(0, 2e-4, (2, n)), 6)
        yield FixRows(device, ts, np.round(lat0[device] + step[0], 6), np.round(lon0[device] + step[1], 6),
                      rng.uniform(3, 30, n).astype(np.float32), np.zeros(n, np.int8),
                      rng.integers(1, 2**62, n).astype(np.uint64), np.zeros(n, bool))


def measure(variant: str, devices: int, rate: float, horizon_s: float) -> dict[str, Any]:
    """In a fresh process: fill the history for a horizon and a half, then time lookups."""
    history: History = (FixHistory(int(horizon_s * 1000), RES) if variant == "packed"
                        else ArrivalChunks(int(horizon_s * 1000)))
    rss0 = psutil.Process().memory_info().rss
    add_s = []
    for rows in batches(devices, rate, horizon_s * 1.5):
        t = time.perf_counter()
        history.add(rows)
        add_s.append(time.perf_counter() - t)
    del rows
    release_free_heap()  # the batches' own columns, freed once a chunk is dropped or packed
    kept = int(rate * horizon_s)
    rss = psutil.Process().memory_info().rss - rss0
    rng = np.random.default_rng(9)
    lookup: dict[int, float] = {}
    newest = T0 + int(horizon_s * 1.5 * 1000)
    for k in (1, 10, 100):
        times = []
        for _ in range(5):
            dev = np.unique(rng.integers(0, devices, k)).astype(np.int32)
            start = np.full(len(dev), newest - 60_000, np.int64)  # late by a minute
            t = time.perf_counter()
            history.since(dev, start)
            times.append(time.perf_counter() - t)
        lookup[k] = float(np.median(times))
    return {"variant": variant, "kept": kept, "rss_mb": rss / 2**20, "bytes_per_fix": rss / kept,
            "add_ms": float(np.median(add_s)) * 1e3, "lookup_ms": {k: v * 1e3 for k, v in lookup.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=700_000)
    ap.add_argument("--rate", type=float, default=70_000)
    ap.add_argument("--horizon-s", type=float, default=300)
    args = ap.parse_args()
    ctx = multiprocessing.get_context("spawn")
    results = []
    for variant in ("arrival", "packed"):
        with ctx.Pool(1) as pool:
            results.append(pool.apply(measure, (variant, args.devices, args.rate, args.horizon_s)))
    base, packed = results
    print(f"late-fix history: {args.devices:,} devices, {args.rate:,.0f} fixes/s,"
          f" horizon {args.horizon_s:.0f} s ({base['kept']:,} fixes kept), batches of {BATCH:,}")
    print(table("", ["variant", "RSS MiB", "bytes/fix", "add ms/batch", "since 1 dev ms", "since 10 ms",
                     "since 100 ms"],
                [[r["variant"], r["rss_mb"], r["bytes_per_fix"], r["add_ms"], *r["lookup_ms"].values()]
                 for r in results]))
    ratio = {k: packed["lookup_ms"][k] / base["lookup_ms"][k] for k in (1, 10, 100)}
    print(f"packed / arrival: memory x{packed['rss_mb'] / base['rss_mb']:.2f},"
          f" add x{packed['add_ms'] / base['add_ms']:.2f}, since(10) x{ratio[10]:.3f}")


if __name__ == "__main__":
    main()
