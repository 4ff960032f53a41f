"""How many parts the compiled hot path splits a batch into: its use of the machine's other cores.

The split kernels (device ids, H3 cells, containment pairs and answers) are numba functions compiled
with `parallel=True`: a `prange` over the parts, each part a contiguous range of rows that writes only
its own output, so the result is the same whatever the count (the kernels' tests check it). numba
runs the parts on its own thread pool. Measured on the 2-core box (2,000-row batches): a Python
thread pool's hand-off cost 70-90 µs per split (a sleeping thread woken by the OS), numba's OpenMP
layer ~5 µs while its workers still spin (below), so only the latter pays on a batch of ~2.5 ms.

The service splits nothing unless told (`EMWATCH_KERNEL_THREADS`, default 1): with PostgreSQL on the
same two cores, two kernel threads measured no faster end to end and raised the alert latency's p99
(benchmarks/RESULTS.md, 2026-11-23 session 8). Where the service has cores of its own, 0 gives it a
thread per core: containment ×1.2-1.6 per batch.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numba
import numpy as np

log = logging.getLogger(__name__)

MIN_ROWS_PER_PART = 256  # below it a part's start-up outweighs its share of the work
# GNU OpenMP's workers spin 300,000 rounds (milliseconds here) before sleeping: a core burnt after every
# batch, taken from PostgreSQL where both share the machine. 10,000 rounds (~0.2-0.3 ms) still bridge the
# gaps between one batch's kernels. Measured at 10k subjects, containment over 2 threads vs 1: x1.50 with
# the default, x1.31 with 10,000, x1.24 with OMP_WAIT_POLICY=passive (no spinning); at 10,000 the process
# used no CPU beyond its calls. Read by libgomp when numba first loads it, after this import; the
# operator's own setting wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")
_POOL_THREADS: int = numba.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]  # set from the env at import


@dataclass(frozen=True, slots=True)
class KernelThreads:
    """The number of threads a kernel may split a batch over, and the smallest part worth a thread."""

    threads: int
    min_rows: int = MIN_ROWS_PER_PART

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"kernel threads must be at least 1, got {self.threads}")
        if self.min_rows < 1:
            raise ValueError(f"a part must hold at least 1 row, got {self.min_rows}")

    def parts(self, n: int) -> int:
        """Parts to split n rows into: at most one per thread (and per thread of numba's pool), none
        smaller than min_rows, at least one."""
        return max(1, min(self.threads, _POOL_THREADS, n // self.min_rows))


@numba.njit(inline="always")
def part_bounds(n: int, parts: int, p: int) -> tuple[int, int]:
    """Rows [lo, hi) of part p of `parts` over n rows: contiguous, in order, sizes differing by ≤ 1."""
    return n * p // parts, n * (p + 1) // parts


def default_thread_count() -> int:
    """One kernel thread per core this process may run on, at most 4 (a 2,000-fix batch split further
    gains little: each part shrinks while its start-up does not)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))


SERIAL = KernelThreads(1)


def pool_layer() -> str:
    """The threading layer numba's pool runs on ("omp", "tbb" or "workqueue"), loading it if no parallel
    kernel ran yet."""
    _one_region(2)
    return str(numba.threading_layer())  # type: ignore[attr-defined]  # numba re-exports it untyped


def check_pool(threads: KernelThreads) -> None:
    """Warn when kernels will split over numba's fallback layer: workqueue aborts the process if two
    threads launch kernels at once (the service launches from its event loop only; a caller with
    threads of its own must not). It is what numba takes without GNU OpenMP (libgomp1) or TBB."""
    if threads.threads > 1 and (layer := pool_layer()) == "workqueue":
        log.warning("kernel threads: numba runs on its %s layer (no libgomp1 or TBB found); install"
                    " libgomp1, or set EMWATCH_KERNEL_THREADS=1", layer)


@numba.njit(parallel=True)
def _one_region(parts: int) -> int:
    out = np.zeros(parts, np.int64)
    for p in numba.prange(parts):
        out[p] = p
    return int(out.sum())
