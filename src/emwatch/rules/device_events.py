"""Device events become rule checks: a strap opened is a tamper breach, a strap closed clears it."""

from __future__ import annotations

import numpy as np

from emwatch.ingest.protocol import DeviceEvent
from emwatch.model import Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import BATTERY_LOW, CASE_TAMPER, STRAP_TAMPER

# event type → (rule, in breach). A case has no "closed" event: case_tamper is cleared by an officer.
EVENT_RULES: dict[str, tuple[int, bool]] = {
    "strap_open": (STRAP_TAMPER, True),
    "strap_closed": (STRAP_TAMPER, False),
    "case_open": (CASE_TAMPER, True),
    "battery_low": (BATTERY_LOW, True),
    "charging": (BATTERY_LOW, False),
}


def evaluate_device_events(registry: Registry, events: list[tuple[str, DeviceEvent, bytes]]) -> Observations:
    """One observation per event that a rule cares about (events are few; a plain loop is fine)."""
    rows: list[tuple[int, int, int, int, bool]] = []
    for device_id, event, _ in events:
        check = EVENT_RULES.get(event.type)
        device = registry.device_index.get(device_id, -1)
        if check is None or device < 0 or (subject := int(registry.device_subject[device])) < 0:
            continue
        rows.append((subject, check[0], device, event.ts, check[1]))
    if not rows:
        return Observations.empty()
    n = len(rows)
    return Observations(
        subject=np.array([r[0] for r in rows], dtype=np.int32),
        rule=np.array([r[1] for r in rows], dtype=np.int16),
        zone=np.full(n, -1, np.int32),
        device=np.array([r[2] for r in rows], dtype=np.int32),
        ts=np.array([r[3] for r in rows], dtype=np.int64),
        lat=np.full(n, np.nan),
        lon=np.full(n, np.nan),
        breach=np.array([r[4] for r in rows], dtype=bool),
        confirmed=np.ones(n, dtype=bool),
    )
