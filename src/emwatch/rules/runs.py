"""CSR helpers: expand per-row runs of a flat array into one row per element, without a Python loop."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def expand_runs(
    start: NDArray[np.integer], count: NDArray[np.integer]
) -> tuple[NDArray[np.intp], NDArray[np.int64]]:
    """For runs [start[i], start[i] + count[i]): the owning i and the position of every element."""
    start = np.asarray(start, dtype=np.int64)
    count = np.asarray(count, dtype=np.int64)
    rows = np.repeat(np.arange(len(start), dtype=np.intp), count)
    within = np.arange(len(rows), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
    return rows, np.repeat(start, count) + within
