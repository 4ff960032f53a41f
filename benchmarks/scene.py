"""A synthetic national-scale scene: counties, subjects with own zones, shared zones, realistic fixes.

Every benchmark builds the same scene from a seed, so figures of different runs are comparable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.zones import Zone
from emwatch.ingest.batcher import IngestBatch
from emwatch.model import NO_BATT, NO_SEQ, FixColumns
from emwatch.registry import DeviceRow, JurisdictionRow, Registry, SubjectRow

RES = 9
# County seats the subjects are spread over (lon, lat): Hangzhou, Chengdu, Zhengzhou, Harbin.
COUNTY_CENTRES = ((120.1, 30.3), (104.06, 30.66), (113.65, 34.76), (126.63, 45.75))
COUNTY_VERTICES = 3_000
SHARED_ZONES = 1_000


def county(lon0: float, lat0: float, rng: np.random.Generator, n: int = COUNTY_VERTICES) -> shapely.Polygon:
    """~2,400 km² with lobes and a jagged edge, like a real county outline."""
    theta = np.sort(rng.uniform(0, 2 * np.pi, n))
    r = 0.25 * (1 + 0.25 * np.sin(3 * theta + 1) + 0.15 * np.sin(7 * theta) + 0.05 * np.sin(23 * theta)
                + 0.02 * rng.standard_normal(n))
    x = lon0 + r * np.cos(theta) / math.cos(math.radians(lat0))
    return shapely.Polygon(np.c_[x, lat0 + r * np.sin(theta)])


def star(lon: float, lat: float, radius_deg: float, n: int, rng: np.random.Generator) -> shapely.Polygon:
    """Simple polygon with vertices at sorted angles and noisy radii (concave)."""
    theta = np.unique(np.sort(rng.uniform(0, 2 * np.pi, n)))
    r = radius_deg * (1 - 0.3 * rng.uniform(0, 1, len(theta)))
    x = lon + r * np.cos(theta) / math.cos(math.radians(lat))
    poly = shapely.Polygon(np.c_[x, lat + r * np.sin(theta)])
    return poly if poly.is_valid else shapely.convex_hull(poly)


def small_zone(zid: str, lon: float, lat: float, rng: np.random.Generator, **scope: str) -> Zone:
    """A 50-400 m exclusion circle or a 12-40 vertex exclusion polygon of similar size."""
    if rng.uniform() < 0.4:
        return Zone(zid, "exclusion", shapely.Point(lon, lat), radius_m=float(rng.uniform(50, 400)), **scope)  # type: ignore[arg-type]
    geom = star(lon, lat, float(rng.uniform(0.0008, 0.004)), int(rng.integers(12, 40)), rng)
    return Zone(zid, "exclusion", geom, **scope)  # type: ignore[arg-type]


@dataclass
class Scene:
    """Registry rows plus where each subject lives (for generating plausible fixes)."""

    jurisdictions: list[JurisdictionRow]
    subjects: list[SubjectRow]
    devices: list[DeviceRow]
    zones: list[Zone]
    subject_county: NDArray[np.int64]
    anchor: NDArray[np.float64]  # (subjects, 2) lon/lat of one own zone per subject
    own_zones: NDArray[np.int64]  # own zones per subject (excluding the county)

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    def registry(self) -> Registry:
        """The registry the service would build from these rows."""
        return Registry.build(self.jurisdictions, self.subjects, self.devices, self.zones, RES)

    def pair_count(self, subject: NDArray[np.int64]) -> int:
        """(fix, zone) pairs checked on every fix of these subjects: county + own zones."""
        return int((self.own_zones[subject] + 1).sum())


def device_id(i: int) -> str:
    return f"dev-{i:07d}"


def build_scene(n_subjects: int, seed: int = 42, counties: int = len(COUNTY_CENTRES)) -> Scene:
    """n_subjects subjects, each with 1-4 own small zones and their county: 2-5 zones per subject."""
    rng = np.random.default_rng(seed)
    centres = COUNTY_CENTRES[:counties]
    jurisdictions = [JurisdictionRow("cn", None)]
    jurisdictions += [JurisdictionRow(f"county-{c}", "cn") for c in range(counties)]
    zones = [Zone(f"county-{c}", "inclusion", county(lon, lat, rng), jurisdiction_id=f"county-{c}")
             for c, (lon, lat) in enumerate(centres)]
    subject_county = rng.integers(0, counties, n_subjects)
    centre = np.array(centres)[subject_county]
    scale = np.array([1 / np.cos(np.radians(centre[:, 1])), np.ones(n_subjects)]).T
    homes = centre + rng.uniform(-0.15, 0.15, (n_subjects, 2)) * scale
    own = rng.integers(1, 5, n_subjects)
    subjects, devices = [], []
    for s in range(n_subjects):
        sid = f"subj-{s:07d}"
        subjects.append(SubjectRow(sid, f"county-{subject_county[s]}", "high" if s % 10 == 0 else "medium"))
        devices.append(DeviceRow(device_id(s), "ankle", sid))
        hx, hy = homes[s]
        for k in range(int(own[s])):
            dx, dy = rng.uniform(-0.01, 0.01, 2)
            zones.append(small_zone(f"z-{s}-{k}", float(hx + dx), float(hy + dy), rng, subject_id=sid))
    for i in range(SHARED_ZONES):
        c = i % counties
        lon, lat = centres[c]
        dx, dy = rng.uniform(-0.15, 0.15, 2)
        zones.append(small_zone(f"shared-{i}", lon + dx, lat + dy, rng, jurisdiction_id=f"county-{c}"))
    return Scene(jurisdictions, subjects, devices, zones, subject_county, homes, own)


class Walkers:
    """Every subject's bracelet, moving a few metres per report, reporting once per round in random order.

    Like real subjects they mostly stay put relative to their zones, so breaches begin and end rarely.
    """

    STEP_DEG = 0.00015  # ~15 m: 10 s at walking pace

    def __init__(self, scene: Scene, rng: np.random.Generator, ts0_ms: int) -> None:
        self.scene, self.rng, self.ts_ms = scene, rng, ts0_ms
        n = scene.n_subjects
        roam = rng.uniform(0, 1, n) < 0.2
        centre = np.array(COUNTY_CENTRES)[scene.subject_county]
        base = np.where(roam[:, None], centre, scene.anchor)
        self.xy = base + rng.uniform(-1, 1, (n, 2)) * np.where(roam, 0.12, 0.01)[:, None]
        self.ids = np.array([device_id(s) for s in range(n)], dtype=object)
        self._order = np.empty(0, dtype=np.int64)
        self._order_ts = np.empty(0, dtype=np.int64)

    def next_fixes(self, n_fixes: int) -> FixColumns:
        """The next n_fixes reports, continuing the current round (a new round re-shuffles)."""
        n = self.scene.n_subjects
        while len(self._order) < n_fixes:
            self.ts_ms += 10_000
            # spread over the round's 10 s; one report per device per round keeps (device, ts) unique
            round_ts = self.ts_ms + np.arange(n, dtype=np.int64) * 10_000 // n
            self._order = np.concatenate([self._order, self.rng.permutation(n)])
            self._order_ts = np.concatenate([self._order_ts, round_ts])
        subject, self._order = self._order[:n_fixes], self._order[n_fixes:]
        ts, self._order_ts = self._order_ts[:n_fixes], self._order_ts[n_fixes:]
        self.xy[subject] += self.rng.standard_normal((n_fixes, 2)) * self.STEP_DEG
        xy = self.xy[subject]
        return FixColumns(
            self.ids[subject].tolist(), ts, xy[:, 1].copy(), xy[:, 0].copy(),
            np.full(n_fixes, 8.0, dtype=np.float32), np.zeros(n_fixes, dtype=np.int8),
            np.full(n_fixes, NO_BATT, dtype=np.int16), np.full(n_fixes, NO_SEQ, dtype=np.int64),
        )

    def subjects_of(self, cols: FixColumns) -> NDArray[np.int64]:
        """Dense subject index of each fix (device i belongs to subject i)."""
        return np.array([int(d[4:]) for d in cols.device_ids], dtype=np.int64)


def ingest_batch(cols: FixColumns) -> IngestBatch:
    """Fix columns as the batcher hands them to the rule engine (no events, dead letters or receipts)."""
    values = {"fixes": cols, "events": [], "dead": [], "first_received": 0.0, "messages": len(cols),
              "receipts": [], "connection": 0}
    return IngestBatch(**{f.name: values[f.name] for f in dataclasses.fields(IngestBatch)})
