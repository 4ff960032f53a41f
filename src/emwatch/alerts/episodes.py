"""Alert episodes: a breach opens one alert, further breaching checks add nothing, compliance clears it.

Debounce: an episode opens after K consecutive breaching checks or T seconds in breach, and clears
after its own (larger) K/T of compliance, so GPS jitter at a boundary does not flap. A *possible*
breach (the accuracy circle straddles the zone) opens a possible alert that an accurate fix later
upgrades in place (`confirmed` event) rather than duplicating.

Late fixes: within the reorder horizon each key's recent history is kept (alerts/timeline.py), and a
late fix re-derives the key in event-time order from just before it (see `late_episodes`).
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.severity import severity_of
from emwatch.alerts.timeline import IMMEDIATE as IMMEDIATE
from emwatch.alerts.timeline import Debounce as Debounce
from emwatch.alerts.timeline import Episode, Revision, State, Timeline, derive, reconcile, transition
from emwatch.model import AlertEvent, AlertEventType, Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import RULE_CODE, RULES, ZONE_APPROACH, ZONE_ENTRY, ZONE_EXIT, ZONE_RULES
from emwatch.rules.reorder import NO_SPAN, LateChecks, take_rows

DEFAULT_HORIZON_MS = 300_000
# Rules whose checks come from fixes alone, so a replay of a device's fixes reproduces all of them
# (curfews also run on the clock, permits on their own timers: their late fixes stay closed pairs).
REPLAYED_RULES = np.array(sorted((ZONE_EXIT, ZONE_ENTRY, ZONE_APPROACH)), dtype=np.int16)
_REPLAYED = frozenset(RULES[r] for r in REPLAYED_RULES.tolist())
_ZONE_RULES = frozenset(RULES[r] for r in ZONE_RULES)


@dataclass(frozen=True, slots=True)
class EpisodeKey:
    """Identity of an episode that survives registry reloads and restarts ('' when no zone)."""

    subject_id: str
    rule: str
    zone_id: str


def is_member(sorted_codes: NDArray[np.int64], values: NDArray[np.int64]) -> NDArray[np.bool_]:
    """Membership by binary search in a sorted array: no hashing of the (large) sorted side."""
    if len(sorted_codes) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_codes, values), len(sorted_codes) - 1)
    return np.asarray(sorted_codes[at] == values)


class EpisodeBook:
    """Open episodes (with their confidence) and partial evidence towards opening or clearing one."""

    def __init__(
        self, registry: Registry, open_keys: Iterable[EpisodeKey] = (),
        policies: Mapping[str, Debounce] | None = None, horizon_ms: int = DEFAULT_HORIZON_MS,
    ) -> None:
        self._open: dict[EpisodeKey, str] = {k: "confirmed" for k in open_keys}
        self._pending: dict[EpisodeKey, tuple[int, int]] = {}  # (consecutive checks, since ts)
        self._policies = dict(policies or {})
        self.horizon_ms = horizon_ms  # the reorder horizon: how far back a late fix is re-derived
        self._timelines: dict[EpisodeKey, Timeline] = {}
        self._timeline_new: list[EpisodeKey] = []  # not yet in the sorted `_timeline_codes`
        # Closed within the horizon: still watched, so a replay sees every fix that could reopen them.
        self._recent: dict[EpisodeKey, int] = {}
        self._recent_order: deque[tuple[int, EpisodeKey]] = deque()
        self._newest_ts = 0
        self.revisions: deque[tuple[EpisodeKey, Revision]] = deque(maxlen=10_000)
        self.rebind(registry)

    @property
    def open_keys(self) -> frozenset[EpisodeKey]:
        return frozenset(self._open)

    def episodes(self) -> list[tuple[EpisodeKey, Episode]]:
        """Every episode still within the horizon, with event-time start/end (the late-fix ledger)."""
        return [(k, e) for k, t in self._timelines.items() for e in t.episodes]

    def take_revisions(self) -> list[tuple[EpisodeKey, Revision]]:
        """Episode bounds late fixes changed since the last call (for a store that can revise them)."""
        out = list(self.revisions)
        self.revisions.clear()
        return out

    def rebind(self, registry: Registry) -> None:
        """Recompute dense views after a registry change."""
        self.registry = registry
        self._subject_index = {s: i for i, s in enumerate(registry.subject_ids)}
        self._n_zones = len(registry.zones.zones) + 1
        self._refresh()

    def _code_of(self, key: EpisodeKey) -> int | None:
        subject = self._subject_index.get(key.subject_id)
        zone = self.registry.zones.index_of.get(key.zone_id, -1) if key.zone_id else -1
        rule = RULE_CODE.get(key.rule)
        if subject is None or rule is None or (key.zone_id and zone < 0):
            return None
        return (subject * len(RULES) + rule) * self._n_zones + zone + 1

    def _codes(self, keys: Iterable[EpisodeKey]) -> NDArray[np.int64]:
        return np.array(sorted(c for k in keys if (c := self._code_of(k)) is not None), dtype=np.int64)

    def _refresh(self) -> None:
        """Rebuild the sorted code views from scratch (after a registry change)."""
        self._open_codes = self._codes(self._open)
        self._pending_codes = self._codes(self._pending)
        self._pair_codes = self._codes(set(self._open) | set(self._pending) | set(self._recent))
        self._possible_codes = self._codes(k for k, c in self._open.items() if c == "possible")
        self._timeline_codes = self._codes(self._timelines)
        self._timeline_new.clear()
        self._derive_zone_pairs()

    def _sync(self, touched: Iterable[EpisodeKey]) -> None:
        """Update the sorted code views for the keys one batch touched: O(changes), not O(open)."""
        states = [(c, k) for k in touched if (c := self._code_of(k)) is not None]
        if not states:
            return
        codes = np.array([c for c, _ in states], dtype=np.int64)

        def place(current: NDArray[np.int64], member: list[bool]) -> NDArray[np.int64]:
            keep = np.asarray(member, dtype=bool)
            drop = np.sort(codes[~keep])
            current = current[~is_member(drop, current)] if len(drop) else current
            add = np.unique(codes[keep])
            add = add[~is_member(current, add)]
            return np.insert(current, np.searchsorted(current, add), add) if len(add) else current

        self._open_codes = place(self._open_codes, [k in self._open for _, k in states])
        self._pending_codes = place(self._pending_codes, [k in self._pending for _, k in states])
        watched = [k in self._open or k in self._pending or k in self._recent for _, k in states]
        self._pair_codes = place(self._pair_codes, watched)
        possible = [self._open.get(k) == "possible" for _, k in states]
        self._possible_codes = place(self._possible_codes, possible)
        self._derive_zone_pairs()

    def _derive_zone_pairs(self) -> None:
        # Codes sort by subject first (the most significant part), so the pairs come out sorted by subject.
        # Pending and recently closed keys too: a fix far from a shared zone must still be checked
        # against it, or evidence towards a change (and a replay of late fixes) would miss it.
        codes = self._pair_codes
        zone = codes % self._n_zones - 1
        rule = (codes // self._n_zones) % len(RULES)
        keep = np.isin(rule, list(ZONE_RULES)) & (zone >= 0)
        self.open_subject = (codes[keep] // self._n_zones // len(RULES)).astype(np.int32)
        self.open_zone = zone[keep].astype(np.int32)

    def open_pairs(self) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """(subject, zone) of every open, pending or recently closed zone episode, sorted by subject."""
        return self.open_subject, self.open_zone

    def update(self, obs: Observations) -> list[AlertEvent]:
        """Turn checks into episode transitions, in event-time order within each episode."""
        if len(obs) == 0:
            return []
        code = (obs.subject.astype(np.int64) * len(RULES) + obs.rule) * self._n_zones + obs.zone + 1
        is_open = is_member(self._open_codes, code)
        # Most rows confirm the state we already have; only keys with news go to the scalar loop.
        news = (obs.breach != is_open) | is_member(self._pending_codes, code)
        news |= is_open & obs.breach & obs.confirmed & is_member(self._possible_codes, code)
        if not news.any():
            return []
        rows = np.flatnonzero(is_member(np.unique(code[news]), code))
        rows = rows[np.lexsort((obs.ts[rows], code[rows]))]
        touched: set[EpisodeKey] = set()
        events = [ev for i in rows.tolist() if (ev := self._step(obs, i, touched)) is not None]
        self._newest_ts = max(self._newest_ts, int(obs.ts[rows].max()))
        self._forget_recent(touched)
        self._sync(touched)
        events.sort(key=lambda e: e.ts)  # stable: one episode's own order is kept
        return events

    def late_episodes(self, obs: Observations) -> list[AlertEvent]:
        """Checks of late fixes. Within the reorder horizon (`LateChecks` rows with a span) a zone key
        is re-derived in event time from just before its device's oldest late fix and reconciled
        (alerts/timeline.py); beyond it, or for timer-driven rules, each key with a breach becomes
        one closed `late` pair unless that episode is open now. The current state never flips back."""
        if not isinstance(obs, LateChecks):
            return self._late_pairs(obs)
        replayed = (obs.span_start != NO_SPAN) & np.isin(obs.rule, REPLAYED_RULES)
        events = self._late_pairs(take_rows(obs, np.flatnonzero(obs.late & ~replayed)))
        rows = np.flatnonzero(replayed)
        if len(rows) == 0:
            return events
        codes = self._row_codes(obs)
        # A key never in breach, with no history and nothing open or pending, cannot change: skip it.
        if self._timeline_new:
            self._timeline_codes = np.union1d(self._timeline_codes, self._codes(self._timeline_new))
            self._timeline_new.clear()
        c = codes[rows]
        busy = is_member(np.unique(c[obs.breach[rows]]), c) | is_member(self._pair_codes, c)
        rows = rows[busy | is_member(self._timeline_codes, c)]
        if len(rows) == 0:
            return events
        rows = rows[np.lexsort((obs.ts[rows], codes[rows]))]
        code = codes[rows]
        touched: set[EpisodeKey] = set()
        for group in np.split(rows, np.flatnonzero(np.diff(code)) + 1):
            events += self._replay(obs, group, touched)
        self._sync(touched)
        events.sort(key=lambda e: e.ts)
        return events

    def _forget_recent(self, touched: set[EpisodeKey]) -> None:
        """Stop watching keys closed longer ago than the horizon (they join `touched` for the views)."""
        cutoff = self._newest_ts - self.horizon_ms
        order = self._recent_order
        while order and order[0][0] < cutoff:
            ts, key = order.popleft()
            if self._recent.get(key) == ts:
                del self._recent[key]
                touched.add(key)

    def _row_codes(self, obs: Observations) -> NDArray[np.int64]:
        return (obs.subject.astype(np.int64) * len(RULES) + obs.rule) * self._n_zones + obs.zone + 1

    def _key(self, obs: Observations, i: int) -> EpisodeKey:
        zone = int(obs.zone[i])
        zone_id = self.registry.zones.zones[zone].id if zone >= 0 else ""
        return EpisodeKey(self.registry.subject_ids[int(obs.subject[i])], RULES[int(obs.rule[i])], zone_id)

    def _state(self, key: EpisodeKey) -> State:
        count, since = self._pending.get(key, (0, 0))
        return self._open.get(key), count, since

    def _set_state(self, key: EpisodeKey, state: State, ts: int) -> None:
        conf, count, since = state
        if conf is None:
            if self._open.pop(key, None) is not None and key.rule in _ZONE_RULES:
                self._watch(key, ts)
        else:
            self._open[key] = conf
        if count:
            self._pending[key] = (count, since)
        else:
            self._pending.pop(key, None)

    def _watch(self, key: EpisodeKey, ts: int) -> None:
        """Keep checking a key closed at `ts` for the length of the horizon."""
        if ts >= self._recent.get(key, ts):
            self._recent[key] = ts
            self._recent_order.append((ts, key))

    def _replay(self, obs: LateChecks, rows: NDArray[np.intp], touched: set[EpisodeKey]) -> list[AlertEvent]:
        """Re-derive one key from just before its span over every check since; reconcile."""
        first = int(rows[0])
        key = self._key(obs, first)
        touched.add(key)
        t0 = int(obs.span_start[rows].min())
        timeline = self._timelines.get(key)
        if timeline is None:
            timeline = self._timelines[key] = Timeline(self._state(key))
            self._timeline_new.append(key)
        checks = list(zip(
            obs.ts[rows].tolist(), obs.breach[rows].tolist(), obs.confirmed[rows].tolist(), strict=True
        ))
        start = timeline.state_before(t0)
        self.revisions.extend((key, r) for r in timeline.end_kept_before(t0))
        old = [e for e in timeline.episodes if e.end is None or e.end >= t0]
        carried = next((e for e in old if e.start < t0), None)
        derived = derive(self._policies.get(key.rule, IMMEDIATE), start, carried, checks)
        result = reconcile(old, derived, self._open.get(key), checks)
        timeline.trail = [t for t in timeline.trail if t[0] < t0] + derived.trail
        if result.final != derived.final:
            timeline.trail.append((checks[-1][0], result.final))
        earlier = [e for e in timeline.episodes if e.end is not None and e.end < t0]
        timeline.episodes = earlier + result.episodes
        self._set_state(key, result.final, checks[-1][0])
        if ends := [e.end for e in result.episodes if e.end is not None]:
            self._watch(key, max(ends))
        self.revisions.extend((key, r) for r in result.revisions)
        return [
            dataclasses.replace(self._event(kind, key, obs, int(rows[i]), conf), late=late)
            for kind, i, conf, late in result.events
        ]

    def _late_pairs(self, obs: Observations) -> list[AlertEvent]:
        """Beyond the horizon: one alert + clear per key with a breach, unless that episode is open now."""
        breach = np.flatnonzero(obs.breach)
        if len(breach) == 0:
            return []
        code = self._row_codes(obs)[breach]
        known = is_member(self._open_codes, code)
        breach, code = breach[~known], code[~known]
        events: list[AlertEvent] = []
        for c in np.unique(code).tolist():
            rows = breach[code == c]
            rows = rows[np.argsort(obs.ts[rows], kind="stable")]
            first, last = int(rows[0]), int(rows[-1])
            key = self._key(obs, first)
            confidence = "confirmed" if obs.confirmed[rows].any() else "possible"
            events.append(dataclasses.replace(self._event("alert", key, obs, first, confidence), late=True))
            events.append(dataclasses.replace(self._event("cleared", key, obs, last, confidence), late=True))
        return events

    def _step(self, obs: Observations, i: int, touched: set[EpisodeKey]) -> AlertEvent | None:
        key = self._key(obs, i)
        touched.add(key)
        ts = int(obs.ts[i])
        count, since = self._pending.get(key, (0, 0))
        state = (self._open.get(key), count, since)
        after, kind = transition(
            self._policies.get(key.rule, IMMEDIATE), state, ts, bool(obs.breach[i]), bool(obs.confirmed[i])
        )
        if after == state:
            return None
        if key.rule in _REPLAYED:  # only these are ever re-derived: the others need no history
            timeline = self._timelines.get(key)
            if timeline is None:
                timeline = self._timelines[key] = Timeline(state)
                self._timeline_new.append(key)
            timeline.record(ts, after, kind, self.horizon_ms)
        self._set_state(key, after, ts)
        if kind is None:
            return None
        confidence = state[0] if kind == "cleared" else after[0]  # a clear keeps the episode's own
        return self._event(kind, key, obs, i, confidence or "confirmed")

    def _event(
        self, kind: AlertEventType, key: EpisodeKey, obs: Observations, i: int, confidence: str
    ) -> AlertEvent:
        registry = self.registry
        subject = int(obs.subject[i])
        lat, lon = float(obs.lat[i]), float(obs.lon[i])
        jurisdiction = registry.subject_jurisdiction[subject]
        overrides = registry.severity_overrides.get(jurisdiction)
        return AlertEvent(
            type=kind, rule=key.rule, subject_id=key.subject_id, jurisdiction_id=jurisdiction,
            device_id=registry.device_ids[int(obs.device[i])], zone_id=key.zone_id or None,
            ts=int(obs.ts[i]), lat=None if lat != lat else lat, lon=None if lon != lon else lon,
            severity=severity_of(key.rule, registry.subject_risk[subject], overrides), confidence=confidence,
            data=obs.detail.get(i) if obs.detail else None,
        )
