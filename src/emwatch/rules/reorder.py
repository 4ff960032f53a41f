"""Late fixes inside the reorder horizon: each device's recent fixes are kept, so that a late fix can be
replayed in event-time order together with every fix of its device since (see docs/rules.md).

In-order batches cost one chunk reference each (no copy); only batches with late fixes pay for a scan.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emwatch.model import FixBatch, FixColumns, Observations
from emwatch.registry import Registry
from emwatch.rules.containment import evaluate_containment

NO_SPAN = np.iinfo(np.int64).min  # a late row judged on its own (beyond the horizon)
NEVER = np.iinfo(np.int64).min


@dataclass(frozen=True, slots=True)
class LateChecks(Observations):
    """Zone checks about late fixes. A row with a `span_start` belongs to the replay of its device's
    fixes from that ts on (late and retained alike); `late` marks rows of the late fixes themselves."""

    late: NDArray[np.bool_] = field(default_factory=lambda: np.empty(0, dtype=bool))
    span_start: NDArray[np.int64] = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    @classmethod
    def of(cls, obs: Observations, late: NDArray[np.bool_], span_start: NDArray[np.int64]) -> LateChecks:
        return cls(
            obs.subject, obs.rule, obs.zone, obs.device, obs.ts, obs.lat, obs.lon, obs.breach, obs.confirmed,
            obs.detail, late=late, span_start=span_start,
        )


def take_rows(obs: Observations, rows: NDArray[np.intp]) -> Observations:
    """The rows at `rows`, in that order (evidence renumbered)."""
    detail = obs.detail or {}
    moved = {new: detail[old] for new, old in enumerate(rows.tolist()) if old in detail}
    return Observations(
        obs.subject[rows], obs.rule[rows], obs.zone[rows], obs.device[rows], obs.ts[rows], obs.lat[rows],
        obs.lon[rows], obs.breach[rows], obs.confirmed[rows], detail=moved or None,
    )


@dataclass(frozen=True, slots=True)
class FixRows:
    """The columns a replay needs, one row per fix (device numbers of the current registry)."""

    # Typed loosely: the columns are handled generically (take, concat) by their field names.
    device: NDArray[Any]  # int32
    ts: NDArray[Any]  # int64
    lat: NDArray[Any]
    lon: NDArray[Any]
    acc: NDArray[Any]  # float32
    src: NDArray[Any]  # int8
    cell: NDArray[Any]  # uint64
    suspect: NDArray[Any]  # bool

    @classmethod
    def of(cls, batch: FixBatch, rows: NDArray[np.intp] | None = None) -> FixRows:
        f = batch.fixes
        cols = (batch.device, f.ts, f.lat, f.lon, f.acc, f.src, batch.cell, batch.suspect)
        return cls(*cols) if rows is None else cls(*(c[rows] for c in cols))

    def take(self, rows: NDArray[np.intp]) -> FixRows:
        return FixRows(*(getattr(self, n)[rows] for n in FixRows.__slots__))

    @staticmethod
    def concat(parts: list[FixRows]) -> FixRows:
        return FixRows(*(np.concatenate([getattr(p, n) for p in parts]) for n in FixRows.__slots__))

    def batch(self, device_ids: list[str], device_subject: NDArray[np.int32]) -> FixBatch:
        """As a batch of fresh fixes (a replay judges every one of them)."""
        n = len(self.ts)
        fixes = FixColumns(
            [device_ids[d] for d in self.device.tolist()], self.ts, self.lat, self.lon, self.acc, self.src,
            np.full(n, -1, np.int16), np.zeros(n, np.int64),
        )
        subject = device_subject[self.device]
        return FixBatch(fixes, self.device, subject, self.cell, np.ones(n, bool), self.suspect)


class FixHistory:
    """Every device's fixes of the last `horizon_ms` (by the newest fix seen), in arrival chunks."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon_ms = horizon_ms
        self._chunks: deque[tuple[int, FixRows]] = deque()  # (newest ts in the chunk, rows)
        self._newest = NEVER
        self.forgotten = NEVER  # newest ts of any fix already dropped: a replay must start after it

    def add(self, rows: FixRows) -> None:
        if len(rows.ts) == 0:
            return
        newest = int(rows.ts.max())
        self._chunks.append((newest, rows))
        self._newest = max(self._newest, newest)
        while self._chunks and self._chunks[0][0] < self._newest - self.horizon_ms:
            self.forgotten = max(self.forgotten, self._chunks.popleft()[0])

    def since(self, devices: NDArray[np.int32], start: NDArray[np.int64]) -> FixRows:
        """Kept fixes of `devices` (sorted, unique) no older than each one's `start`."""
        parts = []
        for _, rows in self._chunks:
            at = np.minimum(np.searchsorted(devices, rows.device), len(devices) - 1)
            keep = (devices[at] == rows.device) & (rows.ts >= start[at])
            if keep.any():
                parts.append(rows.take(np.flatnonzero(keep)))
        return FixRows.concat(parts) if parts else FixRows.concat([_EMPTY])

    def remap(self, new_of_old: NDArray[np.int32]) -> None:
        """Carry the kept fixes over to a new registry's device numbering (unknown devices dropped)."""
        chunks: deque[tuple[int, FixRows]] = deque()
        for newest, rows in self._chunks:
            device = new_of_old[rows.device]
            keep = np.flatnonzero(device >= 0)
            moved = rows.take(keep)
            rest = (getattr(moved, n) for n in FixRows.__slots__[1:])
            chunks.append((newest, FixRows(device[keep], *rest)))
        self._chunks = chunks


_EMPTY = FixRows(
    np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0, np.float32),
    np.empty(0, np.int8), np.empty(0, np.uint64), np.empty(0, bool),
)


def late_checks(
    registry: Registry, history: FixHistory, batch: FixBatch, watermark: NDArray[np.int64],
    covered_from: NDArray[np.int64], open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]],
    permit_returned: NDArray[np.bool_],
) -> LateChecks:
    """Zone checks about the batch's late fixes (those at or behind their device's `watermark`).

    Inside the horizon a device's late fixes are replayed with every kept fix of that device since the
    oldest of them (a redelivered fix, same device and ts, adds nothing); beyond it, or where the
    history does not reach back that far (`covered_from`: after a restart), a late fix is judged
    alone. Either way at the fix's own time (schedules, permits, zone versions as they were).
    Keeps the batch's fresh fixes and its replayed late ones for later replays.
    """
    fresh = np.flatnonzero(batch.fresh)
    late = np.flatnonzero(~batch.fresh)
    if len(late) == 0:
        history.add(FixRows.of(batch))
        return LateChecks.of(Observations.empty(), np.empty(0, bool), np.empty(0, np.int64))
    ts = batch.fixes.ts[late]
    within = (ts >= watermark[late] - history.horizon_ms) & (ts > history.forgotten)
    within &= ts > covered_from[late]
    parts: list[LateChecks] = []
    replayed = np.empty(0, np.intp)
    if within.any():
        part, replayed = _replay(registry, history, batch, late[within], open_pairs, permit_returned)
        parts.append(part)
    beyond = late[~within]
    if len(beyond):
        alone = np.zeros(len(batch), dtype=bool)
        alone[beyond] = True
        obs = evaluate_containment(
            registry, FixBatch(batch.fixes, batch.device, batch.subject, batch.cell, alone, batch.suspect),
            (np.empty(0, np.int32), np.empty(0, np.int32)), at_own_time=True,
        )
        parts.append(LateChecks.of(obs, np.ones(len(obs), bool), np.full(len(obs), NO_SPAN, np.int64)))
    history.add(FixRows.of(batch, np.sort(np.concatenate([fresh, replayed]))))
    obs = Observations.concat(list(parts))
    return LateChecks.of(
        obs, np.concatenate([p.late for p in parts]), np.concatenate([p.span_start for p in parts])
    )


def _replay(
    registry: Registry, history: FixHistory, batch: FixBatch, late: NDArray[np.intp],
    open_pairs: tuple[NDArray[np.int32], NDArray[np.int32]], permit_returned: NDArray[np.bool_],
) -> tuple[LateChecks, NDArray[np.intp]]:
    """Checks of every fix of the late fixes' devices since the oldest late one; the late rows kept."""
    devices, inverse = np.unique(batch.device[late], return_inverse=True)
    start = np.full(len(devices), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(start, inverse, batch.fixes.ts[late])
    kept = history.since(devices, start)
    at = np.minimum(np.searchsorted(devices, batch.device), len(devices) - 1)
    mine = np.flatnonzero((devices[at] == batch.device) & (batch.fixes.ts >= start[at]))
    rows = FixRows.concat([kept, FixRows.of(batch, mine)])
    origin = np.concatenate([np.full(len(kept.ts), -1, np.intp), mine])  # batch row, -1: kept before
    is_late = origin >= 0
    is_late[is_late] = ~batch.fresh[origin[is_late]]
    # One fix per (device, ts), the one seen first: a redelivered late fix is no news.
    order = np.lexsort((is_late, rows.ts, rows.device))
    rows, origin, is_late = rows.take(order), origin[order], is_late[order]
    first = np.flatnonzero(np.r_[True, (np.diff(rows.device) != 0) | (np.diff(rows.ts) != 0)])
    rows, origin, is_late = rows.take(first), origin[first], is_late[first]
    if not is_late.any():
        nothing = LateChecks.of(Observations.empty(), np.empty(0, bool), np.empty(0, np.int64))
        return nothing, np.empty(0, np.intp)
    obs = evaluate_containment(
        registry, rows.batch(registry.device_ids, registry.device_subject), open_pairs, permit_returned,
        at_own_time=True,
    )
    # Back from check rows to fix rows: rows are sorted and unique by (device, ts).
    t_min = int(rows.ts.min())
    span = int(rows.ts.max()) - t_min + 1
    keys = rows.device.astype(np.int64) * span + (rows.ts - t_min)
    fix = np.searchsorted(keys, obs.device.astype(np.int64) * span + (obs.ts - t_min))
    return LateChecks.of(obs, is_late[fix], start[np.searchsorted(devices, obs.device)]), origin[is_late]
