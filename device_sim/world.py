"""The simulated world: demo geofences plus seeded subjects, homes, devices and their own zones."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from device_sim.geo import FloatArray, LocalFrame
from device_sim.geography import Geography, load_geography
from device_sim.kinds import (
    CURFEW,
    HOME_DRIFT,
    LEFT_HOME,
    VICTIM,
    VIOLATION_KINDS,
    assign_kinds,
)
from device_sim.placement import (
    BoolArray,
    IntArray,
    name,
    near_exclusion,
    office_shares,
    safe_leg,
    sample_points,
)

__all__ = [
    "BoolArray", "Devices", "Geography", "IntArray", "Subjects", "VictimDevices", "World", "build_world",
    "load_geography",
]

VICTIM_RADIUS_M = 200.0
# The victim_proximity rule's violation radius (a true episode is closer than this)...
VICTIM_PROXIMITY_M = 500.0
# ...and its warning ring (docs/rules.md: a *possible* alert within 1 km). Routine legs keep a
# further 100 m (wander 60 m + GPS) outside the ring, so only a scripted approach can be warned about.
VICTIM_WARNING_M = 1_000.0
VICTIM_INTERVAL_S = 60  # a victim's phone app reports this often (the rule ignores positions > 300 s old)
CURFEW_SHARE = 0.3  # subjects under a night curfew (宵禁) besides those scripted to break it
ACTIVITY_POINTS = 3  # places each subject commutes to from home (work, market, the 司法所...)
RISK_LEVELS = ("high", "medium", "low")
RISK_SHARES = (0.15, 0.45, 0.40)
REPORT_INTERVAL_S = {"high": 10, "medium": 30, "low": 60}
PHONE_INTERVAL_S = 60
PHONE_SHARE = 0.4
VICTIM_ZONE_SHARE = 0.15
OFFENCE_GROUPS = ("dui", "fraud", "theft", "drugs", "assault")
OFFENCE_SHARES = (0.3, 0.25, 0.25, 0.1, 0.1)


@dataclass(frozen=True, slots=True)
class Subjects:
    """People under supervision, as a struct of arrays indexed by dense subject number."""

    ids: list[str]
    names: list[str]
    jurisdiction_ids: list[str]  # the 司法所 (office) that supervises them
    risk_levels: list[str]
    groups: list[list[str]]
    home_x: FloatArray
    home_y: FloatArray
    activity_x: FloatArray  # (n, ACTIVITY_POINTS), each reachable from home on a safe straight path
    activity_y: FloatArray
    victim_x: FloatArray  # centre of the subject's own exclusion circle, NaN when none
    victim_y: FloatArray
    script: IntArray  # kinds.KIND_NAMES index: the violation or near-miss this subject is scripted for
    curfew: BoolArray  # must be at home during kinds.CURFEW_LOCAL_H

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def breacher(self) -> BoolArray:
        """Subjects scripted to commit a violation."""
        return np.isin(self.script, VIOLATION_KINDS)


@dataclass(frozen=True, slots=True)
class Devices:
    """Bracelets and phones, indexed by dense device number."""

    ids: list[str]
    kinds: list[str]  # "ankle" | "phone"
    subject_index: IntArray
    interval_s: IntArray
    gateway_ids: list[str]  # the vendor gateway that would forward this device in --batch mode

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class VictimDevices:
    """Victims' devices (kind `victim`, `dev-8<n>`): each stays at its victim's home, protecting a subject."""

    ids: list[str]
    subject_index: IntArray  # the subject kept away from this victim

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True, slots=True)
class World:
    """Everything the simulator needs to set up the service and move subjects."""

    seed: int
    geography: Geography
    subjects: Subjects
    devices: Devices
    own_zones: list[dict[str, Any]]  # per-subject exclusion circles (victims' homes)
    victims: VictimDevices


def build_world(
    n_subjects: int,
    seed: int = 1,
    breach_fraction: float = 0.05,
    geography: Geography | None = None,
    near_miss_fraction: float = 0.0,
    namespace: str = "",
) -> World:
    """A deterministic world: the same arguments always give the same subjects, homes and devices.

    `breach_fraction` of the subjects are scripted to commit a violation, `near_miss_fraction` to
    behave suspiciously but legally; `namespace` prefixes every subject and device id.
    """
    if not 0.0 <= breach_fraction <= 1.0:
        raise ValueError(f"breach_fraction must be within 0..1, got {breach_fraction}")
    geo = geography or load_geography()
    rng = np.random.default_rng([seed, 0])
    n = n_subjects
    office = rng.choice(len(geo.offices), size=n, p=office_shares(len(geo.offices)))
    cx, cy, sigma = geo.office_x[office], geo.office_y[office], geo.office_radius_m[office]

    def in_safe(_: IntArray, x: FloatArray, y: FloatArray) -> BoolArray:
        return np.asarray(shapely.contains_xy(geo.safe_xy, x, y))

    home_x, home_y = sample_points(rng, in_safe, cx, cy, sigma)
    script = assign_kinds(np.random.default_rng([seed, 2]), n, breach_fraction, near_miss_fraction)
    drift = script == HOME_DRIFT
    home_x[drift], home_y[drift] = near_exclusion(geo, rng, home_x[drift], home_y[drift])
    has_victim = (rng.random(n) < VICTIM_ZONE_SHARE) & ~drift | (script == VICTIM)
    # A victim lives 1.5-4 km away: far enough that the 200 m circle never covers the subject's home.
    vx, vy = sample_points(rng, in_safe, home_x, home_y, np.full(n, 1_500.0), ring=True)
    vx, vy = np.where(has_victim, vx, np.nan), np.where(has_victim, vy, np.nan)

    ax, ay = np.empty((n, ACTIVITY_POINTS)), np.empty((n, ACTIVITY_POINTS))

    def activity_ok(rows: IntArray, x: FloatArray, y: FloatArray) -> BoolArray:
        # A near-miss home by an exclusion zone is not in the safe region; its owner stays home.
        return np.asarray(
            safe_leg(geo, home_x[rows], home_y[rows], x, y, vx[rows], vy[rows], VICTIM_WARNING_M + 100.0)
            | drift[rows]
        )

    for k in range(ACTIVITY_POINTS):
        ax[:, k], ay[:, k] = sample_points(rng, activity_ok, cx, cy, sigma * 1.3)

    ids = [f"{namespace}subj-{i + 1:06d}" for i in range(n)]
    subjects = Subjects(
        ids=ids,
        names=[name(rng) for _ in range(n)],
        jurisdiction_ids=[geo.offices[o] for o in office],
        risk_levels=[RISK_LEVELS[r] for r in rng.choice(len(RISK_LEVELS), size=n, p=RISK_SHARES)],
        groups=[[OFFENCE_GROUPS[g]] for g in rng.choice(len(OFFENCE_GROUPS), size=n, p=OFFENCE_SHARES)],
        home_x=home_x,
        home_y=home_y,
        activity_x=ax,
        activity_y=ay,
        victim_x=vx,
        victim_y=vy,
        script=script,
        curfew=(rng.random(n) < CURFEW_SHARE) | (script == CURFEW),
    )
    has_phone = (rng.random(n) < PHONE_SHARE) | (script == LEFT_HOME)
    devices = _devices(subjects, has_phone, namespace)
    victim = np.flatnonzero(has_victim)
    victims = VictimDevices([f"{namespace}dev-{800_000 + i + 1:06d}" for i in victim.tolist()], victim)
    return World(seed, geo, subjects, devices, _own_zones(geo.frame, subjects), victims)


def _devices(subjects: Subjects, has_phone: BoolArray, namespace: str) -> Devices:
    """One ankle bracelet per subject (`dev-<n>`), plus a paired phone (`dev-9<n>`) for some."""
    ids, kinds, owner, interval, gateways = [], [], [], [], []
    for i, (risk, office) in enumerate(zip(subjects.risk_levels, subjects.jurisdiction_ids, strict=True)):
        gateway = "gw-" + office.removeprefix("demo-office-")
        ids.append(f"{namespace}dev-{i + 1:06d}")
        kinds.append("ankle")
        owner.append(i)
        interval.append(REPORT_INTERVAL_S[risk])
        gateways.append(gateway)
        if has_phone[i]:
            ids.append(f"{namespace}dev-{900_000 + i + 1:06d}")
            kinds.append("phone")
            owner.append(i)
            interval.append(PHONE_INTERVAL_S)
            gateways.append(gateway)
    return Devices(ids, kinds, np.array(owner, dtype=np.int64), np.array(interval, dtype=np.int64), gateways)


def _own_zones(frame: LocalFrame, subjects: Subjects) -> list[dict[str, Any]]:
    """Each victim's home as a 200 m exclusion circle applying to that subject only."""
    lon, lat = frame.to_lonlat(subjects.victim_x, subjects.victim_y)
    return [
        {
            "type": "Feature",
            "id": f"zone-victim-{sid}",
            "geometry": {"type": "Point", "coordinates": [round(float(lon[i]), 6), round(float(lat[i]), 6)]},
            "properties": {
                "kind": "exclusion",
                "name": "Victim residence 被害人住所",
                "radius_m": VICTIM_RADIUS_M,
                "subject_id": sid,
                "schedule": None,
            },
        }
        for i, sid in enumerate(subjects.ids)
        if not np.isnan(subjects.victim_x[i])
    ]


