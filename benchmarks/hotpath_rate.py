"""Hot-path rates for one fleet size, on the cached scene of benchmarks/hotpath.py.

    .venv/bin/python benchmarks/hotpath_rate.py 100000 [--batch 2000] [--profile containment|engine]
                                                       [--stages] [--threads 1 2]

A quick check between full `make bench` runs, in one process over the same batches: containment alone
(`containment_pass`: device lookup, event-time order, H3 cells, `evaluate_containment`) and the whole
engine (`RuleEngine.evaluate` + `EpisodeBook.update`), 20 batches after one warm-up round, printed as
the median fixes/s per batch (wall clock) and fixes per CPU-second; `--profile` prints a pyinstrument
profile of one of the two; `--stages` the median time of each stage of containment_pass; `--threads`
times containment at each kernel-thread count on the same batches, in turn (a paired A/B).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from hotpath import TS0_MS, built, containment_pass, kept_anchors, no_mark
from scene import Walkers, ingest_batch

from emwatch.alerts.episodes import EpisodeBook
from emwatch.kernel_threads import KernelThreads
from emwatch.pipeline import debounce_policies, rule_config
from emwatch.rules.engine import RuleEngine
from emwatch.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("subjects", type=int)
    ap.add_argument("--batch", type=int, default=Settings().batch_max_fixes)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--profile", choices=["containment", "engine"])
    ap.add_argument("--stages", action="store_true", help="median time of each stage of containment_pass")
    ap.add_argument("--threads", type=int, nargs="+", help="kernel-thread counts to time containment at")
    args = ap.parse_args()
    n, size = args.subjects, args.batch
    b = built(n)
    settings = Settings()
    walkers = Walkers(b.scene, np.random.default_rng(7), TS0_MS)
    engine = RuleEngine(b.registry, rule_config(settings))
    book = EpisodeBook(b.registry, (), debounce_policies(settings))
    for _ in range(max(1, n // size)):
        ev = engine.evaluate(ingest_batch(walkers.next_fixes(size)), book.open_pairs())
        book.update(ev.observations)
    stream = [ingest_batch(walkers.next_fixes(size)) for _ in range(args.batches)]
    profiler = None
    if args.profile:
        from pyinstrument import Profiler  # dev extra

        profiler = Profiler(interval=0.0005)
    stages: dict[str, list[float]] = {}
    last, current = [0.0], [""]

    def mark(stage: str) -> None:
        now = time.perf_counter()
        stages.setdefault(f"{stage} ({current[0]})", []).append(now - last[0])
        last[0] = now

    counts = args.threads or [engine.threads.threads]
    parts = [f"containment@{t}" for t in counts] if args.threads else ["containment"]
    seconds: dict[str, list[float]] = {part: [] for part in [*parts, "engine"]}
    cpu: dict[str, list[float]] = {part: [] for part in [*parts, "engine"]}
    configured = engine.threads
    for batch in stream:
        for part in [*parts, "engine"]:
            if profiler and args.profile == part.split("@")[0]:
                profiler.start()
            containment = part.startswith("containment")
            # containment is timed on batches the engine then evaluates: it leaves the anchors as it met them
            with kept_anchors(engine, batch.fixes) if containment else nullcontext():
                t0, c0 = time.perf_counter(), time.process_time()
                if containment:
                    last[0], current[0] = t0, part
                    containment_pass(engine, batch, book.open_pairs(), mark if args.stages else no_mark,
                                     KernelThreads(counts[parts.index(part)]))
                else:
                    book.update(engine.evaluate(batch, book.open_pairs()).observations)
                seconds[part].append(time.perf_counter() - t0)
                cpu[part].append(time.process_time() - c0)
            if profiler and args.profile == part.split("@")[0]:
                profiler.stop()
    if profiler:
        print(profiler.output_text(color=False, show_all=False))
    for stage, times in stages.items():
        print(f"  {stage:36s} {statistics.median(times) * 1e3:7.3f} ms (median per batch)")
    rates = {part: size / statistics.median(s) for part, s in seconds.items()}
    # per CPU-second too: on a shared machine it moves less with the other processes' load
    per_cpu = {part: size * len(s) / max(sum(s), 1e-9) for part, s in cpu.items()}
    figures = " ".join(f"{part} fixes/s={rates[part]:,.0f}" for part in seconds)
    cpu_figures = " ".join(f"{part} {per_cpu[part]:,.0f}" for part in seconds)
    print(f"subjects={n} batch={size} kernel threads={configured.threads} {figures} | "
          f"per CPU-s: {cpu_figures} (registry build {b.build_s:.0f} s, cached={b.cached})")
    if len(parts) > 1:
        base = seconds[parts[0]]
        for part in parts[1:]:
            ratio = statistics.median(a / b for a, b in zip(base, seconds[part], strict=True))
            print(f"  {part} / {parts[0]}: x{ratio:.2f} (median of paired per-batch ratios)")

if __name__ == "__main__":
    main()
