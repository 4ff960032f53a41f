"""Zones as they were: the recently superseded versions of changed zones, so that a late fix is judged
against the geometry in force at its own timestamp (the `zone_versions` table keeps every version)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.zone_index import ZoneIndex
from emwatch.geo.zones import Zone
from emwatch.rules.accuracy import classify


@dataclass(frozen=True, slots=True)
class ZoneVersionRow:
    """A superseded version of a zone, in force from `valid_from_ms` until `valid_until_ms`."""

    zone_id: str
    valid_from_ms: int
    valid_until_ms: int
    zone: Zone


@dataclass(frozen=True, slots=True)
class ZoneVersions:
    """Old versions as rows of their own small zone index, each tied to the current zone's number."""

    zone: NDArray[np.int32]  # current zone index of each old version (sorted)
    valid_from: NDArray[np.int64]
    valid_until: NDArray[np.int64]
    index: ZoneIndex | None

    @classmethod
    def build(
        cls, rows: Sequence[ZoneVersionRow], index_of: Mapping[str, int], h3_resolution: int
    ) -> ZoneVersions:
        known = sorted((index_of[r.zone_id], r.valid_from_ms, r) for r in rows if r.zone_id in index_of)
        if not known:
            return EMPTY
        return cls(
            np.array([k[0] for k in known], np.int32), np.array([k[1] for k in known], np.int64),
            np.array([k[2].valid_until_ms for k in known], np.int64),
            ZoneIndex.build([k[2].zone for k in known], h3_resolution=h3_resolution, cover=_no_cover),
        )

    def version_at(self, zone: NDArray[np.int32], ts: NDArray[np.int64]) -> NDArray[np.intp]:
        """Per (zone, ts): the old version in force then, or -1 when the current one was (or none known).

        Before the oldest kept version the oldest one is used: nearer the truth than today's.
        """
        out = np.full(len(zone), -1, dtype=np.intp)
        if self.index is None or len(zone) == 0:
            return out
        lo = np.searchsorted(self.zone, zone, side="left")
        hi = np.searchsorted(self.zone, zone, side="right")
        for i in np.flatnonzero(hi > lo).tolist():  # rows about recently changed zones only: few
            rows = np.arange(lo[i], hi[i])
            if ts[i] >= self.valid_until[rows[-1]]:
                continue
            before = rows[self.valid_from[rows] <= ts[i]]
            out[i] = before[-1] if len(before) else rows[0]
        return out

    def reclassify(
        self, zone: NDArray[np.int32], ts: NDArray[np.int64], lon: NDArray[np.float64],
        lat: NDArray[np.float64], cell: NDArray[np.uint64], radius_m: NDArray[np.float64],
        src: NDArray[np.int8], breach: NDArray[np.bool_], confirmed: NDArray[np.bool_],
    ) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
        """`breach`/`confirmed` redone with the geometry in force at each row's `ts`, where it changed."""
        version = self.version_at(zone, ts)
        rows = np.flatnonzero(version >= 0)
        if len(rows) == 0 or self.index is None:
            return breach, confirmed
        v = version[rows].astype(np.int32)
        inside = self.index.contains(v, lon[rows], lat[rows], cell[rows])
        old_breach, old_confirmed = classify(
            self.index, v, lon[rows], lat[rows], inside, radius_m[rows], src[rows]
        )
        breach, confirmed = breach.copy(), confirmed.copy()
        breach[rows], confirmed[rows] = old_breach, old_confirmed
        return breach, confirmed


def _no_cover(_: Zone) -> bool:
    return False  # old versions are looked up by number, never searched by cell


EMPTY = ZoneVersions(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64), None)
