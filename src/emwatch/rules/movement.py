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
    prev_acc: NDArray[np.float64],
    max_speed_mps: float,
) -> NDArray[np.bool_]:
    """Fresh fixes that, less both fixes' error, lie further from the device's last trusted fix than
    max speed allows.

    `batch` is sorted by (device, ts); prev_* hold each device's last trusted fresh fix before the
    batch (lat NaN: none; acc: its error radius). A fix is judged against the last *trusted* fix, as
    if the fixes had come one at a time: a suspect fix is no reference for the next one, and a late
    fix none for a fresh one, so the verdicts do not depend on where the micro-batches split.
    """
    n = len(batch)
    suspect = np.zeros(n, dtype=bool)
    rows = np.flatnonzero(batch.fresh)
    if len(rows) == 0:
        return suspect
    # First pass: each fresh fix against the fresh fix before it. While no fix of a device is
    # suspect, "the fix before" is "the last trusted fix", so the pass is exact for such devices.
    device = batch.device[rows]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = device[1:] != device[:-1]
    before = np.roll(rows, 1)
    f = batch.fixes
    lat0 = np.where(first, prev_lat[device], f.lat[before])
    lon0 = np.where(first, prev_lon[device], f.lon[before])
    ts0 = np.where(first, prev_ts[device], f.ts[before])
    acc0 = np.where(first, prev_acc[device], accuracy_m[before])
    jump = _too_fast(batch, rows, accuracy_m, lat0, lon0, ts0, acc0, max_speed_mps)
    suspect[rows] = jump
    # Devices with a suspect fix: the fixes after it are judged again, one by one, against the last
    # trusted fix (rare: jamming, multipath, spoofing).
    for d in np.unique(device[jump]).tolist():
        own = rows[device == d]
        ref = (float(prev_lat[d]), float(prev_lon[d]), int(prev_ts[d]), float(prev_acc[d]))
        for r in own.tolist():
            one = np.array([r])
            bad = bool(_too_fast(
                batch, one, accuracy_m, np.array([ref[0]]), np.array([ref[1]]),
                np.array([ref[2]], dtype=np.int64), np.array([ref[3]]), max_speed_mps,
            )[0])
            suspect[r] = bad
            if not bad:
                ref = (float(f.lat[r]), float(f.lon[r]), int(f.ts[r]), float(accuracy_m[r]))
    return suspect


def _too_fast(
    batch: FixBatch, rows: NDArray[np.intp], accuracy_m: NDArray[np.float64], lat0: NDArray[np.float64],
    lon0: NDArray[np.float64], ts0: NDArray[np.int64], acc0: NDArray[np.float64], max_speed_mps: float,
) -> NDArray[np.bool_]:
    """Whether each row, less both error radii, is further from its reference than max speed allows."""
    f = batch.fixes
    known = ~np.isnan(lat0)
    acc0 = np.nan_to_num(acc0)  # a reference of unknown accuracy (restored without it): taken as exact
    gap_m = haversine_m(f.lat[rows], f.lon[rows], np.nan_to_num(lat0), np.nan_to_num(lon0))
    gap_m = gap_m - accuracy_m[rows] - acc0
    seconds = np.maximum((f.ts[rows] - np.where(known, ts0, 0)) / 1000.0, 1.0)  # same second: one second
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
