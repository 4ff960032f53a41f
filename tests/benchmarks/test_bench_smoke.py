"""The benchmark suite's quick mode runs end to end and records its figures (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEYS = [
    "hotpath_fixes_per_s", "hotpath_ratio_vs_naive", "hotpath_ratio_vs_postgis",
    "hotpath_engine_fixes_per_s", "hotpath_engine_ratio_vs_naive", "hotpath_engine_ratio_vs_postgis",
    "e2e_max_sustained_fixes_per_s_batch", "e2e_max_sustained_fixes_per_s_single",
    "e2e_latency_p50_ms", "e2e_latency_p99_ms", "rss_bytes_per_device", "startup_s_700k", "machine", "date",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """`benchmarks/run.py --quick` with its records redirected to a temporary folder."""
    out = tmp_path_factory.mktemp("bench")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done.stdout, out


def test_quick_run_prints_every_table(quick_run: tuple[str, Path]) -> None:
    stdout, _ = quick_run
    for title in ("Hot path, in-process", "Memory: RSS growth", "End to end"):
        assert title in stdout


def test_quick_run_writes_every_key_of_latest_json(quick_run: tuple[str, Path]) -> None:
    _, out = quick_run
    doc = json.loads((out / "results" / "latest.json").read_text())
    assert [k for k in KEYS if k not in doc] == []
    assert doc["quick"] is True
    assert doc["machine"]["cores"] >= 1
    # every contender ran and produced a figure: these are counts, not timing assertions
    assert doc["hotpath_fixes_per_s"] > 0 and doc["hotpath_ratio_vs_naive"] > 0
    assert doc["hotpath_ratio_vs_postgis"] > 0
    assert doc["details"]["e2e"], "the end-to-end ladder ran no step"


def test_quick_run_baselines_find_the_same_inside_pairs_as_the_engine_index(
    quick_run: tuple[str, Path],
) -> None:
    """Like with like: the naive loop and PostGIS answer the containment question the engine answers."""
    _, out = quick_run
    doc = json.loads((out / "results" / "latest.json").read_text())
    hits = doc["details"]["hotpath"][0]["hits"]
    assert hits["naive"] > 0 and hits["PostGIS"] > 0
    # equal but for a rare tie on a circle's edge (PostGIS's sphere radius differs in the 7th digit)
    assert abs(hits["naive"] - hits["index (naive fixes)"]) <= max(1, hits["naive"] // 1000)
    assert abs(hits["PostGIS"] - hits["index (PostGIS fixes)"]) <= max(1, hits["PostGIS"] // 1000)


def test_quick_run_appends_a_dated_row_under_performance(quick_run: tuple[str, Path]) -> None:
    _, out = quick_run
    text = (out / "RESULTS.md").read_text()
    section = text.split("## Performance", 1)[1]
    rows = [line for line in section.splitlines() if line.startswith("| 20")]
    assert len(rows) == 1 and "BENCH_ARGS=--quick" in rows[0]
    table = [line for line in section.splitlines() if line.startswith("|")]
    assert table[0].startswith("| date") and table[1].startswith("|---") and table[2] == rows[0]  # a table
