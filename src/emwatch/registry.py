"""Who is supervised: subjects, their devices and the zones that apply to them, as dense arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.severity import SeverityOverrideRow, resolve_overrides
from emwatch.geo.zone_columns import ZoneColumns
from emwatch.geo.zone_index import ZoneIndex
from emwatch.geo.zones import Zone
from emwatch.rules.permits import PERMIT_DESTINATION, PermitRow, PermitTable
from emwatch.rules.schedule import ScheduleTable
from emwatch.rules.zone_versions import EMPTY as NO_ZONE_VERSIONS
from emwatch.rules.zone_versions import ZoneVersionRow, ZoneVersions

WEARABLE_KINDS = frozenset({"ankle", "wrist"})


@dataclass(frozen=True, slots=True)
class SubjectRow:
    """A supervised person as stored."""

    id: str
    jurisdiction_id: str
    risk_level: str = "medium"
    groups: tuple[str, ...] = ()
    status: str = "active"


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A bracelet or phone as stored."""

    id: str
    kind: str
    subject_id: str | None
    protects_subject_id: str | None = None  # kind 'victim': the subject it keeps away


@dataclass(frozen=True, slots=True)
class ContactBanRow:
    """Two subjects forbidden to meet (禁止接触特定的人): within radius_m for min_seconds is a breach."""

    subject_a: str
    subject_b: str
    radius_m: float
    min_seconds: float


@dataclass(frozen=True, slots=True)
class JurisdictionRow:
    """A node of the jurisdiction tree (city → district → office)."""

    id: str
    parent_id: str | None


@dataclass(frozen=True, slots=True)
class Registry:
    """Immutable snapshot; rebuilt whenever subjects, devices or zones change."""

    device_index: dict[str, int]
    device_ids: list[str]
    device_subject: NDArray[np.int32]  # -1: not assigned to a subject
    device_wearable: NDArray[np.bool_]  # zone rules follow the bracelet, not the phone
    subject_ids: list[str]
    subject_jurisdiction: list[str]
    subject_risk: list[str]
    zones: ZoneIndex
    pair_start: NDArray[np.int64]  # CSR: zones always checked for subject s are
    pair_zone: NDArray[np.int32]  # pair_zone[pair_start[s]:pair_start[s + 1]]
    shared_mask: NDArray[np.bool_]  # shared exclusion zones, found through the H3 cover index
    subject_ancestors: NDArray[np.int32]  # (subjects, depth) jurisdiction path, -1 padded
    zone_jurisdiction: NDArray[np.int32]  # -1 unless the zone is jurisdiction-scoped
    schedules: ScheduleTable  # zones with time windows (curfews); the rest are always in force
    permits: PermitTable  # approved leave permits (外出请假)
    permit_destination: NDArray[np.bool_]  # zones only a permit puts in force
    zone_buffer_m: NDArray[np.float64]  # warning ring around exclusion zones (NaN: none)
    # Proximity rules: the subject each victim device protects (-1: none), and contact bans.
    device_protects: NDArray[np.int32] = field(default_factory=lambda: np.empty(0, np.int32))
    ban_a: NDArray[np.int32] = field(default_factory=lambda: np.empty(0, np.int32))
    ban_b: NDArray[np.int32] = field(default_factory=lambda: np.empty(0, np.int32))
    ban_radius_m: NDArray[np.float64] = field(default_factory=lambda: np.empty(0))
    ban_min_ms: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, np.int64))
    # Per jurisdiction id: (rule, risk level) → severity, overrides inherited down the tree resolved.
    severity_overrides: dict[str, dict[tuple[str, str], str]] = field(default_factory=dict)
    # Recently superseded zone geometries: late fixes are judged against the one in force then.
    zone_versions: ZoneVersions = NO_ZONE_VERSIONS

    @classmethod
    def build(
        cls,
        jurisdictions: Sequence[JurisdictionRow],
        subjects: Sequence[SubjectRow],
        devices: Sequence[DeviceRow],
        zones: Sequence[Zone],
        h3_resolution: int,
        bans: Sequence[ContactBanRow] = (),
        permits: Sequence[PermitRow] = (),
        severity: Sequence[SeverityOverrideRow] = (),
        zone_versions: Sequence[ZoneVersionRow] = (),
    ) -> Registry:
        """Index everything densely; only active subjects are monitored."""
        active = [s for s in subjects if s.status == "active"]
        subject_index = {s.id: i for i, s in enumerate(active)}
        jur_index = {j.id: i for i, j in enumerate(jurisdictions)}
        parent = {j.id: j.parent_id for j in jurisdictions}

        device_ids = [d.id for d in devices]
        supervised = [d.subject_id if d.kind != "victim" else None for d in devices]
        protected = [d.protects_subject_id if d.kind == "victim" else None for d in devices]
        device_subject = np.array([subject_index.get(s, -1) if s else -1 for s in supervised], dtype=np.int32)
        protects = np.array([subject_index.get(s, -1) if s else -1 for s in protected], dtype=np.int32)
        live_bans = [
            b for b in bans if b.subject_a in subject_index and b.subject_b in subject_index
            and b.subject_a != b.subject_b
        ]
        wearable = np.array([d.kind in WEARABLE_KINDS for d in devices], dtype=np.bool_)

        ancestors = _ancestors(active, jurisdictions, jur_index)
        cols = ZoneColumns.from_zones(zones)
        index = ZoneIndex.build(cols, h3_resolution=h3_resolution)
        zone_jur = np.array([jur_index.get(j or "", -1) for j in cols.jurisdiction_id], dtype=np.int32)
        shared = ~cols.is_inclusion & np.array([j is not None for j in cols.jurisdiction_id], dtype=bool)
        destination = np.array([r == PERMIT_DESTINATION for r in cols.property_values("role")], dtype=bool)
        pair_start, pair_zone = _pairs(active, subject_index, cols, zone_jur, destination, ancestors)
        # last, so that they are allocated together, after the build's temporaries
        device_ids, subject_ids = [_own_copy(d) for d in device_ids], [_own_copy(s.id) for s in active]
        return cls(
            device_index={d: i for i, d in enumerate(device_ids)},
            device_ids=device_ids,
            device_subject=device_subject,
            device_wearable=wearable,
            subject_ids=subject_ids,
            subject_jurisdiction=_shared_strings([s.jurisdiction_id for s in active]),
            subject_risk=_shared_strings([s.risk_level for s in active]),
            zones=index,
            pair_start=pair_start,
            pair_zone=pair_zone,
            shared_mask=shared,
            subject_ancestors=ancestors,
            zone_jurisdiction=zone_jur,
            schedules=ScheduleTable.build(cols.schedule),
            permits=PermitTable.build(permits, subject_index, _permit_zones(permits, index)),
            permit_destination=destination,
            zone_buffer_m=cols.buffer_m,
            device_protects=protects,
            ban_a=np.array([subject_index[b.subject_a] for b in live_bans], dtype=np.int32),
            ban_b=np.array([subject_index[b.subject_b] for b in live_bans], dtype=np.int32),
            ban_radius_m=np.array([b.radius_m for b in live_bans], dtype=np.float64),
            ban_min_ms=np.array([b.min_seconds * 1000 for b in live_bans], dtype=np.int64),
            severity_overrides=resolve_overrides(parent, severity),
            zone_versions=ZoneVersions.build(zone_versions, index.index_of, h3_resolution),
        )

    def scheduled_inclusion_pairs(self) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """(subject, zone) for every curfew-like zone: a scheduled inclusion zone a subject must be in."""
        subject = np.repeat(np.arange(len(self.subject_ids), dtype=np.int32), np.diff(self.pair_start))
        zone = self.pair_zone
        keep = self.schedules.scheduled[zone] & self.zones.kind_is_inclusion[zone]
        return subject[keep], zone[keep]

    def shared_zone_applies(self, subject: NDArray[np.int32], zone: NDArray[np.int32]) -> NDArray[np.bool_]:
        """Whether each shared zone's jurisdiction is the subject's own or one of its ancestors."""
        jur = self.zone_jurisdiction[zone]
        return np.asarray((self.subject_ancestors[subject] == jur[:, None]).any(axis=1) & (jur >= 0))


def _ancestors(
    active: Sequence[SubjectRow], jurisdictions: Sequence[JurisdictionRow], jur_index: dict[str, int],
    depth: int = 8,
) -> NDArray[np.int32]:
    """(subjects, depth) jurisdiction path of each subject, its own jurisdiction first, -1 padded (a
    path stops at an unknown jurisdiction)."""
    parents = [jur_index.get(j.parent_id, -1) if j.parent_id is not None else -1 for j in jurisdictions]
    parent = np.array([*parents, -1], dtype=np.int32)  # the last entry: where -1 leads
    node = np.array([jur_index.get(s.jurisdiction_id, -1) for s in active], dtype=np.int32)
    ancestors = np.full((len(active), depth), -1, dtype=np.int32)
    for level in range(depth):
        ancestors[:, level] = node
        node = parent[node]
    return ancestors


def _pairs(
    active: Sequence[SubjectRow], subject_index: dict[str, int], cols: ZoneColumns,
    zone_jur: NDArray[np.int32], destination: NDArray[np.bool_], ancestors: NDArray[np.int32],
) -> tuple[NDArray[np.int64], NDArray[np.int32]]:
    """CSR (pair_start, pair_zone) of the zones always checked for each subject: its own zones, then its
    groups' zones (group by group), then the inclusion zones of its jurisdiction path (level by level),
    each run in zone order. Exclusion zones of a jurisdiction are shared: found by their covers."""
    own_subject = np.array([subject_index.get(s, -1) if s is not None else -1 for s in cols.subject_id],
                           dtype=np.int64)
    own = ~destination & (own_subject >= 0)
    has_group = np.array([g is not None for g in cols.group_id], dtype=bool)
    grouped = ~destination & ~own & has_group
    by_jur = ~destination & ~own & ~has_group & cols.is_inclusion & (zone_jur >= 0)
    subjects: list[NDArray[np.int64]] = [own_subject[own]]
    zones: list[NDArray[np.int64]] = [np.flatnonzero(own)]
    by_group: dict[str, list[int]] = {}
    for z in np.flatnonzero(grouped).tolist():
        by_group.setdefault(cols.group_id[z] or "", []).append(z)
    for s_idx, s in enumerate(active):
        for g in s.groups if by_group else ():
            if not (run := by_group.get(g, [])):
                continue
            subjects.append(np.full(len(run), s_idx, dtype=np.int64))
            zones.append(np.array(run, dtype=np.int64))
    # inclusion zones by jurisdiction (CSR, zone order within one), then one piece per path level
    jur_zones = np.flatnonzero(by_jur)
    jur_zones = jur_zones[np.argsort(zone_jur[jur_zones], kind="stable")]
    n_jur = int(max(ancestors.max(initial=-1), zone_jur.max(initial=-1))) + 1
    jur_count = np.bincount(zone_jur[jur_zones], minlength=n_jur).astype(np.int64)
    jur_start = np.cumsum(jur_count) - jur_count
    for level in range(ancestors.shape[1]):
        j = ancestors[:, level]
        s_with = np.flatnonzero(j >= 0)
        counts = jur_count[j[s_with]]
        subjects.append(np.repeat(s_with.astype(np.int64), counts))
        run_first = np.cumsum(counts) - counts
        at = np.arange(int(counts.sum())) + np.repeat(jur_start[j[s_with]] - run_first, counts)
        zones.append(jur_zones[at])
    subject, zone = np.concatenate(subjects), np.concatenate(zones)
    order = np.argsort(subject, kind="stable")  # per subject, the pieces keep the order they came in
    pair_start = np.zeros(len(active) + 1, dtype=np.int64)
    np.cumsum(np.bincount(subject, minlength=len(active)), out=pair_start[1:])
    return pair_start, zone[order].astype(np.int32)


def _permit_zones(permits: Sequence[PermitRow], index: ZoneIndex) -> dict[str, int]:
    """Zone id → index for the zones permits name (a small dict, not one of every zone)."""
    named = {z for p in permits for z in p.zone_ids}
    return {z: index.index_of[z] for z in named if z in index.index_of}


def _shared_strings(values: list[str]) -> list[str]:
    """`values` with equal strings made one object: a database driver returns a new `str` per row, and
    a jurisdiction or risk level repeated for every subject would cost ~55 B per subject each."""
    seen: dict[str, str] = {}
    return [seen.setdefault(v, v) for v in values]


def _own_copy(value: str) -> str:
    """A new string equal to `value`. The registry outlives the rows it is built from: strings of its
    own, allocated together, let the rows' small-object memory go back to the OS once they are dropped
    (a kept row string pins its whole 256 KB arena)."""
    return value.encode().decode()
