"""Impossible movement: a fix that implies a speed no person can reach is suspect (jamming, spoofing)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import haversine_m_one
from emwatch.jit import cached_njit
from emwatch.model import FixBatch, Observations
from emwatch.rules.catalog import LOCATION_ANOMALY


def suspect_fixes(
    batch: FixBatch,
    accuracy_m: NDArray[np.float64],
    prev_lat: NDArray[np.float64],
    prev_lon: NDArray[np.float64],
    prev_ts: NDArray[np.int64],
    prev_acc: NDArray[np.float64],
    max_speed_mps: float,
) -> NDArray[np.bool_]:
    """Fresh fixes that, less both fixes' error, lie further from the device's last trusted fix than
    max speed allows.

    `batch` is sorted by (device, ts); prev_* hold each device's last trusted fresh fix before the
    batch (lat NaN: none; acc: its error radius, NaN: taken as exact). A fix is judged against the
    last *trusted* fix, as if the fixes had come one at a time: a suspect fix is no reference for the
    next one, and a late fix none for a fresh one, so the verdicts do not depend on where the
    micro-batches split.
    """
    f = batch.fixes
    suspect = np.zeros(len(batch), dtype=bool)
    _judge(batch.device, batch.fresh, f.lat, f.lon, f.ts, accuracy_m, prev_lat, prev_lon, prev_ts, prev_acc,
           float(max_speed_mps), suspect)
    return suspect


# One sequential pass, compiled: the reference moves only past trusted fixes, so a device's verdicts
# depend on each other. As numpy it took two passes plus a Python loop per fix of every device with a
# suspect fix, which under a burst of jamming cost as much as all of containment.
@cached_njit(nogil=True)
def _judge(device: Any, fresh: Any, lat: Any, lon: Any, ts: Any, acc: Any, prev_lat: Any, prev_lon: Any,
           prev_ts: Any, prev_acc: Any, max_speed_mps: float, out: Any) -> None:
    d_now = -1
    ref_lat = ref_lon = ref_acc = np.nan
    ref_ts = 0
    for r in range(len(device)):
        if not fresh[r]:
            continue
        d = device[r]
        if d != d_now:
            d_now = d
            ref_lat, ref_lon, ref_ts, ref_acc = prev_lat[d], prev_lon[d], prev_ts[d], prev_acc[d]
        bad = False
        if not math.isnan(ref_lat):
            ref_error = 0.0 if math.isnan(ref_acc) else ref_acc  # restored without accuracy: taken as exact
            gap_m = haversine_m_one(lat[r], lon[r], ref_lat, ref_lon) - acc[r] - ref_error
            seconds = max((ts[r] - ref_ts) / 1000.0, 1.0)  # the same second: one second
            bad = gap_m / seconds > max_speed_mps
        out[r] = bad
        if not bad:
            ref_lat, ref_lon, ref_ts, ref_acc = lat[r], lon[r], ts[r], acc[r]



def anomaly_checks(batch: FixBatch, suspect: NDArray[np.bool_], wearable: NDArray[np.bool_]) -> Observations:
    """A breach row per suspect fix and a clearing row per trusted one, for fresh bracelet fixes."""
    rows = np.flatnonzero(batch.fresh & (batch.subject >= 0) & wearable[batch.device])
    f = batch.fixes
    n = len(rows)
    return Observations(
        subject=batch.subject[rows], rule=np.full(n, LOCATION_ANOMALY, np.int16),
        zone=np.full(n, -1, np.int32), device=batch.device[rows], ts=f.ts[rows], lat=f.lat[rows],
        lon=f.lon[rows], breach=suspect[rows], confirmed=np.ones(n, dtype=bool),
    )
