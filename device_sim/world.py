"""The simulated world: demo geofences plus seeded subjects, homes, devices and their own zones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely

from device_sim.geo import FloatArray, LocalFrame
from device_sim.kinds import (
    CURFEW,
    HOME_DRIFT,
    HOME_DRIFT_M,
    LEFT_HOME,
    VICTIM,
    VIOLATION_KINDS,
    assign_kinds,
)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DEFAULT_GEOFENCE_DIR = Path(__file__).resolve().parent.parent / "geofences" / "demo"

# Ordinary paths keep this far from every boundary a subject must not cross: lateral wander (60 m)
# plus clipped GPS noise (<= 120 m) then still cannot put a fix on the wrong side.
SAFE_MARGIN_M = 250.0
VICTIM_RADIUS_M = 200.0
# The victim_proximity rule's radius; routine legs keep a further 100 m (wander 60 m + GPS) away.
VICTIM_PROXIMITY_M = 500.0
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
_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国志红文斌"


@dataclass(frozen=True, slots=True)
class Geography:
    """The demo geofences, in lon/lat as published and in local metres for movement."""

    frame: LocalFrame
    jurisdictions: list[dict[str, Any]]  # GeoJSON Point Features, parents before children
    shared_zones: list[dict[str, Any]]  # Features exactly as POSTed to /api/zones
    county: shapely.Geometry  # union of the inclusion zones, lon/lat
    county_xy: shapely.Geometry
    exclusions_xy: list[shapely.Geometry]  # every shared exclusion zone, circles as polygons
    safe_xy: shapely.Geometry  # county shrunk and exclusions grown by SAFE_MARGIN_M (prepared)
    offices: list[str]
    office_x: FloatArray
    office_y: FloatArray
    office_radius_m: FloatArray

    @property
    def exclusion_features(self) -> list[dict[str, Any]]:
        """The shared exclusion zones, in the same order as `exclusions_xy`."""
        return [z for z in self.shared_zones if z["properties"]["kind"] == "exclusion"]


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
class World:
    """Everything the simulator needs to set up the service and move subjects."""

    seed: int
    geography: Geography
    subjects: Subjects
    devices: Devices
    own_zones: list[dict[str, Any]]  # per-subject exclusion circles (victims' homes)


def load_geography(directory: Path | None = None) -> Geography:
    """Read `jurisdictions.json` and `zones.geojson` from `directory` (default: geofences/demo)."""
    directory = directory or DEFAULT_GEOFENCE_DIR
    jurisdictions = json.loads((directory / "jurisdictions.json").read_text("utf-8"))["features"]
    zones = json.loads((directory / "zones.geojson").read_text("utf-8"))["features"]
    inclusions = [
        shapely.geometry.shape(z["geometry"]) for z in zones if z["properties"]["kind"] == "inclusion"
    ]
    county = shapely.union_all(inclusions)
    c = county.centroid
    frame = LocalFrame(round(c.x, 2), round(c.y, 2))
    county_xy = frame.project(county)
    exclusions_xy = [_zone_area_xy(frame, z) for z in zones if z["properties"]["kind"] == "exclusion"]
    safe_xy = county_xy.buffer(-SAFE_MARGIN_M).difference(
        shapely.union_all([e.buffer(SAFE_MARGIN_M) for e in exclusions_xy])
    )
    shapely.prepare(safe_xy)
    offices = [j for j in jurisdictions if j["properties"]["kind"] == "office"]
    ox, oy = frame.to_xy(
        np.array([o["geometry"]["coordinates"][0] for o in offices]),
        np.array([o["geometry"]["coordinates"][1] for o in offices]),
    )
    return Geography(
        frame=frame,
        jurisdictions=jurisdictions,
        shared_zones=zones,
        county=county,
        county_xy=county_xy,
        exclusions_xy=exclusions_xy,
        safe_xy=safe_xy,
        offices=[o["id"] for o in offices],
        office_x=ox,
        office_y=oy,
        office_radius_m=np.array([float(o["properties"].get("settlement_radius_m", 2000)) for o in offices]),
    )


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
    office = rng.choice(len(geo.offices), size=n, p=_office_shares(len(geo.offices)))
    cx, cy, sigma = geo.office_x[office], geo.office_y[office], geo.office_radius_m[office]

    def in_safe(_: IntArray, x: FloatArray, y: FloatArray) -> BoolArray:
        return np.asarray(shapely.contains_xy(geo.safe_xy, x, y))

    home_x, home_y = _sample_points(rng, in_safe, cx, cy, sigma)
    script = assign_kinds(np.random.default_rng([seed, 2]), n, breach_fraction, near_miss_fraction)
    drift = script == HOME_DRIFT
    home_x[drift], home_y[drift] = _near_exclusion(geo, rng, home_x[drift], home_y[drift])
    has_victim = (rng.random(n) < VICTIM_ZONE_SHARE) & ~drift | (script == VICTIM)
    # A victim lives 1.5-4 km away: far enough that the 200 m circle never covers the subject's home.
    vx, vy = _sample_points(rng, in_safe, home_x, home_y, np.full(n, 1_500.0), ring=True)
    vx, vy = np.where(has_victim, vx, np.nan), np.where(has_victim, vy, np.nan)

    ax, ay = np.empty((n, ACTIVITY_POINTS)), np.empty((n, ACTIVITY_POINTS))

    def activity_ok(rows: IntArray, x: FloatArray, y: FloatArray) -> BoolArray:
        # A near-miss home by an exclusion zone is not in the safe region; its owner stays home.
        return np.asarray(_safe_leg(geo, home_x[rows], home_y[rows], x, y, vx[rows], vy[rows]) | drift[rows])

    for k in range(ACTIVITY_POINTS):
        ax[:, k], ay[:, k] = _sample_points(rng, activity_ok, cx, cy, sigma * 1.3)

    ids = [f"{namespace}subj-{i + 1:06d}" for i in range(n)]
    subjects = Subjects(
        ids=ids,
        names=[_name(rng) for _ in range(n)],
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
    return World(seed, geo, subjects, devices, _own_zones(geo.frame, subjects))


def _office_shares(count: int) -> FloatArray:
    """The county seat (first office) houses twice as many subjects as each other town."""
    shares = np.ones(count)
    shares[0] = 2.0
    return np.asarray(shares / shares.sum(), dtype=np.float64)


def _sample_points(
    rng: np.random.Generator, ok: Any, cx: FloatArray, cy: FloatArray, sigma: FloatArray, ring: bool = False
) -> tuple[FloatArray, FloatArray]:
    """One point per row around (cx, cy); rows failing `ok(rows, x, y) -> bool array` are redrawn.

    Normal with s.d. `sigma`, or with `ring` uniform on an annulus sigma..2.7 sigma (a victim's home).
    """
    x, y = np.empty_like(cx), np.empty_like(cy)
    todo = np.arange(cx.size)
    for _ in range(500):
        if todo.size == 0:
            return x, y
        if ring:
            bearing, dist = (
                rng.uniform(0, 2 * np.pi, todo.size),
                rng.uniform(1.0, 2.7, todo.size) * sigma[todo],
            )
            x[todo], y[todo] = cx[todo] + dist * np.cos(bearing), cy[todo] + dist * np.sin(bearing)
        else:
            x[todo] = cx[todo] + rng.normal(0, sigma[todo])
            y[todo] = cy[todo] + rng.normal(0, sigma[todo])
        todo = todo[~np.asarray(ok(todo, x[todo], y[todo]), dtype=bool)]
    raise RuntimeError(f"could not place {todo.size} points inside the safe region")


def _safe_leg(
    geo: Geography,
    x0: FloatArray,
    y0: FloatArray,
    x1: FloatArray,
    y1: FloatArray,
    vx: FloatArray,
    vy: FloatArray,
) -> BoolArray:
    """A straight leg is safe if it lies in the safe region and keeps clear of the subject's victim circle."""
    lines = shapely.linestrings(np.stack([np.column_stack([x0, y0]), np.column_stack([x1, y1])], axis=1))
    inside = shapely.within(lines, geo.safe_xy)
    clearance = _segment_distance(x0, y0, x1, y1, vx, vy)
    far_from_victim = np.isnan(clearance) | (clearance > VICTIM_PROXIMITY_M + 100.0)
    long_enough = np.hypot(x1 - x0, y1 - y0) > 300.0
    return np.asarray(inside & far_from_victim & long_enough, dtype=bool)


def _segment_distance(
    x0: FloatArray, y0: FloatArray, x1: FloatArray, y1: FloatArray, px: FloatArray, py: FloatArray
) -> FloatArray:
    """Distance from each point (px, py) to segment (x0, y0)-(x1, y1); NaN where the point is NaN."""
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * dx + (py - y0) * dy) / np.maximum(dx * dx + dy * dy, 1e-9), 0.0, 1.0)
    return np.asarray(np.hypot(x0 + t * dx - px, y0 + t * dy - py), dtype=np.float64)


def _near_exclusion(
    geo: Geography, rng: np.random.Generator, x: FloatArray, y: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Homes moved to kinds.HOME_DRIFT_M from the edge of an exclusion zone everyone must avoid."""
    shared = [a for a, z in zip(geo.exclusions_xy, geo.exclusion_features, strict=True)
              if z["properties"].get("group_id") is None]  # fmt: skip
    zone = np.array(shared)[rng.integers(0, len(shared), x.size)]
    centre = shapely.get_coordinates(shapely.centroid(zone))
    bearing = rng.uniform(0, 2 * np.pi, x.size)
    unit = np.column_stack([np.cos(bearing), np.sin(bearing)])
    want = rng.uniform(*HOME_DRIFT_M, x.size)
    reach = want + 300.0
    for _ in range(8):  # Newton-like: move out or in by the distance error
        points = centre + unit * reach[:, None]
        reach += want - shapely.distance(zone, shapely.points(points))
    points = centre + unit * reach[:, None]
    return points[:, 0].copy(), points[:, 1].copy()


def _name(rng: np.random.Generator) -> str:
    given = rng.choice(list(_GIVEN), size=int(rng.integers(1, 3)))
    return str(rng.choice(list(_SURNAMES))) + "".join(given)


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


def _zone_area_xy(frame: LocalFrame, feature: dict[str, Any]) -> shapely.Geometry:
    """A zone's area in local metres; a circle zone (Point + radius_m) becomes a 64-gon."""
    geom = frame.project(shapely.geometry.shape(feature["geometry"]))
    radius = feature["properties"].get("radius_m")
    return geom.buffer(float(radius), quad_segs=16) if radius is not None else geom
