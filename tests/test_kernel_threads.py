"""KernelThreads: how many contiguous parts a compiled kernel splits a batch into."""

from __future__ import annotations

import os
import subprocess
import sys

import numba
import numpy as np
import pytest

from emwatch.kernel_threads import KernelThreads, default_thread_count, part_bounds, pool_layer
from emwatch.pipeline import rule_config
from emwatch.settings import Settings


@pytest.mark.parametrize(("threads", "n", "min_rows", "want"), [
    (1, 10_000, 256, 1),   # serial
    (2, 10_000, 256, 2),
    (2, 511, 256, 1),      # no part smaller than min_rows
    (2, 0, 256, 1),        # an empty batch is still one (empty) part
    (2, 10, 1, 2),
])
def test_parts_per_batch(threads: int, n: int, min_rows: int, want: int) -> None:
    assert KernelThreads(threads, min_rows).parts(n) == want


def test_never_more_parts_than_numba_has_threads() -> None:
    assert KernelThreads(64, min_rows=1).parts(10_000) == numba.config.NUMBA_NUM_THREADS


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("n", [0, 1, 10, 2_001])
def test_part_bounds_cover_every_row_once_in_order(n: int, parts: int) -> None:
    bounds = [part_bounds(n, parts, p) for p in range(parts)]
    rows = np.concatenate([np.arange(lo, hi) for lo, hi in bounds])
    np.testing.assert_array_equal(rows, np.arange(n))
    sizes = [hi - lo for lo, hi in bounds]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("bad", [{"threads": 0}, {"threads": 2, "min_rows": 0}])
def test_nonsense_sizes_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        KernelThreads(**bad)


def test_the_default_is_one_thread_per_core_up_to_four() -> None:
    assert 1 <= default_thread_count() <= 4


def test_the_service_splits_nothing_unless_told() -> None:
    """One thread by default (PostgreSQL shares the cores); 0 asks for one per core."""
    assert rule_config(Settings()).kernel_threads == 1
    assert rule_config(Settings(kernel_threads=0)).kernel_threads == default_thread_count()
    assert rule_config(Settings(kernel_threads=3)).kernel_threads == 3


def test_the_pool_runs_on_gnu_openmp_here() -> None:
    assert pool_layer() == "omp"  # .ci/run and the Dockerfile install libgomp1


@pytest.mark.parametrize(("layer", "threads", "warned"), [
    ("workqueue", 2, True), ("workqueue", 1, False), ("omp", 2, False),
])
def test_splitting_over_numbas_fallback_layer_is_warned_of(layer: str, threads: int, warned: bool) -> None:
    # a process of its own: numba picks its layer once per process
    code = ("import logging; logging.basicConfig(level=logging.WARNING);"
            "from emwatch.kernel_threads import KernelThreads, check_pool;"
            f"check_pool(KernelThreads({threads}))")
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert ("numba runs on its workqueue layer" in done.stderr) is warned
