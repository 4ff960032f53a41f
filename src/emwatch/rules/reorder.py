"""Late fixes inside the reorder horizon: each device's recent fixes are kept, so that a late fix can be
replayed in event-time order together with every fix of its device since (see docs/rules.md).

Every batch adds one packed chunk (rules/fix_history.py); only batches with late fixes search it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from emwatch.model import FixBatch, Observations
from emwatch.registry import Registry
from emwatch.rules.containment import evaluate_containment
from emwatch.rules.fix_history import FixHistory, FixRows

NO_SPAN = np.iinfo(np.int64).min  # a late row judged on its own (beyond the horizon)


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
