"""State the two-device rules share: each device's latest position and stillness, BLE companion links,
and the memory of every watched pair (victim ↔ subject, banned subject ↔ subject).

Struct of arrays: per device, per subject, per victim device and per contact ban, all indexed by the
registry's dense numbers and carried across registry reloads by id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import cells_for, haversine_m
from emwatch.ingest.protocol import DeviceEvent
from emwatch.model import FixBatch
from emwatch.registry import Registry
from emwatch.rules.accuracy import SRC_LBS

NEVER = np.iinfo(np.int64).min
NO_CELL = np.uint64(0)


def first_device_of(registry: Registry, mask: NDArray[np.bool_]) -> NDArray[np.int32]:
    """Per subject: its first device matching `mask` (-1: none)."""
    out = np.full(len(registry.subject_ids), -1, dtype=np.int32)
    device = np.flatnonzero(mask & (registry.device_subject >= 0))[::-1]  # reversed: the first one wins
    out[registry.device_subject[device]] = device
    return out


class PairState:
    """Latest positions and pair memory for the separation and proximity rules."""

    def __init__(self, registry: Registry, move_m: float, run_gap_ms: int, cell_resolution: int) -> None:
        n_dev, n_subj = len(registry.device_ids), len(registry.subject_ids)
        self.registry, self.move_m, self.cell_resolution = registry, move_m, cell_resolution
        self.run_gap_ms = run_gap_ms  # moves further apart than this start a new run of movement
        assigned = registry.device_subject >= 0
        self.bracelet_of = first_device_of(registry, registry.device_wearable)
        self.phone_of = first_device_of(registry, ~registry.device_wearable & assigned)
        self.any_paired = bool(((self.bracelet_of >= 0) & (self.phone_of >= 0)).any())  # separation has work
        self.victim_device = np.flatnonzero(registry.device_protects >= 0).astype(np.int32)
        self.victim_subject = registry.device_protects[self.victim_device]
        self._index_pairs(registry)
        # Latest trusted fresh position per device, and where it last settled (its "anchor").
        self.lat, self.lon = np.full(n_dev, np.nan), np.full(n_dev, np.nan)
        self.acc = np.full(n_dev, np.nan)
        self.lbs = np.zeros(n_dev, dtype=bool)
        self.pos_ts = np.full(n_dev, NEVER, dtype=np.int64)
        self.cell = np.full(n_dev, NO_CELL, dtype=np.uint64)
        self.anchor_lat, self.anchor_lon = np.full(n_dev, np.nan), np.full(n_dev, np.nan)
        self.anchor_acc = np.full(n_dev, np.nan)
        self.still_since = np.full(n_dev, NEVER, dtype=np.int64)  # first fix at the current anchor
        self.moved_at = np.full(n_dev, NEVER, dtype=np.int64)  # last time it left an anchor
        self.moving_since = np.full(n_dev, NEVER, dtype=np.int64)  # first move of the current run
        # BLE link between bracelet and phone, per subject (the newest event wins).
        self.companion_lost = np.zeros(n_subj, dtype=bool)
        self.companion_ts = np.full(n_subj, NEVER, dtype=np.int64)
        # The last decisive bracelet-phone distance judgement per subject (fixes rarely coincide).
        self.apart = np.zeros(n_subj, dtype=bool)
        self.apart_ts = np.full(n_subj, NEVER, dtype=np.int64)
        self.apart_m = np.full(n_subj, np.nan)
        self.checked_ts = np.full(n_subj, NEVER, dtype=np.int64)  # newest separation check counted
        # The fixes (bracelet, phone ts) that judgement compared; those of the last "apart" counted as a
        # check, and when it counted; the other evidence at the last check (bit i: EVIDENCE[i + 1]).
        self.apart_fix_b = np.full(n_subj, NEVER, dtype=np.int64)
        self.apart_fix_p = np.full(n_subj, NEVER, dtype=np.int64)
        self.counted_fix_b = np.full(n_subj, NEVER, dtype=np.int64)
        self.counted_fix_p = np.full(n_subj, NEVER, dtype=np.int64)
        self.apart_counted_ts = np.full(n_subj, NEVER, dtype=np.int64)
        self.evidence_bits = np.zeros(n_subj, dtype=np.uint8)
        # Pair memory: ring per victim device (0 clear, 1 warning, 2 violation), near-since per ban.
        self.victim_ring = np.zeros(len(self.victim_device), dtype=np.int8)
        self.victim_distance = np.full(len(self.victim_device), np.nan)
        self.ban_near_since = np.full(len(registry.ban_a), NEVER, dtype=np.int64)
        self.ban_breaching = np.zeros(len(registry.ban_a), dtype=bool)
        self.ban_distance = np.full(len(registry.ban_a), np.nan)

    def _index_pairs(self, registry: Registry) -> None:
        """Watched device pairs: (bracelet, victim device) first, then (bracelet, bracelet) per ban."""
        victim_x = self.bracelet_of[self.victim_subject]
        ban_x, ban_y = self.bracelet_of[registry.ban_a], self.bracelet_of[registry.ban_b]
        x = np.concatenate([victim_x, ban_x]).astype(np.int32)
        y = np.concatenate([self.victim_device, ban_y]).astype(np.int32)
        slot = np.concatenate([np.arange(len(victim_x)), np.arange(len(ban_x))])
        is_victim = np.arange(len(x)) < len(victim_x)
        ok = (x >= 0) & (y >= 0)  # a subject without a bracelet cannot be watched
        self.pair_x, self.pair_y, self.pair_slot, self.pair_is_victim = x[ok], y[ok], slot[ok], is_victim[ok]
        self.pair_code = pair_code(self.pair_x, self.pair_y, len(registry.device_ids))
        self.pair_by_code = np.argsort(self.pair_code, kind="stable")
        self.watched = np.zeros(len(registry.device_ids), dtype=bool)
        self.watched[self.pair_x], self.watched[self.pair_y] = True, True

    _DEVICE = ("lat", "lon", "acc", "lbs", "pos_ts", "cell", "anchor_lat", "anchor_lon", "anchor_acc",
               "still_since", "moved_at", "moving_since")

    def remapped(self, registry: Registry) -> PairState:
        """The same state for a new registry snapshot (new devices, subjects and pairs start empty)."""
        old = self.registry
        out = PairState(registry, self.move_m, self.run_gap_ms, self.cell_resolution)
        _carry(out, self, self._DEVICE, old.device_ids, registry.device_ids)
        subject = ("companion_lost", "companion_ts", "apart", "apart_ts", "apart_m", "checked_ts",
                   "apart_fix_b", "apart_fix_p", "counted_fix_b", "counted_fix_p", "apart_counted_ts",
                   "evidence_bits")
        _carry(out, self, subject, old.subject_ids, registry.subject_ids)
        old_victims = [old.device_ids[d] for d in self.victim_device]
        new_victims = [registry.device_ids[d] for d in out.victim_device]
        _carry(out, self, ("victim_ring", "victim_distance"), old_victims, new_victims)
        bans = ("ban_near_since", "ban_breaching", "ban_distance")
        _carry(out, self, bans, _ban_keys(old), _ban_keys(registry))
        return out

    def observe(
        self, batch: FixBatch, radius_m: NDArray[np.float64], events: list[tuple[str, DeviceEvent, bytes]]
    ) -> None:
        """Take in a batch: each device's newest trusted fix, and its BLE companion events."""
        ok = np.flatnonzero(batch.fresh & ~batch.suspect)
        if len(ok):
            # Rows are sorted by (device, ts): the last trusted row of each device is its newest.
            last = ok[np.r_[batch.device[ok][1:] != batch.device[ok][:-1], True]]
            self._move(batch, last, radius_m[last])
        for device_id, event, _ in events:
            if event.type not in ("companion_lost", "companion_ok"):
                continue
            subject = int(self.registry.device_subject[self.registry.device_index[device_id]])
            if subject >= 0 and event.ts >= self.companion_ts[subject]:
                self.companion_lost[subject] = event.type == "companion_lost"
                self.companion_ts[subject] = event.ts

    def _move(self, batch: FixBatch, rows: NDArray[np.intp], acc: NDArray[np.float64]) -> None:
        f, d = batch.fixes, batch.device[rows]
        lat, lon, ts = f.lat[rows], f.lon[rows], f.ts[rows]
        self.lat[d], self.lon[d], self.acc[d], self.pos_ts[d] = lat, lon, acc, ts
        self.lbs[d] = f.src[rows] == SRC_LBS
        watched = self.watched[d]  # only proximity looks at cells: spare the others an H3 lookup
        if watched.any():
            self.cell[d[watched]] = cells_for(lat[watched], lon[watched], self.cell_resolution)
        # A device "moved" when it left its anchor by more than both fixes' error could explain.
        shift = haversine_m(lat, lon, self.anchor_lat[d], self.anchor_lon[d])
        first = np.isnan(self.anchor_lat[d])
        moved = ~first & (shift > np.maximum(self.move_m, acc + self.anchor_acc[d]))
        settle = first | moved
        s = d[settle]
        self.anchor_lat[s], self.anchor_lon[s], self.anchor_acc[s] = lat[settle], lon[settle], acc[settle]
        self.still_since[s] = ts[settle]
        m, t = d[moved], ts[moved]
        last = self.moved_at[m]
        new_run = (last == NEVER) | (t - np.where(last == NEVER, 0, last) > self.run_gap_ms)
        self.moving_since[m] = np.where(new_run, t, self.moving_since[m])
        self.moved_at[m] = t

    def fresh(
        self, device: NDArray[np.integer[Any]], now_ms: NDArray[np.int64] | int, stale_ms: int
    ) -> NDArray[np.bool_]:
        """Whether each device has a position no older than `stale_ms` at `now_ms`."""
        pos = self.pos_ts[device]
        return np.asarray((device >= 0) & (pos != NEVER) & (pos >= np.asarray(now_ms) - stale_ms))


def pair_code(a: NDArray[np.integer[Any]], b: NDArray[np.integer[Any]], n_devices: int) -> NDArray[np.int64]:
    """One int64 per unordered device pair."""
    lo, hi = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    return np.asarray(lo * n_devices + hi)


def _ban_keys(registry: Registry) -> list[str]:
    s = registry.subject_ids
    pairs = zip(registry.ban_a.tolist(), registry.ban_b.tolist(), strict=True)
    return [f"{s[a]}\x00{s[b]}" for a, b in pairs]


def _carry(
    out: PairState, old: PairState, names: tuple[str, ...], old_ids: list[str], new_ids: list[str]
) -> None:
    """Copy rows of the named arrays from `old` to `out`, matched by id."""
    where = {k: i for i, k in enumerate(old_ids)}
    pairs = [(n, o) for n, k in enumerate(new_ids) if (o := where.get(k)) is not None]
    if not pairs:
        return
    to = np.array([p[0] for p in pairs], dtype=np.intp)
    source = np.array([p[1] for p in pairs], dtype=np.intp)
    for name in names:
        getattr(out, name)[to] = getattr(old, name)[source]
