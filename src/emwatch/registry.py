"""Who is supervised: subjects, their devices and the zones that apply to them, as dense arrays."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.severity import SeverityOverrideRow, resolve_overrides
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

        depth = 8
        ancestors = np.full((len(active), depth), -1, dtype=np.int32)
        for s_idx, s in enumerate(active):
            node: str | None = s.jurisdiction_id
            for level in range(depth):
                if node is None or node not in jur_index:
                    break
                ancestors[s_idx, level] = jur_index[node]
                node = parent.get(node)

        index = ZoneIndex.build(zones, h3_resolution=h3_resolution)
        zone_jur = np.array([jur_index.get(z.jurisdiction_id or "", -1) for z in zones], dtype=np.int32)
        shared = np.array(
            [z.kind == "exclusion" and z.jurisdiction_id is not None for z in zones], dtype=bool
        )

        # Pairs checked on every fix: all inclusion zones and the subject's own/group exclusion zones.
        by_subject: list[list[int]] = [[] for _ in active]
        by_group: dict[str, list[int]] = {}
        by_jur: dict[int, list[int]] = {}
        destination = np.array([z.properties.get("role") == PERMIT_DESTINATION for z in zones], dtype=bool)
        for z_idx, z in enumerate(zones):
            if destination[z_idx]:
                continue
            if z.subject_id is not None and z.subject_id in subject_index:
                by_subject[subject_index[z.subject_id]].append(z_idx)
            elif z.group_id is not None:
                by_group.setdefault(z.group_id, []).append(z_idx)
            elif z.kind == "inclusion" and zone_jur[z_idx] >= 0:
                by_jur.setdefault(int(zone_jur[z_idx]), []).append(z_idx)
        for s_idx, s in enumerate(active):
            for g in s.groups:
                by_subject[s_idx].extend(by_group.get(g, ()))
            for j in ancestors[s_idx]:
                if j >= 0:
                    by_subject[s_idx].extend(by_jur.get(int(j), ()))
        counts = np.array([len(z) for z in by_subject], dtype=np.int64)
        pair_start = np.zeros(len(active) + 1, dtype=np.int64)
        np.cumsum(counts, out=pair_start[1:])
        flat = [z for zs in by_subject for z in zs]
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
            pair_zone=np.array(flat, dtype=np.int32),
            shared_mask=shared,
            subject_ancestors=ancestors,
            zone_jurisdiction=zone_jur,
            schedules=ScheduleTable.build([z.schedule for z in zones]),
            permits=PermitTable.build(permits, subject_index, _permit_zones(permits, index)),
            permit_destination=destination,
            zone_buffer_m=np.array([z.buffer_m or np.nan for z in zones], dtype=np.float64),
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
