"""The numpy containment path as it was before the fused kernel (rules/containment_kernel.py): many
vectorized passes per batch. Kept as the specification the fused path is checked against."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.model import FixBatch, Observations
from emwatch.registry import Registry
from emwatch.rules.accuracy import accuracy_m, classify
from emwatch.rules.catalog import ZONE_EXIT
from emwatch.rules.containment import _approach_checks, subject_pairs  # unchanged since
from emwatch.rules.containment_pairs import zone_rule
from emwatch.rules.permits import apply_permits, permit_zone_in_force
from emwatch.rules.runs import expand_runs


def reference_containment(
    registry: Registry,
    batch: FixBatch,
    open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
    permit_returned: NDArray[np.bool_] | None = None,
    at_own_time: bool = False,
) -> Observations:
    """Observe breach/no-breach for every relevant (fix, zone) pair of the fresh, trusted wearable fixes.

    Relevant: the subject's inclusion and own/group exclusion zones, the shared exclusion zones
    whose H3 cover holds the fix, and any zone with an open episode (so leaving it is seen).
    `at_own_time`: judge each fix against the geometry in force at its timestamp (late fixes).
    """
    eligible = batch.fresh & ~batch.suspect & (batch.subject >= 0) & registry.device_wearable[batch.device]
    rows_all = np.flatnonzero(eligible)
    subj = batch.subject[rows_all]

    rows_a, zone_a = subject_pairs(registry, subj)

    pos_b, zone_b = registry.zones.candidates(batch.cell[rows_all], registry.shared_mask)
    keep = registry.shared_zone_applies(subj[pos_b], zone_b)
    rows_b, zone_b = pos_b[keep].astype(np.intp), zone_b[keep]

    # A shared zone is re-checked on every fix of a subject with an episode open in it, or who came
    # near it earlier in this batch: otherwise leaving it (no longer a candidate) would go unseen.
    # open_pairs arrive sorted by subject; only this batch's few candidates need sorting.
    rows_open, zone_open = _rows_with_open_episodes(subj, open_pairs[0], open_pairs[1])
    order = np.argsort(subj[rows_b], kind="stable")
    rows_near, zone_near = _rows_with_open_episodes(subj, subj[rows_b][order], zone_b[order])
    rows_c, zone_c = np.concatenate([rows_open, rows_near]), np.concatenate([zone_open, zone_near])

    permits = registry.permits
    rows_d, zone_d = permits.destinations(subj, batch.fixes.ts[rows_all])

    rows = np.concatenate([rows_a, rows_b, rows_c, rows_d])
    zones = np.concatenate([zone_a, zone_b, zone_c, zone_d]).astype(np.int32)
    if len(rows):
        n_zones = max(len(registry.zones.zones), 1)
        # sort + neighbour compare: np.unique (numpy 2.4) took 5-10x longer at these sizes
        key = np.sort(rows.astype(np.int64) * n_zones + zones)
        key = key[np.r_[True, key[1:] != key[:-1]]]
        rows, zones = (key // n_zones).astype(np.intp), (key % n_zones).astype(np.int32)

    fix = rows_all[rows]
    f = batch.fixes
    lon, lat = f.lon[fix], f.lat[fix]
    inside = registry.zones.contains(zones, lon, lat, batch.cell[fix])
    radius = accuracy_m(f.acc[fix], f.src[fix])
    breach, confirmed = classify(registry.zones, zones, lon, lat, inside, radius, f.src[fix])
    ts, subject = f.ts[fix], batch.subject[fix]
    if at_own_time and registry.zone_versions.index is not None:
        breach, confirmed = registry.zone_versions.reclassify(
            zones, ts, lon, lat, batch.cell[fix], radius, f.src[fix], breach, confirmed
        )
    # A zone outside its time window binds nobody: the check reads "compliant" (and so clears).
    breach &= registry.schedules.active(zones, ts)
    destination = registry.permit_destination[zones]
    if destination.any():
        breach[destination] &= permit_zone_in_force(
            permits, subject[destination], zones[destination], ts[destination]
        )
    rule = zone_rule(registry, zones)
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
    return Observations.concat([checks, _approach_checks(registry, checks, f.src[fix])])


def _rows_with_open_episodes(
    subj: NDArray[np.int32], open_subject: NDArray[np.int32], open_zone: NDArray[np.int32]
) -> tuple[NDArray[np.intp], NDArray[np.int32]]:
    """(row, zone) for each row whose subject has open episodes; open_subject must be sorted."""
    if len(open_subject) == 0 or len(subj) == 0:
        return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int32)
    lo = np.searchsorted(open_subject, subj, side="left")
    hi = np.searchsorted(open_subject, subj, side="right")
    rows, at = expand_runs(lo.astype(np.int64), (hi - lo).astype(np.int64))
    return rows, open_zone[at]
