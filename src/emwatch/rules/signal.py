"""脱管: a bracelet silent (no fix, no event) for longer than its risk level allows."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.model import Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import SIGNAL_LOST

NEVER = np.iinfo(np.int64).min


def silence_limits_ms(registry: Registry, limits_s: dict[str, float]) -> NDArray[np.int64]:
    """Per subject: how long its bracelet may be silent, from its risk level."""
    default = max(limits_s.values())
    return np.array([limits_s.get(r, default) * 1000 for r in registry.subject_risk], dtype=np.int64)


def signal_checks(
    registry: Registry, last_seen: NDArray[np.int64], limit_ms: NDArray[np.int64], now_ms: int
) -> Observations:
    """A breach row for every monitored bracelet silent past its limit (a timer runs this over all)."""
    subject = registry.device_subject
    watched = registry.device_wearable & (subject >= 0) & (last_seen != NEVER)
    device = np.flatnonzero(watched)
    lost = device[now_ms - last_seen[device] > limit_ms[subject[device]]].astype(np.int32)
    return _rows(subject[lost], lost, np.full(len(lost), now_ms, np.int64), breach=True)


def heard_from(registry: Registry, device: NDArray[np.int32], ts: NDArray[np.int64]) -> Observations:
    """A clearing row for every bracelet heard from (fix or event) in a batch."""
    subject = registry.device_subject[device]
    keep = registry.device_wearable[device] & (subject >= 0)
    return _rows(subject[keep], device[keep], ts[keep], breach=False)


def _rows(
    subject: NDArray[np.int32], device: NDArray[np.int32], ts: NDArray[np.int64], *, breach: bool
) -> Observations:
    n = len(device)
    return Observations(
        subject=subject.astype(np.int32), rule=np.full(n, SIGNAL_LOST, np.int16),
        zone=np.full(n, -1, np.int32), device=device.astype(np.int32), ts=ts.astype(np.int64),
        lat=np.full(n, np.nan), lon=np.full(n, np.nan), breach=np.full(n, breach),
        confirmed=np.ones(n, dtype=bool),
    )
