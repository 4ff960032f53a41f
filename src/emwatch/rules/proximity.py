"""Proximity: a subject near the victim they must stay away from, or two subjects forbidden to meet.

Victim protection: the victim's device is the centre of a moving exclusion circle. Within the
warning ring (the accuracy circles touching `victim_warning_m`) `victim_proximity` opens as a
*possible* alert; with the fix point inside `victim_violation_m` (and no cell-tower fix involved) it
is *confirmed* (the possible alert is upgraded in place). It clears only outside the warning ring.

Contact ban (禁止接触特定的人): both subjects within the ban's radius of each other for its
`min_seconds` → `subject_contact` for both of them.

Candidate pairs come from an H3 grid disk around each device that reported, over the coarse cells of
every watched device's latest position (never all pairs, and not every ban either: the cost follows
who moved and who is near). Positions older than `stale_s` say nothing: such a pair neither opens
nor clears anything (silence must not clear an alert about a victim).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from h3.api import basic_int as h3i
from numpy.typing import NDArray

from emwatch.geo.cells import haversine_m
from emwatch.model import FixBatch, Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import SUBJECT_CONTACT, VICTIM_PROXIMITY
from emwatch.rules.pair_state import NEVER, PairState, pair_code
from emwatch.rules.runs import expand_runs

RING_NAMES = ("clear", "warning", "violation")


@dataclass(frozen=True, slots=True)
class ProximityConfig:
    """Victim rings, the staleness limit and the neighbourhood index resolution."""

    victim_violation_m: float = 500.0
    victim_warning_m: float = 1000.0
    stale_s: float = 300.0
    h3_resolution: int = 7  # cells of ~1.4 km: a radius of a few hundred metres is a disk of k ≈ 5


def disk_k(radius_m: float, resolution: int) -> int:
    """Grid-disk size that holds every cell with a point within `radius_m` of a point in the centre.

    A straight line crosses about one cell per 1.5 edges; edges range 0.71-1.10 of the average
    (measured over the globe), so 0.65 is assumed, plus 2 cells for the ends. Sampled worst case:
    grid distance 2 for radius = 1 edge and 4 for 4 edges, where this gives 4 and 6.
    """
    edge = float(h3i.average_hexagon_edge_length(resolution, unit="m"))
    return math.ceil(radius_m / (1.5 * 0.65 * edge)) + 2


def candidate_pairs(state: PairState, moved: NDArray[np.int32], now_ms: int, radius_m: float,
                    stale_ms: int) -> NDArray[np.intp]:
    """Watched pairs with a reporting device and a fresh partner in its H3 neighbourhood."""
    members = np.flatnonzero(state.watched & state.fresh(np.arange(len(state.watched)), now_ms, stale_ms))
    moved = moved[state.fresh(moved, now_ms, stale_ms)]
    if len(members) < 2 or len(moved) == 0:
        return np.empty(0, dtype=np.intp)
    order = np.argsort(state.cell[members])
    cells, devices = state.cell[members][order], members[order]
    # One disk per distinct cell of the reporting devices; (cell, member) pairs, then the devices.
    k = disk_k(radius_m, state.cell_resolution)
    mover_cells, mover_cell_of = np.unique(state.cell[moved], return_inverse=True)
    disks = [grid_disk(c, k) for c in mover_cells.tolist()]
    disk_cells = np.concatenate(disks)
    disk_owner = np.repeat(np.arange(len(disks)), [len(d) for d in disks])
    lo = np.searchsorted(cells, disk_cells, side="left")
    hi = np.searchsorted(cells, disk_cells, side="right")
    at, where = expand_runs(lo.astype(np.int64), (hi - lo).astype(np.int64))
    near_cell, member = disk_owner[at], devices[where]
    by_cell = np.argsort(mover_cell_of, kind="stable")
    count = np.bincount(mover_cell_of, minlength=len(mover_cells)).astype(np.int64)
    start = np.cumsum(count) - count
    row, pos = expand_runs(start[near_cell], count[near_cell])
    a, b = moved[by_cell[pos]], member[row]
    return _pairs_of(state, pair_code(a, b, len(state.watched))[a != b])


@functools.lru_cache(maxsize=1 << 16)
def grid_disk(cell: int, k: int) -> NDArray[np.uint64]:
    """The cells within grid distance k of `cell` (cached: between fixes most people stay in their cell)."""
    return np.array(h3i.grid_disk(cell, k), dtype=np.uint64)


def evaluate_proximity(
    registry: Registry, state: PairState, batch: FixBatch, config: ProximityConfig
) -> Observations:
    """victim_proximity and subject_contact checks for the subjects whose watched pairs changed."""
    ok = batch.fresh & ~batch.suspect
    if len(state.pair_x) == 0 or not ok.any():
        return Observations.empty()
    moved = np.unique(batch.device[ok])
    moved = moved[state.watched[moved]].astype(np.int32)
    if len(moved) == 0:
        return Observations.empty()
    stale_ms = int(config.stale_s * 1000)
    acc = np.nan_to_num(state.acc[state.watched], nan=0.0)
    radius = max(config.victim_warning_m + 2 * float(acc.max(initial=0.0)),
                 float(registry.ban_radius_m.max(initial=0.0)))
    now = int(batch.fixes.ts[ok].max())
    remembered = _remembered(state, moved)
    pairs = np.union1d(candidate_pairs(state, moved, now, radius, stale_ms), remembered)
    if len(pairs) == 0:
        return Observations.empty()

    x, y = state.pair_x[pairs], state.pair_y[pairs]
    ts = np.maximum(state.pos_ts[x], state.pos_ts[y])
    fresh = state.fresh(x, ts, stale_ms) & state.fresh(y, ts, stale_ms)
    distance = haversine_m(state.lat[x], state.lon[x], state.lat[y], state.lon[y])
    victim = state.pair_is_victim[pairs]
    return Observations.concat([
        _victim_checks(registry, state, config, state.pair_slot[pairs][victim], ts[victim],
                       fresh[victim], distance[victim]),
        _contact_checks(registry, state, state.pair_slot[pairs][~victim], ts[~victim],
                        fresh[~victim], distance[~victim]),
    ])


def _pairs_of(state: PairState, codes: NDArray[np.int64]) -> NDArray[np.intp]:
    """Indices of the watched pairs among `codes` (other device pairs are nobody's business)."""
    sorted_codes = state.pair_code[state.pair_by_code]
    pos = np.clip(np.searchsorted(sorted_codes, codes), 0, max(len(sorted_codes) - 1, 0))
    hit = sorted_codes[pos] == codes if len(sorted_codes) else np.zeros(len(codes), dtype=bool)
    return np.unique(state.pair_by_code[pos[hit]])


def _remembered(state: PairState, moved: NDArray[np.int32]) -> NDArray[np.intp]:
    """Pairs of a reporting device that are near or breaching now: they must be re-checked to clear."""
    slot, victim = state.pair_slot, state.pair_is_victim
    active = np.zeros(len(slot), dtype=bool)
    active[victim] = state.victim_ring[slot[victim]] > 0
    active[~victim] = state.ban_near_since[slot[~victim]] != NEVER
    involved = np.isin(state.pair_x, moved) | np.isin(state.pair_y, moved)
    return np.flatnonzero(active & involved)


def _victim_checks(
    registry: Registry, state: PairState, config: ProximityConfig, v: NDArray[np.intp],
    ts: NDArray[np.int64], fresh: NDArray[np.bool_], distance: NDArray[np.float64],
) -> Observations:
    x, y = state.bracelet_of[state.victim_subject[v]], state.victim_device[v]
    trusted = ~state.lbs[x] & ~state.lbs[y]
    touches = distance - state.acc[x] - state.acc[y] <= config.victim_warning_m
    ring = np.where(trusted & (distance <= config.victim_violation_m), 2, np.where(touches, 1, 0))
    state.victim_ring[v[fresh]] = ring[fresh]
    state.victim_distance[v[fresh]] = distance[fresh]
    # A subject with several victims: the nearest ring over all of them, stale ones remembered.
    ring_of = np.zeros(len(registry.subject_ids), dtype=np.int8)
    np.maximum.at(ring_of, state.victim_subject, state.victim_ring)
    subject, newest = _per_subject(state.victim_subject[v[fresh]], ts[fresh], len(registry.subject_ids))
    detail: dict[int, dict[str, Any]] = {}
    for i in np.flatnonzero(ring_of[subject] > 0).tolist():  # evidence only for rows in breach
        mine = np.flatnonzero((state.victim_subject == subject[i]) & (state.victim_ring > 0))
        if len(mine):
            j = mine[np.argmin(state.victim_distance[mine])]
            detail[i] = {
                "victim_device_id": registry.device_ids[int(state.victim_device[j])],
                "distance_m": round(float(state.victim_distance[j]), 1),
                "ring": RING_NAMES[int(state.victim_ring[j])],
            }
    ring = ring_of[subject]
    return _rows(state, VICTIM_PROXIMITY, subject, newest, ring > 0, ring == 2, detail)


def _contact_checks(
    registry: Registry, state: PairState, c: NDArray[np.intp], ts: NDArray[np.int64],
    fresh: NDArray[np.bool_], distance: NDArray[np.float64],
) -> Observations:
    x, y = state.bracelet_of[registry.ban_a[c]], state.bracelet_of[registry.ban_b[c]]
    # A cell-tower fix cannot place two people within a few hundred metres of each other.
    trusted = fresh & ~state.lbs[x] & ~state.lbs[y]
    since = state.ban_near_since[c]
    near = trusted & (distance <= registry.ban_radius_m[c])
    since = np.where(near, np.where(since == NEVER, ts, since), NEVER)
    breaching = near & (ts - np.where(near, since, 0) >= registry.ban_min_ms[c])
    # No fresh evidence: a breach stands (silence clears nothing), a meeting in progress is forgotten.
    keep = ~trusted & state.ban_breaching[c]
    state.ban_near_since[c] = np.where(keep, state.ban_near_since[c], since)
    state.ban_breaching[c] = np.where(trusted, breaching, state.ban_breaching[c])
    state.ban_distance[c[trusted]] = distance[trusted]

    n_subj = len(registry.subject_ids)
    breach_of = np.zeros(n_subj, dtype=bool)
    np.logical_or.at(breach_of, registry.ban_a, state.ban_breaching)
    np.logical_or.at(breach_of, registry.ban_b, state.ban_breaching)
    subject, newest = _per_subject(
        np.concatenate([registry.ban_a[c[trusted]], registry.ban_b[c[trusted]]]),
        np.concatenate([ts[trusted], ts[trusted]]), n_subj,
    )
    detail: dict[int, dict[str, Any]] = {}
    for i in np.flatnonzero(breach_of[subject]).tolist():
        s = int(subject[i])
        mine = np.flatnonzero(((registry.ban_a == s) | (registry.ban_b == s)) & state.ban_breaching)
        if len(mine):
            j = mine[np.argmin(state.ban_distance[mine])]
            other = int(registry.ban_b[j] if registry.ban_a[j] == s else registry.ban_a[j])
            detail[i] = {
                "other_subject_id": registry.subject_ids[other],
                "distance_m": round(float(state.ban_distance[j]), 1),
                "together_s": int((newest[i] - state.ban_near_since[j]) // 1000),
            }
    breach = breach_of[subject]
    return _rows(state, SUBJECT_CONTACT, subject, newest, breach, np.ones(len(subject), dtype=bool), detail)


def _per_subject(
    subject: NDArray[np.int32], ts: NDArray[np.int64], n_subjects: int
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Distinct subjects with the newest ts each."""
    newest = np.full(n_subjects, NEVER, dtype=np.int64)
    np.maximum.at(newest, subject, ts)
    unique = np.unique(subject).astype(np.int32)
    return unique, newest[unique]


def _rows(
    state: PairState, rule: int, subject: NDArray[np.int32], ts: NDArray[np.int64],
    breach: NDArray[np.bool_], confirmed: NDArray[np.bool_], detail: dict[int, dict[str, Any]],
) -> Observations:
    n = len(subject)
    device = state.bracelet_of[subject]
    return Observations(
        subject=subject, rule=np.full(n, rule, np.int16), zone=np.full(n, -1, np.int32),
        device=device.astype(np.int32), ts=ts.astype(np.int64), lat=state.lat[device],
        lon=state.lon[device], breach=np.asarray(breach, dtype=bool),
        confirmed=np.asarray(confirmed, dtype=bool),
        detail={i: d for i, d in detail.items() if breach[i]} or None,
    )
