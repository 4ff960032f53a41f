"""人机分离: is the bracelet still on the person who carries the paired phone?

No single signal proves it, so weighted evidence is summed into a score per subject and
`device_separation` is in breach when the score reaches the threshold:

- distance: bracelet and phone further apart than max(acc) + `distance_m`         (0.6)
- companion_lost: the BLE link between them is down (bracelet or phone says so)      (0.5)
- diverging: one device has been still for `diverge_s` while the other moved away   (0.4)
- motionless: the bracelet has not moved at all for `motionless_s` (left on a table) (0.3)

With the default threshold 0.6 distance alone is enough (the phone walked away from the bracelet),
while the weak, ambiguous signals (a flaky BLE link; a person asleep) need a second one. Checks run
when either paired device reports; a subject needs both a bracelet and a phone to be checked.

The two devices report at their own times, so their latest fixes are rarely simultaneous. Either may
have travelled `speed_mps` x (the gap between the fixes) since the older one: "apart" is decided only
when the distance exceeds the threshold even after that allowance, "together" only when the fixes
are within `sync_s` of each other and close; otherwise the previous decision stands (until stale,
unless one of the two has fallen silent since: a phone that went dark while away stays "apart").
An "apart" counts as a check once per pair of fixes (`_counted`): one stray fix is one check.

Checks also run on the clock tick (`separation_tick`), so silence cannot hide a separation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emwatch.geo.cells import haversine_m
from emwatch.ingest.protocol import DeviceEvent
from emwatch.model import FixBatch, Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import DEVICE_SEPARATION
from emwatch.rules.pair_state import NEVER, PairState

EVIDENCE = ("distance", "companion_lost", "diverging", "motionless")


@dataclass(frozen=True, slots=True)
class SeparationConfig:
    """Thresholds and evidence weights (in EVIDENCE order) of the separation score."""

    distance_m: float = 150.0  # beyond both fixes' error: a phone in another building, not a pocket
    move_m: float = 100.0  # a device "moved" when it left its resting place by this much (or its acc)
    diverge_s: float = 600.0
    motionless_s: float = 4 * 3600.0
    stale_s: float = 600.0  # older positions say nothing about distance or stillness now
    speed_mps: float = 33.0  # how fast either device may have gone since the older fix (expressway)
    sync_s: float = 60.0  # fixes this close in time can show the two devices together
    jitter_s: float = 15.0  # a report this late is not yet missed (clock skew, delivery)
    weights: tuple[float, float, float, float] = (0.6, 0.5, 0.4, 0.3)
    threshold: float = 0.6


def evaluate_separation(
    registry: Registry, state: PairState, batch: FixBatch, events: list[tuple[str, DeviceEvent, bytes]],
    config: SeparationConfig, last_seen: NDArray[np.int64] | None = None,
) -> Observations:
    """One check per paired subject whose bracelet or phone reported in this batch (after state.observe).

    `last_seen`: per device, the newest fix *or event* (heartbeats included); without it only fixes count.
    """
    if not state.any_paired:
        return Observations.empty()
    subject, ts = _touched(registry, state, batch, events)
    if len(subject) == 0:  # no paired subject reported: skip the score's few dozen array operations
        return Observations.empty()
    return _score(registry, state, subject, ts, config, last_seen)


def separation_tick(
    registry: Registry, state: PairState, now_ms: int, config: SeparationConfig,
    last_seen: NDArray[np.int64] | None = None,
) -> Observations:
    """The same score at `now_ms` for every paired subject ever located, from the clock.

    Catches what no report would: a phone that went silent while away from the bracelet (the last
    "apart" stands), and a bracelet resting for hours that only sends heartbeats (no fixes).
    A tick is a check only where it brings new evidence: no check counted for the subject in the last
    `sync_s` (the report interval), so the silence itself is news. Sooner, it would re-count the
    verdict of the fixes just judged (one stray fix plus a tick would meet the debounce of two).
    """
    subject = np.flatnonzero((state.bracelet_of >= 0) & (state.phone_of >= 0)).astype(np.int32)
    b, p = state.bracelet_of[subject], state.phone_of[subject]
    located = (state.pos_ts[b] != NEVER) | (state.pos_ts[p] != NEVER)
    # Compared as "older than now - sync": a never-checked subject (int64 min) cannot overflow.
    silent = state.checked_ts[subject] <= now_ms - int(config.sync_s * 1000)
    subject = subject[located & silent]
    return _score(registry, state, subject, np.full(len(subject), now_ms, np.int64), config, last_seen)


def _score(
    registry: Registry, state: PairState, subject: NDArray[np.int32], ts: NDArray[np.int64],
    config: SeparationConfig, last_seen: NDArray[np.int64] | None,
) -> Observations:
    """The separation check of each subject at its `ts`."""
    b, p = state.bracelet_of[subject], state.phone_of[subject]
    paired = (b >= 0) & (p >= 0)
    subject, ts, b, p = subject[paired], ts[paired], b[paired], p[paired]
    stale_ms = int(config.stale_s * 1000)
    fresh_b, fresh_p = state.fresh(b, ts, stale_ms), state.fresh(p, ts, stale_ms)

    far = _apart(state, subject, b, p, ts, fresh_b, fresh_p, config)
    # A bracelet that rests sends heartbeats rather than fixes: alive and unmoved is still "still".
    alive_b = fresh_b if last_seen is None else fresh_b | (last_seen[b] >= ts - stale_ms)
    still_b = _still_ms(state, b, ts) * alive_b
    window = int(config.diverge_s * 1000)
    apart = _moving_away(state, p, b, ts, window) | _moving_away(state, b, p, ts, window)
    diverging = fresh_b & fresh_p & apart
    motionless = still_b >= int(config.motionless_s * 1000)
    flags = np.stack([far, state.companion_lost[subject], diverging, motionless], axis=1)
    score = flags @ np.asarray(config.weights)
    breach = score >= config.threshold - 1e-9
    counted = _counted(state, subject, b, p, ts, flags, score, breach, config, last_seen)
    if not counted.all():
        subject, ts, b, p, flags = subject[counted], ts[counted], b[counted], p[counted], flags[counted]
        score, breach, still_b = score[counted], breach[counted], still_b[counted]
    state.checked_ts[subject] = np.maximum(state.checked_ts[subject], ts)

    detail: dict[int, dict[str, Any]] = {}
    for i in np.flatnonzero(breach).tolist():
        detail[i] = {
            "score": round(float(score[i]), 3),
            "evidence": [name for name, on in zip(EVIDENCE, flags[i].tolist(), strict=True) if on],
            "phone_id": registry.device_ids[int(p[i])],
            "distance_m": round(float(d), 1) if (d := state.apart_m[subject[i]]) == d else None,
            "bracelet_still_s": int(still_b[i] // 1000),
        }
    n = len(subject)
    return Observations(
        subject=subject.astype(np.int32), rule=np.full(n, DEVICE_SEPARATION, np.int16),
        zone=np.full(n, -1, np.int32), device=b.astype(np.int32), ts=ts.astype(np.int64),
        lat=state.lat[b], lon=state.lon[b], breach=breach, confirmed=np.ones(n, dtype=bool),
        detail=detail or None,
    )


def _apart(
    state: PairState, subject: NDArray[np.int32], b: NDArray[np.int32], p: NDArray[np.int32],
    ts: NDArray[np.int64], fresh_b: NDArray[np.bool_], fresh_p: NDArray[np.bool_], config: SeparationConfig,
) -> NDArray[np.bool_]:
    """Decide "apart" or "together" where the two latest fixes allow it; the standing decision per subject.

    An "apart" goes stale after `stale_s` only while both devices keep reporting without a decision:
    a device that fell silent since has not been seen coming back, so the last word stands.
    """
    fresh = fresh_b & fresh_p
    distance = haversine_m(state.lat[b], state.lon[b], state.lat[p], state.lon[p])
    gap_ms = np.abs(state.pos_ts[b] - state.pos_ts[p]) * fresh
    limit = np.fmax(state.acc[b], state.acc[p]) + config.distance_m
    far = fresh & (distance - config.speed_mps * gap_ms / 1000 > limit)
    close = fresh & (distance <= limit) & (gap_ms <= config.sync_s * 1000)
    decided = far | close
    s = subject[decided]
    state.apart[s], state.apart_ts[s], state.apart_m[s] = far[decided], ts[decided], distance[decided]
    state.apart_fix_b[s], state.apart_fix_p[s] = state.pos_ts[b[decided]], state.pos_ts[p[decided]]
    current = (state.apart_ts[subject] >= ts - int(config.stale_s * 1000)) | ~fresh
    return np.asarray(state.apart[subject] & current)


def _counted(
    state: PairState, subject: NDArray[np.int32], b: NDArray[np.int32], p: NDArray[np.int32],
    ts: NDArray[np.int64], flags: NDArray[np.bool_], score: NDArray[np.float64], breach: NDArray[np.bool_],
    config: SeparationConfig, last_seen: NDArray[np.int64] | None,
) -> NDArray[np.bool_]:
    """Which checks count: all but a breach that rests on an "apart" of fixes already counted.

    The same fix judged again is no new evidence: one stray fix (multipath, a cell-tower fix off by
    more than its accuracy), compared with the other device's next fixes, would otherwise count twice
    and meet the debounce alone. An "apart" counts again once it compares a new fix of each device
    (a standing judgement compares the fixes that made it), or, at most once per `sync_s` +
    `jitter_s`, when a device without a new fix has sent nothing at all for that long: it missed its
    report, and as on the tick the silence is the news (a heartbeat says it is there without a fix;
    a report due with the other device's may come a little later). Other evidence that appeared
    since the last check (a BLE link lost) makes a check count as well; evidence that went is none.
    """
    far = flags[:, 0]
    others = np.packbits(flags[:, 1:], axis=1, bitorder="little")[:, 0]
    # The fixes the standing judgement compared, against those of the last one counted.
    new_b = state.apart_fix_b[subject] > state.counted_fix_b[subject]
    new_p = state.apart_fix_p[subject] > state.counted_fix_p[subject]
    heard = state.pos_ts if last_seen is None else last_seen
    quiet = ts - int((config.sync_s + config.jitter_s) * 1000)  # heard of last at or before: silent
    silent = (~new_b & (heard[b] <= quiet)) | (~new_p & (heard[p] <= quiet))
    new_apart = far & ((new_b & new_p) | (silent & (state.apart_counted_ts[subject] <= quiet)))
    alone = score - config.weights[0] >= config.threshold - 1e-9  # a breach even without the distance
    news = (others & ~state.evidence_bits[subject]) != 0  # evidence that was not there at the last check
    state.evidence_bits[subject] = others
    counted = ~(breach & far & ~new_apart & ~alone & ~news)
    s = subject[new_apart]
    state.counted_fix_b[s], state.counted_fix_p[s] = state.apart_fix_b[s], state.apart_fix_p[s]
    state.apart_counted_ts[s] = ts[new_apart]
    return np.asarray(counted)


def _touched(
    registry: Registry, state: PairState, batch: FixBatch, events: list[tuple[str, DeviceEvent, bytes]]
) -> tuple[NDArray[np.int32], NDArray[np.int64]]:
    """Paired subjects heard from in the batch (fresh fix or companion event), with the newest such ts."""
    rows = np.flatnonzero(batch.fresh & (batch.subject >= 0))
    companion = [
        (int(registry.device_subject[registry.device_index[d]]), e.ts)
        for d, e, _ in events if e.type in ("companion_lost", "companion_ok")
    ]
    subject = np.concatenate([batch.subject[rows], np.array([c[0] for c in companion], dtype=np.int32)])
    ts = np.concatenate([batch.fixes.ts[rows], np.array([c[1] for c in companion], dtype=np.int64)])
    keep = subject >= 0
    subject, ts = subject[keep], ts[keep]
    # Only a subject with both a bracelet and a phone is scored (`_score` drops the others).
    paired = (state.bracelet_of[subject] >= 0) & (state.phone_of[subject] >= 0)
    subject, ts = subject[paired], ts[paired]
    unique, inverse = np.unique(subject, return_inverse=True)
    newest = np.full(len(unique), NEVER, dtype=np.int64)
    np.maximum.at(newest, inverse, ts)
    return unique.astype(np.int32), newest


def _still_ms(state: PairState, device: NDArray[np.int32], ts: NDArray[np.int64]) -> NDArray[np.int64]:
    """How long each device has rested at its anchor (0 when it never settled)."""
    since = state.still_since[device]
    return np.where(since == NEVER, 0, ts - np.where(since == NEVER, 0, since))


def _moving_away(
    state: PairState, mover: NDArray[np.int32], rester: NDArray[np.int32], ts: NDArray[np.int64], window: int
) -> NDArray[np.bool_]:
    """Whether `mover` has kept moving for `window` ms, all of it while `rester` stayed put.

    A run that only just began is not enough: when a person stands up, one device often reports
    the move a fix earlier than the other.
    """
    since, moved = state.moving_since[mover], state.moved_at[mover]
    rest = state.still_since[rester]
    return np.asarray(
        (since != NEVER) & (rest != NEVER) & (since >= rest) & (since <= ts - window) & (moved >= ts - window)
    )
