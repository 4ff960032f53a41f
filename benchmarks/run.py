"""The benchmark suite (`make bench`): hot path vs naive vs PostGIS, end to end, memory, startup.

    .venv/bin/python benchmarks/run.py            # full run: prints tables, appends to RESULTS.md,
                                                  # writes results/latest.json
    .venv/bin/python benchmarks/run.py --quick    # CI-sized smoke run (RESULTS.md row marked quick)

Registries of the large scenes are cached in .emwatch/bench-cache (keyed by the geo code's hash): the
first full run builds the 700k one (about 10 minutes on 2 cores) and records that cold build as the
startup figure; later runs load it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import multiprocessing
import pickle
import resource
import shutil
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import psutil
from e2e import E2EResult, run_e2e
from hotpath import HotpathResult, built, run_hotpath
from infra import private_postgres
from report import table, write
from startup import StartupResult, run_startup

from emwatch.heap import release_free_heap

FULL: dict[str, Any] = {
    "sizes": [10_000, 100_000, 700_000], "postgis_max": 100_000, "batches": 20, "naive": 2_000,
    "memory": [100_000, 700_000], "e2e_subjects": 20_000, "step_s": 6.0,
    # JSON gateway batches, packed binary batches (docs/protocol.md 1.4), one fix per QoS 1 message
    "ladders": {"batch": [30_000, 50_000, 60_000, 75_000, 100_000, 125_000, 150_000, 200_000],
                "batch-bin": [50_000, 75_000, 100_000, 125_000, 150_000, 200_000],
                "single": [10_000, 15_000, 20_000, 25_000, 30_000]},
}
# The design point end to end (--national): every device of a national fleet, 20 s steps (two reports a
# device at 70k fixes/s), gateway batches only; the hot path and memory sections are skipped.
NATIONAL: dict[str, Any] = {
    "e2e_subjects": 700_000, "step_s": 20.0,
    "ladders": {"batch-bin": [70_000, 100_000, 150_000], "batch": [70_000, 100_000, 150_000]},
}
QUICK: dict[str, Any] = {
    "sizes": [2_000], "postgis_max": 2_000, "batches": 3, "naive": 200, "memory": [2_000],
    "e2e_subjects": 1_000, "step_s": 2.0,
    "ladders": {"batch": [2_000], "batch-bin": [2_000], "single": [1_000]},
}


def memory_probe(n: int) -> None:
    """Child process: RSS growth from loading a registry and building the rule state, per device.

    Two figures. `rss_delta`: a fresh interpreter loads the registry alone (pickled from the cache)
    and builds the rule state: the memory the monitored devices hold. `rss_delta_with_scene`: this
    process loads scene + registry, drops the scene (the database's rows) and returns free heap
    pages to the OS (malloc_trim), as a service should after building a registry; what stays above
    the first figure is allocator fragmentation left by the rows.
    """
    import scene  # noqa: F401  (import cost belongs to the baseline)
    from hotpath import built as load

    gc.collect()
    before = psutil.Process().memory_info().rss
    b = load(n)
    registry = b.registry
    del b  # the scene's rows are the database's copy; the service keeps only the registry
    with tempfile.NamedTemporaryFile(suffix=".pickle") as f:
        pickle.dump(registry, f, protocol=pickle.HIGHEST_PROTOCOL)
        f.flush()
        engine, book = _rule_state(registry)
        gc.collect()
        release_free_heap()
        with_scene = psutil.Process().memory_info().rss - before
        del engine, book, registry
        fresh = multiprocessing.get_context("spawn")
        with fresh.Pool(1) as pool:
            devices, rss_delta = pool.apply(_load_registry_rss, (f.name,))
    print(json.dumps({"devices": devices, "rss_delta": rss_delta, "rss_delta_with_scene": with_scene,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def _rule_state(registry: Any) -> tuple[Any, Any]:
    """The rule engine and episode book the service builds over `registry`."""
    from emwatch.alerts.episodes import EpisodeBook
    from emwatch.pipeline import debounce_policies, rule_config
    from emwatch.rules.engine import RuleEngine
    from emwatch.settings import Settings

    settings = Settings()
    return RuleEngine(registry, rule_config(settings)), EpisodeBook(registry, (), debounce_policies(settings))


def _load_registry_rss(path: str) -> tuple[int, int]:
    """In a fresh interpreter: (devices, RSS growth) from unpickling the registry at `path` (preparing
    its shapely geometries, as the service's are) and building the rule state over it."""
    import shapely

    # fixed costs (numba, the rule modules) belong to the baseline, not to the devices
    import emwatch.alerts.episodes
    import emwatch.pipeline
    import emwatch.registry
    import emwatch.rules.engine  # noqa: F401
    gc.collect()
    before = psutil.Process().memory_info().rss
    with open(path, "rb") as f:
        registry = pickle.load(f)
    geometries = registry.zones.geometries
    shapely.prepare(geometries[shapely.is_geometry(geometries)])
    state = _rule_state(registry)
    gc.collect()
    rss = psutil.Process().memory_info().rss - before
    del state
    return len(registry.device_ids), rss


def hotpath_section(cfg: dict[str, Any], pg_url: str | None) -> list[HotpathResult]:
    results = []
    for n in cfg["sizes"]:
        b = built(n)
        if not b.cached:
            print(f"  built the {n:,}-subject registry cold in {b.build_s:.0f} s (cached for next runs)")
        url = pg_url if n <= cfg["postgis_max"] else None
        results.append(run_hotpath(b, cfg["batches"], cfg["naive"], url, min(cfg["batches"], 5)))
        del b
        gc.collect()
    print(table("\nHot path, in-process (median fixes/s per batch; ratios: containment vs the baselines,"
                " which answer the containment question only; engine: every rule + episodes)",
                ["subjects", "zones", "batch", "threads", "containment", "1 thread", "×1 thread", "engine",
                 "naive", "PostGIS", "×naive", "×PostGIS", "engine ×naive", "engine ×PostGIS", "alerts/batch",
                 "build s"],
                [[r.subjects, r.zones, r.batch, r.kernel_threads, r.containment_fixes_per_s,
                  r.containment_serial_fixes_per_s, r.threads_ratio, r.engine_fixes_per_s,
                  r.naive_fixes_per_s, r.postgis_fixes_per_s, r.ratio_vs_naive, r.ratio_vs_postgis,
                  r.engine_ratio_vs_naive, r.engine_ratio_vs_postgis, r.alerts_per_batch, r.build_s]
                 for r in results]))
    print("containment over a kernel thread per core (the target's figure) and on one thread; ×naive and "
          "×PostGIS compare the one-thread figure with the single-threaded baselines")
    print("inside (fix, zone) pairs found on the same fixes (the contenders answer the same question):")
    for r in results:
        print(f"  {r.subjects:,} subjects: " + ", ".join(f"{k} {v:,}" for k, v in r.hits.items()))
    return results


def memory_section(sizes: list[int]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-probe", str(n)], capture_output=True,
                             text=True, check=True)
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        probe["bytes_per_device"] = probe["rss_delta"] / probe["devices"]
        rows.append(probe)
    print(table("\nMemory: RSS growth for registry + rule state (with scene: built beside the rows, "
                "rows dropped, heap trimmed)",
                ["devices", "RSS delta MiB", "bytes/device", "with scene bytes/device"],
                [[r["devices"], r["rss_delta"] / 2**20, r["bytes_per_device"],
                  r["rss_delta_with_scene"] / r["devices"]] for r in rows]))
    return rows


def e2e_section(cfg: dict[str, Any], workdir: Path) -> E2EResult:
    print(f"\nEnd to end: {cfg['e2e_subjects']:,} devices, {cfg['step_s']:.0f} s per step")
    result = asyncio.run(run_e2e(workdir, cfg["e2e_subjects"], cfg["ladders"], cfg["step_s"],
                                 log=lambda row: print("  ", row, flush=True)))
    print(table("\nEnd to end (fixes/s; cpu in cores and µs per fix stored; latency fix→WebSocket alert)",
                ["shape", "target", "achieved", "backlog", "ok", "alerts", "p50 ms", "p95 ms", "p99 ms",
                 "cpu svc", "cpu mqtt", "cpu pg", "cpu pub", "svc µs/fix", "pg µs/fix", "RSS svc MiB"],
                [[s.shape, s.target, s.stored / s.seconds, s.backlog_end, s.sustained, len(s.latencies_ms),
                  s.percentile(50), s.percentile(95), s.percentile(99), s.cpu["service"], s.cpu["broker"],
                  s.cpu["postgres"], s.cpu["publishers"], s.cpu_us_per_fix.get("service"),
                  s.cpu_us_per_fix.get("postgres"), s.rss_mb.get("service")] for s in result.steps]))
    print(f"service ready in {result.startup_s:.1f} s with {result.subjects:,} subjects")
    if (burst := result.burst) is not None and burst.latencies_ms:
        print(f"alert burst (the warm-up's second report of every device, {burst.target:,.0f} fixes/s):"
              f" {len(burst.latencies_ms):,} alerts, fix->WebSocket p50 / p95 / p99 / max"
              f" {burst.percentile(50):,.0f} / {burst.percentile(95):,.0f} / {burst.percentile(99):,.0f} /"
              f" {burst.percentile(100):,.0f} ms; the feed went quiet {result.burst_quiet_s:.1f} s after the"
              " step had drained")
    if result.feed_resumes:
        print(f"the feed client was cut off {len(result.feed_resumes)} times (1013) and resumed after seqs "
              f"{result.feed_resumes}")
    return result


def figures(hot: list[HotpathResult], mem: list[dict[str, Any]], e2e: E2EResult | None,
            boot: StartupResult | None = None) -> dict[str, Any]:
    """The keys of latest.json; ratios come from the largest scene where both sides ran."""
    top = hot[-1]
    with_pg = [r for r in hot if r.postgis_fixes_per_s]
    out: dict[str, Any] = {
        # the target (>= 1M fixes/s, >= 15x naive, >= 25x PostGIS) is stated for containment
        "hotpath_fixes_per_s": top.containment_fixes_per_s, "hotpath_subjects": top.subjects,
        "hotpath_kernel_threads": top.kernel_threads,
        "hotpath_fixes_per_s_1thread": top.containment_serial_fixes_per_s,
        "hotpath_fixes_per_s_10k": next((r.containment_fixes_per_s for r in hot if r.subjects == 10_000),
                                        None),
        "hotpath_ratio_vs_naive": top.ratio_vs_naive,
        "hotpath_ratio_vs_postgis": with_pg[-1].ratio_vs_postgis if with_pg else None,
        "hotpath_ratio_vs_postgis_subjects": with_pg[-1].subjects if with_pg else None,
        "hotpath_engine_fixes_per_s": top.engine_fixes_per_s,
        "hotpath_engine_ratio_vs_naive": top.engine_ratio_vs_naive,
        "hotpath_engine_ratio_vs_postgis": with_pg[-1].engine_ratio_vs_postgis if with_pg else None,
        "rss_bytes_per_device": mem[-1]["bytes_per_device"], "rss_devices": mem[-1]["devices"],
        # the service's real load path (rows from PostgreSQL, parsed, indexed) when --startup ran
        "startup_s_700k": boot.load_registry_s if boot is not None and boot.n_subjects == 700_000 else None,
        "registry_build_s_700k": next((r.build_s for r in hot if r.subjects == 700_000), None),
    }
    if e2e is not None:
        batch, single = e2e.max_sustained("batch"), e2e.max_sustained("single")
        packed = e2e.max_sustained("batch-bin")
        out |= {
            "e2e_max_sustained_fixes_per_s_batch": batch.target if batch else 0,
            "e2e_max_sustained_fixes_per_s_batch_bin": packed.target if packed else 0,
            "e2e_latency_p50_ms_batch_bin": packed.percentile(50) if packed else None,
            "e2e_latency_p99_ms_batch_bin": packed.percentile(99) if packed else None,
            "e2e_max_sustained_fixes_per_s_single": single.target if single else 0,
            "e2e_latency_p50_ms": batch.percentile(50) if batch else None,
            "e2e_latency_p99_ms": batch.percentile(99) if batch else None,
            "e2e_service_startup_s": e2e.startup_s, "e2e_subjects": e2e.subjects,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CI-sized smoke run")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="print only; leave RESULTS.md and latest.json")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent,
                    help="folder for RESULTS.md and results/latest.json (default: benchmarks/)")
    ap.add_argument("--startup", action="store_true",
                    help="also time the service's registry load from PostgreSQL at 700k subjects"
                         " (benchmarks/startup.py; seeding its cached cluster takes ~20 min the first time)")
    ap.add_argument("--national", action="store_true",
                    help="only the end-to-end ladders, at 700k devices (the design point); prints, records"
                         " nothing")
    ap.add_argument("--memory-probe", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_probe:
        memory_probe(args.memory_probe)
        return
    if args.national:
        workdir = Path(tempfile.mkdtemp(prefix="emwatch-bench-"))
        try:
            e2e_section(NATIONAL, workdir / "e2e")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    cfg = QUICK if args.quick else FULL
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="emwatch-bench-"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        pg_url, _ = stack.enter_context(private_postgres(workdir / "postgis"))
        hot = hotpath_section(cfg, pg_url)
        mem = memory_section(cfg["memory"])
        e2e = None if args.skip_e2e else e2e_section(cfg, workdir / "e2e")
    boot = run_startup([2_000 if args.quick else 700_000]) if args.startup else []
    figs = figures(hot, mem, e2e, boot[-1] if boot else None)
    print("\n" + json.dumps(figs, indent=1, default=float))
    if not args.no_record:
        flags = [f for f, on in (("--quick", args.quick), ("--startup", args.startup)) if on]
        quoted = flags[0] if len(flags) == 1 else f"'{' '.join(flags)}'"
        command = "make bench" + (f" BENCH_ARGS={quoted}" if flags else "")
        details = {"hotpath": [r.__dict__ for r in hot], "memory": mem,
                   "startup": [dataclasses.asdict(r) for r in boot],
                   "e2e": [s.row() for s in e2e.steps] if e2e else None,
                   "hotpath_median_of": cfg["batches"]}
        write(command, figs, details, args.quick, args.out.resolve())


if __name__ == "__main__":
    main()
