"""Curfew on a clock: while a scheduled inclusion zone is in force, a subject must be known to be inside.

Checked on a timer over every curfew at once, so a subject who is already out when the window opens,
or whose bracelet sends nothing at all, is still caught. Fixes check curfews as they arrive too
(containment), with the same episode keys.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import cells_for
from emwatch.model import Observations
from emwatch.registry import Registry
from emwatch.rules.accuracy import classify
from emwatch.rules.catalog import CURFEW_VIOLATION

NEVER = np.iinfo(np.int64).min
# Each device's last trusted fix: lat, lon, error radius (m), source code, ts (ms; NEVER: none).
DevicePositions = tuple[
    NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.int8], NDArray[np.int64]
]


def subject_bracelets(registry: Registry) -> NDArray[np.int32]:
    """Per subject, the dense index of its bracelet (-1 if it has none)."""
    out = np.full(len(registry.subject_ids), -1, dtype=np.int32)
    device = np.flatnonzero(registry.device_wearable & (registry.device_subject >= 0)).astype(np.int32)
    out[registry.device_subject[device]] = device
    return out


def curfew_checks(
    registry: Registry,
    bracelet: NDArray[np.int32],
    position: DevicePositions,
    position_max_age_ms: NDArray[np.int64],
    now_ms: int,
    judged_ts: NDArray[np.int64],
) -> Observations:
    """Checks per (subject, curfew zone) that the clock adds to what fixes already said.

    - window not in force: compliant (the window ended: the obligation with it);
    - no recent position: a *possible* breach, at every tick (the subject may be home with a dead
      bracelet, or gone; an officer has to find out either way): elapsed silence is the evidence;
    - a recent fix taken while the window was in force: nothing, the fix path judged it already
      (re-judging it every tick would count one fix again and again towards the debounce);
    - a recent fix from before the window: judged once (accuracy-aware, like a fix: a circle that
      straddles home is only *possible*), then left to the next fix.

    `judged_ts` (one per `registry.scheduled_inclusion_pairs()` row) remembers the fix each pair was
    last judged on by the clock; it is updated in place.
    """
    lat_all, lon_all, acc_all, src_all, pos_ts = position
    subject, zone = registry.scheduled_inclusion_pairs()
    n = len(subject)
    in_force = registry.schedules.active(zone, np.full(n, now_ms, dtype=np.int64))
    device = bracelet[subject]
    d = np.maximum(device, 0)
    known = device >= 0
    # Compared as "newer than now - limit": a never-seen bracelet (int64 min) cannot overflow into "fresh".
    known[known] = pos_ts[device[known]] >= now_ms - position_max_age_ms[subject[known]]
    fix_ts = np.where(known, pos_ts[d], NEVER)
    by_fix = known.copy()
    by_fix[known] = registry.schedules.active(zone[known], fix_ts[known])
    fresh_news = known & ~by_fix & in_force & (fix_ts != judged_ts)
    emit = ~in_force | (in_force & ~known) | fresh_news
    rows = np.flatnonzero(emit)
    lat = np.where(known, lat_all[d], np.nan)[rows]
    lon = np.where(known, lon_all[d], np.nan)[rows]
    breach = in_force[rows].copy()
    confirmed = np.zeros(len(rows), dtype=bool)
    k = np.flatnonzero(fresh_news[rows])
    if len(k):
        z = zone[rows[k]]
        cells = cells_for(lat[k], lon[k], registry.zones.resolution)
        inside = registry.zones.contains(z, lon[k], lat[k], cells)
        b, c = classify(registry.zones, z, lon[k], lat[k], inside, acc_all[d[rows[k]]], src_all[d[rows[k]]])
        breach[k], confirmed[k] = b, c
        judged_ts[rows[k]] = fix_ts[rows[k]]
    confirmed |= ~in_force[rows]  # a compliant check's confidence is not read
    return Observations(
        subject=subject[rows], rule=np.full(len(rows), CURFEW_VIOLATION, np.int16), zone=zone[rows],
        device=d[rows], ts=np.full(len(rows), now_ms, dtype=np.int64), lat=lat, lon=lon, breach=breach,
        confirmed=confirmed,
    )
