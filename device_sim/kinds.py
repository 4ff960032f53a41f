"""Script kinds: the violations and near-misses a subject can be scripted to commit."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

ROUTINE = 0
EXIT, ENTRY, VICTIM, MEET, CURFEW, OVERSTAY, STRAP, SILENT, LEFT_HOME, BATTERY, CASE = range(1, 12)
BOUNDARY_WALK, HOME_DRIFT, PERMITTED = 12, 13, 14
KIND_NAMES = (
    "routine", "exit", "entry", "victim", "meet", "curfew", "overstay", "strap", "silent", "left_home",
    "battery", "case", "boundary_walk", "home_drift", "permitted",
)  # fmt: skip
VIOLATION_KINDS = tuple(range(EXIT, CASE + 1))
NEAR_MISS_KINDS = (BOUNDARY_WALK, HOME_DRIFT, PERMITTED)
HOME_DRIFT_M = (150.0, 220.0)  # a near-miss home's distance from an exclusion zone's edge
# Kinds that leave home on a scripted excursion (out -> [via ->] back) at the planned start.
EXCURSION_KINDS = (EXIT, ENTRY, VICTIM, MEET, CURFEW, OVERSTAY, LEFT_HOME, BOUNDARY_WALK, PERMITTED)


def assign_kinds(
    rng: np.random.Generator, n: int, violation_fraction: float, near_miss_fraction: float
) -> IntArray:
    """A script kind per subject: every violation and near-miss kind in turn, so a small world has each."""
    kinds = np.zeros(n, dtype=np.int64)
    n_v, n_m = round(n * violation_fraction), round(n * near_miss_fraction)
    if n_v + n_m > n:
        raise ValueError("violation_fraction + near_miss_fraction must not exceed 1")
    chosen = rng.permutation(n)[: n_v + n_m]
    # Subjects meet in pairs, so MEET takes two consecutive slots of each cycle.
    cycle = np.array([*VIOLATION_KINDS[:4], MEET, *VIOLATION_KINDS[4:]], dtype=np.int64)
    kinds[chosen[:n_v]] = cycle[np.arange(n_v) % cycle.size]
    kinds[chosen[n_v:]] = np.array(NEAR_MISS_KINDS)[np.arange(n_m) % len(NEAR_MISS_KINDS)]
    meet = np.flatnonzero(kinds == MEET)
    if meet.size % 2:
        kinds[meet[-1]] = ROUTINE  # an odd one out has nobody to meet
    return kinds


def contact_pairs(kinds: IntArray) -> IntArray:
    """(k, 2) subject pairs under a no-contact order: consecutive MEET subjects."""
    meet = np.flatnonzero(kinds == MEET)
    return meet[: meet.size - meet.size % 2].reshape(-1, 2)
