"""Zone containment: for every fix, is its subject inside the zones it must stay in, out of the rest?"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.kernel_threads import SERIAL, KernelThreads
from emwatch.model import FixBatch, Observations
from emwatch.registry import Registry
from emwatch.rules.accuracy import SRC_LBS, accuracy_m, distance_to_zone_m
from emwatch.rules.catalog import ZONE_APPROACH, ZONE_ENTRY, ZONE_EXIT
from emwatch.rules.containment_pairs import pair_checks, registry_columns
from emwatch.rules.permits import apply_permits, permit_zone_in_force
from emwatch.rules.runs import expand_runs


def subject_pairs(
    registry: Registry, subject: NDArray[np.int32]
) -> tuple[NDArray[np.intp], NDArray[np.int32]]:
    """(row, zone) for the zones each row's subject is always checked against (CSR expansion)."""
    start = registry.pair_start[subject]
    rows, at = expand_runs(start, registry.pair_start[subject + 1] - start)
    return rows, registry.pair_zone[at]


def evaluate_containment(
    registry: Registry,
    batch: FixBatch,
    open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
    permit_returned: NDArray[np.bool_] | None = None,
    at_own_time: bool = False,
    threads: KernelThreads = SERIAL,
) -> Observations:
    """Observe breach/no-breach for every relevant (fix, zone) pair of the fresh, trusted wearable fixes.

    Relevant: the subject's inclusion and own/group exclusion zones, the shared exclusion zones
    whose H3 cover holds the fix, and any zone with an open episode (so leaving it is seen); a shared
    zone met by one fix of a subject is checked on all its fixes of the batch, and a permit's
    destination zones while it runs. One compiled walk finds and answers the pairs
    (rules/containment_pairs.py).
    `at_own_time`: judge each fix against the geometry in force at its timestamp (late fixes).
    `threads`: the pairs are answered across them (the same answers whatever their number).
    """
    fix, zones, breach, confirmed = pair_checks(registry, batch, open_pairs, threads)
    cols = registry_columns(registry)
    f = batch.fixes
    lon, lat, ts, subject = f.lon[fix], f.lat[fix], f.ts[fix], batch.subject[fix]
    if at_own_time and registry.zone_versions.index is not None:
        src = f.src[fix]
        breach, confirmed = registry.zone_versions.reclassify(
            zones, ts, lon, lat, batch.cell[fix], accuracy_m(f.acc[fix], src), src, breach, confirmed
        )
    # A zone outside its time window binds nobody: the check reads "compliant" (and so clears).
    if cols.any_scheduled:
        breach &= registry.schedules.active(zones, ts)
    permits = registry.permits
    destination = registry.permit_destination[zones] if cols.any_destination else np.zeros(len(zones), bool)
    if destination.any():
        breach[destination] &= permit_zone_in_force(
            permits, subject[destination], zones[destination], ts[destination]
        )
    rule = cols.rule[zones]
    if len(permits.ids):
        returned = permit_returned if permit_returned is not None else np.zeros(len(permits.ids), dtype=bool)
        usual = rule == ZONE_EXIT
        rule, breach = apply_permits(
            permits, returned, subject, zones, ts, rule, breach, usual & ~destination
        )
    checks = Observations(
        subject=subject, rule=rule, zone=zones, device=batch.device[fix], ts=ts,
        lat=lat, lon=lon, breach=breach, confirmed=confirmed,
    )
    if not cols.any_buffer:
        return checks
    return Observations.concat([checks, _approach_checks(registry, checks, f.src[fix])])


def _approach_checks(registry: Registry, checks: Observations, src: NDArray[np.int8]) -> Observations:
    """`zone_approach` for exclusion zones with a warning ring: within `buffer_m` of the zone (or in it)."""
    buffer_m = registry.zone_buffer_m[checks.zone]
    rows = np.flatnonzero(~np.isnan(buffer_m) & (checks.rule == ZONE_ENTRY))
    if len(rows) == 0:
        return Observations.empty()
    distance = distance_to_zone_m(registry.zones, checks.zone[rows], checks.lon[rows], checks.lat[rows])
    near = (distance <= buffer_m[rows]) & registry.schedules.active(checks.zone[rows], checks.ts[rows])
    return Observations(
        subject=checks.subject[rows], rule=np.full(len(rows), ZONE_APPROACH, np.int16),
        zone=checks.zone[rows],
        device=checks.device[rows], ts=checks.ts[rows], lat=checks.lat[rows], lon=checks.lon[rows],
        breach=near, confirmed=near & (src[rows] != SRC_LBS),
    )
