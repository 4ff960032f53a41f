"""Court orders the scripts rely on, as API bodies: curfews, leave permits, victims' devices, no-contact bans.

Times are the trace's; a replay moves them by its shift (`shift_ms`) so that the service sees the
same orders relative to the fixes: a permit's start and end move with the trace, and a curfew's
daily window moves by the shift modulo a day (the local time of day a rebased fix lands on moves
with it). A shift must therefore be a whole number of minutes (`HH:MM` windows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from device_sim.kinds import contact_pairs
from device_sim.scripts import CURFEW_LOCAL_H, Plan
from device_sim.world import World

CURFEW_HOME_RADIUS_M = 200.0  # farther than this from home during curfew hours is a breach
CONTACT_M = 100.0  # two subjects under a no-contact order closer than this have met
PERMIT_ROUTE_MARGIN_M = 1_000.0  # a permit's destination circle reaches this far past home and target
MINUTE_MS = 60_000
CURFEW_TZ = "Asia/Shanghai"  # UTC+8 all year, as scripts.UTC_OFFSET_H assumes
DAY_MIN = 1_440


@dataclass(frozen=True, slots=True)
class Orders:
    """What setup POSTs after the world's subjects, devices and zones, in this order."""

    zones: list[dict[str, Any]] = field(default_factory=list)  # curfew homes, permit destinations
    victim_devices: list[dict[str, Any]] = field(default_factory=list)  # POST /api/devices
    contact_bans: list[dict[str, Any]] = field(default_factory=list)  # POST /api/contact-bans
    permits: list[dict[str, Any]] = field(default_factory=list)  # POST /api/permits, then approve


def permit_rows(world: World, plan: Plan) -> list[dict[str, Any]]:
    """Each scripted permit (trace time) with its destination: a circle holding home, route and target."""
    s, frame = world.subjects, world.geography.frame
    rows = []
    for i in np.flatnonzero(~np.isnan(plan.permit_start_ms)).tolist():
        cx, cy = (s.home_x[i] + plan.target_x[i]) / 2, (s.home_y[i] + plan.target_y[i]) / 2
        radius = float(np.hypot(plan.target_x[i] - cx, plan.target_y[i] - cy)) + PERMIT_ROUTE_MARGIN_M
        lon, lat = frame.to_lonlat(np.array([cx]), np.array([cy]))
        rows.append({
            "subject": s.ids[i], "start": int(plan.permit_start_ms[i]), "end": int(plan.permit_end_ms[i]),
            "destination": {"lon": round(float(lon[0]), 6), "lat": round(float(lat[0]), 6),
                            "radius_m": round(radius)},
        })  # fmt: skip
    return rows


def build_orders(world: World, permits: list[dict[str, Any]], shift_ms: int = 0) -> Orders:
    """The orders of `world` with `permits` (rows of `permit_rows` or a truth file), moved by `shift_ms`."""
    if shift_ms % MINUTE_MS:
        raise ValueError(f"a replay shift must be whole minutes, got {shift_ms} ms")
    s = world.subjects
    zones = [_curfew_zone(world, i, shift_ms) for i in np.flatnonzero(s.curfew).tolist()]
    bodies = []
    for p in permits:
        zone_id = f"zone-permit-{p['subject']}-{p['start']}"  # trace time: the same permit, the same zone
        d = p["destination"]
        zones.append(_circle(zone_id, "inclusion", "Permit destination 请假目的地", d["lon"], d["lat"],
                             d["radius_m"], p["subject"], role="permit_destination"))  # fmt: skip
        bodies.append({
            "subject_id": p["subject"], "starts_at": _iso(p["start"] + shift_ms),
            "ends_at": _iso(p["end"] + shift_ms), "zone_ids": [zone_id], "grace_s": 0,
            "reason": "device_sim scripted permit",
        })  # fmt: skip
    v = world.victims
    victims = [
        {"id": v.ids[k], "kind": "victim", "protects_subject_id": s.ids[int(v.subject_index[k])]}
        for k in range(len(v))
    ]
    bans = [
        {"subject_a": s.ids[a], "subject_b": s.ids[b], "radius_m": CONTACT_M, "min_seconds": 0.0}
        for a, b in contact_pairs(s.script).tolist()
    ]
    return Orders(zones, victims, bans, bodies)


def curfew_window(shift_ms: int) -> tuple[str, str]:
    """The curfew's daily (start, end) as HH:MM in Asia/Shanghai, moved by `shift_ms` modulo a day."""
    shift_min = shift_ms // MINUTE_MS
    return tuple(_hhmm(round(h * 60) + shift_min) for h in CURFEW_LOCAL_H)  # type: ignore[return-value]


def _curfew_zone(world: World, i: int, shift_ms: int) -> dict[str, Any]:
    s = world.subjects
    lon, lat = world.geography.frame.to_lonlat(s.home_x[i : i + 1], s.home_y[i : i + 1])
    start, end = curfew_window(shift_ms)
    schedule = {"tz": CURFEW_TZ, "windows": [{"start": start, "end": end}]}
    return _circle(f"zone-curfew-{s.ids[i]}", "inclusion", "Curfew: home 宵禁", round(float(lon[0]), 6),
                   round(float(lat[0]), 6), CURFEW_HOME_RADIUS_M, s.ids[i], schedule=schedule)  # fmt: skip


def _circle(
    zone_id: str, kind: str, name: str, lon: float, lat: float, radius_m: float, subject_id: str,
    schedule: dict[str, Any] | None = None, role: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    props: dict[str, Any] = {"kind": kind, "name": name, "radius_m": radius_m, "subject_id": subject_id}
    if schedule is not None:
        props["schedule"] = schedule
    if role is not None:
        props["role"] = role
    return {"type": "Feature", "id": zone_id, "geometry": {"type": "Point", "coordinates": [lon, lat]},
            "properties": props}  # fmt: skip


def _hhmm(minutes: int) -> str:
    m = minutes % DAY_MIN
    return f"{m // 60:02d}:{m % 60:02d}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()
