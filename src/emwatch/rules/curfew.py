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
from emwatch.rules.catalog import CURFEW_VIOLATION


def subject_bracelets(registry: Registry) -> NDArray[np.int32]:
    """Per subject, the dense index of its bracelet (-1 if it has none)."""
    out = np.full(len(registry.subject_ids), -1, dtype=np.int32)
    device = np.flatnonzero(registry.device_wearable & (registry.device_subject >= 0)).astype(np.int32)
    out[registry.device_subject[device]] = device
    return out


def curfew_checks(
    registry: Registry,
    bracelet: NDArray[np.int32],
    last_lat: NDArray[np.float64],
    last_lon: NDArray[np.float64],
    last_pos_ts: NDArray[np.int64],
    position_max_age_ms: NDArray[np.int64],
    now_ms: int,
) -> Observations:
    """One check per (subject, curfew zone): in breach when in force and not known to be inside.

    No recent position counts as a *possible* breach: the subject may be home with a dead bracelet,
    or gone; an officer has to find out either way.
    """
    subject, zone = registry.scheduled_inclusion_pairs()
    n = len(subject)
    now = np.full(n, now_ms, dtype=np.int64)
    in_force = registry.schedules.active(zone, now)
    device = bracelet[subject]
    known = device >= 0
    # Compared as "newer than now - limit": a never-seen bracelet (int64 min) cannot overflow into "fresh".
    known[known] = last_pos_ts[device[known]] >= now_ms - position_max_age_ms[subject[known]]
    lat = np.where(known, last_lat[np.maximum(device, 0)], np.nan)
    lon = np.where(known, last_lon[np.maximum(device, 0)], np.nan)
    inside = np.zeros(n, dtype=bool)
    if known.any():
        k = np.flatnonzero(known)
        cells = cells_for(lat[k], lon[k], registry.zones.resolution)
        inside[k] = registry.zones.contains(zone[k], lon[k], lat[k], cells)
    return Observations(
        subject=subject, rule=np.full(n, CURFEW_VIOLATION, np.int16), zone=zone, device=np.maximum(device, 0),
        ts=now, lat=lat, lon=lon, breach=in_force & ~inside, confirmed=known,
    )
