"""Leave permits (外出请假): during one, the destination zones replace the subject's usual inclusion
zones; after it (plus grace), a subject not yet back is `permit_overdue` rather than `zone_exit`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emwatch.rules.catalog import PERMIT_OVERDUE
from emwatch.rules.runs import expand_runs

PERMIT_DESTINATION = "permit_destination"  # zones.properties.role of a zone only a permit enforces


@dataclass(frozen=True, slots=True)
class PermitRow:
    """An approved permit as the rules need it."""

    id: int
    subject_id: str
    starts_ms: int
    ends_ms: int
    grace_ms: int
    zone_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PermitTable:
    """Approved permits sorted by (subject, start), with destination zones in CSR form."""

    subject: NDArray[np.int32]
    starts: NDArray[np.int64]
    ends: NDArray[np.int64]
    grace: NDArray[np.int64]
    ids: NDArray[np.int64]
    zone_start: NDArray[np.int64]
    zone: NDArray[np.int32]

    @classmethod
    def build(cls, permits: Sequence[PermitRow], subject_index: dict[str, int],
              zone_index: dict[str, int]) -> PermitTable:
        rows = sorted(
            (p for p in permits if p.subject_id in subject_index),
            key=lambda p: (subject_index[p.subject_id], p.starts_ms),
        )
        zones = [[zone_index[z] for z in p.zone_ids if z in zone_index] for p in rows]
        zone_start = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(z) for z in zones], out=zone_start[1:])
        return cls(
            subject=np.array([subject_index[p.subject_id] for p in rows], dtype=np.int32),
            starts=np.array([p.starts_ms for p in rows], dtype=np.int64),
            ends=np.array([p.ends_ms for p in rows], dtype=np.int64),
            grace=np.array([p.grace_ms for p in rows], dtype=np.int64),
            ids=np.array([p.id for p in rows], dtype=np.int64),
            zone_start=zone_start,
            zone=np.array([z for zs in zones for z in zs], dtype=np.int32),
        )

    def destinations(
        self, subject: NDArray[np.int32], ts: NDArray[np.int64]
    ) -> tuple[NDArray[np.intp], NDArray[np.int32]]:
        """(row, zone) for the destination zones of each row's permit in force at its instant."""
        if len(self.subject) == 0:
            return np.empty(0, dtype=np.intp), np.empty(0, dtype=np.int32)
        p = self.latest_started(subject, ts)
        q = np.maximum(p, 0)
        active = np.flatnonzero((p >= 0) & (ts < self.ends[q]))
        start = self.zone_start[q[active]]
        run, at = expand_runs(start, self.zone_start[q[active] + 1] - start)
        return active[run].astype(np.intp), self.zone[at]

    def latest_started(self, subject: NDArray[np.int32], ts: NDArray[np.int64]) -> NDArray[np.intp]:
        """Per (subject, instant): the subject's permit that started last at or before it, else -1."""
        if len(self.subject) == 0:
            return np.full(len(subject), -1, dtype=np.intp)
        # Lexicographic (subject, start) search over one int64 key per side: subject in the high bits.
        shift = np.int64(1) << np.int64(42)  # 2**42 ms ≈ 139 years after 1970: room for any timestamp
        keys = self.subject.astype(np.int64) * shift + self.starts
        at = np.searchsorted(keys, subject.astype(np.int64) * shift + ts, side="right") - 1
        ok = (at >= 0) & (self.subject[np.maximum(at, 0)] == subject)
        return np.where(ok, at, -1).astype(np.intp)


def apply_permits(
    table: PermitTable,
    returned: NDArray[np.bool_],
    subject: NDArray[np.int32],
    zone: NDArray[np.int32],
    ts: NDArray[np.int64],
    rule: NDArray[np.int16],
    breach: NDArray[np.bool_],
    usual_inclusion: NDArray[np.bool_],
) -> tuple[NDArray[np.int16], NDArray[np.bool_]]:
    """Adjust checks of the usual inclusion zones for permits: suspended during leave and grace,
    `permit_overdue` after it until the subject is first seen back inside."""
    p = table.latest_started(subject, ts)
    has = (p >= 0) & usual_inclusion
    q = np.maximum(p, 0)
    on_leave = has & (ts < table.ends[q] + table.grace[q])
    overdue = has & ~on_leave & ~returned[q]
    return np.where(overdue, PERMIT_OVERDUE, rule).astype(np.int16), breach & ~on_leave


def permit_zone_in_force(
    table: PermitTable, subject: NDArray[np.int32], zone: NDArray[np.int32], ts: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Whether each destination-zone check falls inside a permit of that subject naming that zone."""
    if len(table.subject) == 0:
        return np.zeros(len(zone), dtype=bool)
    p = table.latest_started(subject, ts)
    q = np.maximum(p, 0)
    active = (p >= 0) & (ts < table.ends[q])
    out = np.zeros(len(zone), dtype=bool)
    for i in np.flatnonzero(active).tolist():  # destinations per permit are one or two zones
        out[i] = zone[i] in table.zone[table.zone_start[q[i]]:table.zone_start[q[i] + 1]]
    return out

