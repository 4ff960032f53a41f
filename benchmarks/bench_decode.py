"""Ingest CPU per fix, in-process: JSON gateway batches vs packed (binary) gateway batches, same run.

What the service does per MQTT message before the rules: `MessageDecoder.decode` then `BatchBuilder.add`,
and one `BatchBuilder.build` per flushed micro-batch (2,000 fixes, the default). Both shapes carry the same
fixes (100 per message, as the e2e load generator sends them); repetitions are interleaved so the shared
machine's noise hits both alike, and the figures are medians of CPU time (time.process_time).

Run: .venv/bin/python benchmarks/bench_decode.py [--fixes-per-message 100] [--messages 2000] [--reps 9]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from emwatch.ingest.batcher import BatchBuilder
from emwatch.ingest.decode import MessageDecoder
from emwatch.ingest.packed import encode_batch

TOPIC = "em/v1/gateways/gw-1/batch"
FLUSH_AT = 2_000  # Settings.batch_max_fixes


def messages(n_messages: int, per_message: int, now_ms: int, seed: int = 5) -> dict[str, list[bytes]]:
    """The same fixes as JSON batches (the format benchmarks/loadgen.py publishes) and as packed batches."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[bytes]] = {"json": [], "packed": []}
    for m in range(n_messages):
        ids = [f"dev-{(m * per_message + k) % 700_000:07d}" for k in range(per_message)]
        lat = 30.0 + rng.random(per_message)
        lon = 120.0 + rng.random(per_message)
        ts = now_ms - int(rng.integers(0, 10_000))
        out["json"].append(b"[" + b",".join(
            f'{{"dev":"{d}","ts":{ts},"lat":{y:.6f},"lon":{x:.6f},"acc":8.0}}'.encode()
            for d, y, x in zip(ids, lat.tolist(), lon.tolist(), strict=True)) + b"]")
        # rounded like the JSON text, so both shapes decode to equal columns
        out["packed"].append(encode_batch(ids, np.full(per_message, ts), lat.round(6), lon.round(6), acc=8.0))
    return out


def ingest(decoder: MessageDecoder, payloads: list[bytes], now_ms: int) -> int:
    """Decode every payload into micro-batches as the pipeline does; returns the fixes built."""
    builder, built = BatchBuilder(), 0
    for payload in payloads:
        builder.add(decoder.decode(TOPIC, payload, now_ms))
        if builder.fix_count >= FLUSH_AT:
            built += len(builder.build().fixes)
            builder = BatchBuilder()
    if builder.messages:
        built += len(builder.build().fixes)
    return built


def decode_only(decoder: MessageDecoder, payloads: list[bytes], now_ms: int) -> int:
    return sum(decoder.decode(TOPIC, payload, now_ms).fix_count for payload in payloads)


def cpu_per_fix(fn: Callable[[], int]) -> float:
    """CPU seconds per fix of one call of `fn` (which returns how many fixes it handled)."""
    t0 = time.process_time()
    fixes = fn()
    return (time.process_time() - t0) / fixes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixes-per-message", type=int, default=100)
    ap.add_argument("--messages", type=int, default=2_000)
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    now_ms = int(time.time() * 1000)
    data = messages(args.messages, args.fixes_per_message, now_ms)
    decoder = MessageDecoder()
    expected = args.messages * args.fixes_per_message
    for shape, payloads in data.items():  # both shapes hold every fix: nothing is measured on dead letters
        assert ingest(decoder, payloads, now_ms) == expected, shape
    samples: dict[str, list[float]] = {f"{shape} {what}": [] for shape in data
                                       for what in ("decode", "ingest")}
    for _ in range(args.reps):
        for shape, payloads in data.items():  # interleaved
            samples[f"{shape} decode"].append(cpu_per_fix(partial(decode_only, decoder, payloads, now_ms)))
            samples[f"{shape} ingest"].append(cpu_per_fix(partial(ingest, decoder, payloads, now_ms)))
    median = {k: statistics.median(v) for k, v in samples.items()}
    size = {shape: statistics.mean(len(p) for p in payloads) for shape, payloads in data.items()}
    print(f"{args.messages:,} messages x {args.fixes_per_message} fixes, {args.reps} interleaved reps,"
          f" median CPU time")
    print(f"{'shape':8} {'bytes/msg':>10} {'decode µs/fix':>14} {'decode+build µs/fix':>20} {'fixes/s':>12}")
    for shape in data:
        d, i = median[f"{shape} decode"], median[f"{shape} ingest"]
        print(f"{shape:8} {size[shape]:10,.0f} {d * 1e6:14.3f} {i * 1e6:20.3f} {1 / i:12,.0f}")
    print(f"packed vs JSON: decode+build {median['json ingest'] / median['packed ingest']:.1f}x faster,"
          f" decode alone {median['json decode'] / median['packed decode']:.1f}x,"
          f" payload {size['json'] / size['packed']:.1f}x smaller")


if __name__ == "__main__":
    main()
