"""Impossible movement: a fix that implies a speed no person can reach is suspect (jamming, spoofing)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import haversine_m
from emwatch.model import FixBatch, Observations
from emwatch.rules.catalog import LOCATION_ANOMALY


def suspect_fixes(
    batch: FixBatch,
    accuracy_m: NDArray[np.float64],
    prev_lat: NDArray[np.float64],
    prev_lon: NDArray[np.float64],
    prev_ts: NDArray[np.int64],
    max_speed_mps: float,
) -> NDArray[np.bool_]:
    """Fixes that, less both fixes' error, lie further from the previous fix than max speed allows.

    `batch` is sorted by (device, ts); prev_* hold each device's last fix before the batch (NaN: none).
    """
    f = batch.fixes
    n = len(batch)
    if n == 0:
        return np.zeros(0, dtype=bool)
    first = np.ones(n, dtype=bool)
    first[1:] = batch.device[1:] != batch.device[:-1]
    lat0 = np.where(first, prev_lat[batch.device], np.roll(f.lat, 1))
    lon0 = np.where(first, prev_lon[batch.device], np.roll(f.lon, 1))
    ts0 = np.where(first, prev_ts[batch.device], np.roll(f.ts, 1))
    acc0 = np.where(first, 0.0, np.roll(accuracy_m, 1))
    known = ~np.isnan(lat0) & batch.fresh
    gap_m = haversine_m(f.lat, f.lon, np.nan_to_num(lat0), np.nan_to_num(lon0)) - accuracy_m - acc0
    seconds = np.maximum((f.ts - ts0) / 1000.0, 1.0)  # same-second fixes: judged over one second
    return np.asarray(known & (gap_m / seconds > max_speed_mps))


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
