"""Engine-only hot-path rate for one fleet size, on the cached scene of benchmarks/hotpath.py.

    .venv/bin/python benchmarks/hotpath_rate.py 100000 [--profile]

A quick check between full `make bench` runs: RuleEngine.evaluate + EpisodeBook.update over 20
batches of 2,000 fixes after one warm-up round, printed as fixes/s (optionally with a cProfile).
"""

from __future__ import annotations

import cProfile
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from hotpath import TS0_MS, built
from scene import Walkers, ingest_batch

from emwatch.alerts.episodes import EpisodeBook
from emwatch.pipeline import debounce_policies, rule_config
from emwatch.rules.engine import RuleEngine
from emwatch.settings import Settings


def main() -> None:
    n = int(sys.argv[1])
    profile = "--profile" in sys.argv
    b = built(n)
    settings = Settings()
    walkers = Walkers(b.scene, np.random.default_rng(7), TS0_MS)
    engine = RuleEngine(b.registry, rule_config(settings))
    book = EpisodeBook(b.registry, (), debounce_policies(settings))
    for _ in range(max(1, n // 2000)):
        ev = engine.evaluate(ingest_batch(walkers.next_fixes(2000)), book.open_pairs())
        book.update(ev.observations)
    stream = [walkers.next_fixes(2000) for _ in range(20)]
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    t0 = time.perf_counter()
    for cols in stream:
        ev = engine.evaluate(ingest_batch(cols), book.open_pairs())
        book.update(ev.observations)
    seconds = time.perf_counter() - t0
    if profiler:
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    rate = 20 * 2000 / seconds
    print(f"subjects={n} fixes/s={rate:,.0f} (registry build {b.build_s:.0f} s, cached={b.cached})")


if __name__ == "__main__":
    main()
