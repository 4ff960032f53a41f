"""Episodes from late fixes: replayed in event time within the reorder horizon, closed pairs beyond it.

Within the horizon each key's recent history is kept (alerts/timeline.py), and a late fix re-derives
the key in event-time order from just before it; the current state never flips back.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.episode_codes import is_member
from emwatch.alerts.episode_events import Mark
from emwatch.alerts.episode_state import OPEN, ZONE_RULE_CODES, EpisodeState
from emwatch.alerts.timeline import CLOSED, IMMEDIATE, Timeline, derive, reconcile
from emwatch.model import AlertEvent, Observations
from emwatch.rules.catalog import RULES, ZONE_APPROACH, ZONE_ENTRY, ZONE_EXIT
from emwatch.rules.reorder import NO_SPAN, LateChecks, take_rows

# Rules whose checks come from fixes alone, so a replay of a device's fixes reproduces all of them
# (curfews also run on the clock, permits on their own timers: their late fixes stay closed pairs).
REPLAYED_RULES = np.array(sorted((ZONE_EXIT, ZONE_ENTRY, ZONE_APPROACH)), dtype=np.int16)
REPLAYED_CODES = [code in REPLAYED_RULES for code in range(len(RULES))]


class LateEpisodes(EpisodeState):
    """The episode state, and what late checks do to it."""

    def late_episodes(self, obs: Observations) -> list[AlertEvent]:
        """Checks of late fixes. Within the reorder horizon (`LateChecks` rows with a span) a zone key
        is re-derived in event time from just before its device's oldest late fix and reconciled
        (alerts/timeline.py); beyond it, or for timer-driven rules, each key with a breach becomes
        one closed `late` pair unless that episode is open now. The current state never flips back."""
        if not isinstance(obs, LateChecks):
            return self._late_pairs(obs)
        replayed = (obs.span_start != NO_SPAN) & np.asarray(REPLAYED_CODES)[obs.rule]
        events = self._late_pairs(take_rows(obs, np.flatnonzero(obs.late & ~replayed)))
        rows = np.flatnonzero(replayed)
        if len(rows) == 0:
            return events
        codes = self.codes.of_rows(obs)
        # A key never in breach, with no history and nothing open or pending, cannot change: skip it.
        c = codes[rows]
        busy = is_member(np.sort(c[obs.breach[rows]]), c) | (self._table.flags_of(c) != 0)
        rows = rows[busy | self._timelines_indexed().member(c)]
        if len(rows) == 0:
            return events
        rows = rows[np.lexsort((obs.ts[rows], codes[rows]))]
        code = codes[rows]
        touched: set[int] = set()
        marks: list[Mark] = []
        for group in np.split(rows, np.flatnonzero(np.diff(code)) + 1):
            marks += self._replay(obs, group, int(codes[group[0]]), touched)
        events += self.event_maker.make(obs, marks)
        self._sync(touched)
        events.sort(key=lambda e: e.ts)
        return events

    def _replay(
        self, obs: LateChecks, rows: NDArray[np.intp], code: int, touched: set[int]
    ) -> list[Mark]:
        """Re-derive one key from just before its span over every check since; reconcile."""
        key = self.codes.key_of(code)
        touched.add(code)
        t0 = int(obs.span_start[rows].min())
        timeline = self._timelines.get(code)
        if timeline is None:
            timeline = self._timelines[code] = Timeline(self._state(code))
            self._timeline_new.append(code)
        checks = list(zip(
            obs.ts[rows].tolist(), obs.breach[rows].tolist(), obs.confirmed[rows].tolist(), strict=True
        ))
        start = timeline.state_before(t0)
        self.revisions.extend((key, r) for r in timeline.end_kept_before(t0))
        old = [e for e in timeline.episodes if e.end is None or e.end >= t0]
        carried = next((e for e in old if e.start < t0), None)
        derived = derive(self._policies.get(key.rule, IMMEDIATE), start, carried, checks)
        result = reconcile(old, derived, self._open.get(code), checks)
        newest = checks[-1][0]
        timeline.trail = [t for t in timeline.trail if t[0] < t0] + derived.trail
        if result.final != derived.final:
            timeline.trail.append((newest, result.final))
        earlier = [e for e in timeline.episodes if e.end is not None and e.end < t0]
        timeline.episodes = earlier + result.episodes
        timeline.forget(newest - self.horizon_ms)
        self._set_state(code, result.final, newest, ZONE_RULE_CODES[int(obs.rule[rows[0]])])
        if result.final == CLOSED:
            self._closed(code, newest)
        if ends := [e.end for e in result.episodes if e.end is not None]:
            self._watch(code, max(ends))
        self.revisions.extend((key, r) for r in result.revisions)
        return [(kind, key, int(rows[i]), conf, late) for kind, i, conf, late in result.events]

    def _late_pairs(self, obs: Observations) -> list[AlertEvent]:
        """Beyond the horizon: one alert + clear per key with a breach, unless that episode is open now."""
        breach = np.flatnonzero(obs.breach)
        if len(breach) == 0:
            return []
        code = self.codes.of_rows(obs)[breach]
        known = (self._table.flags_of(code) & OPEN) != 0
        breach, code = breach[~known], code[~known]
        if len(code) == 0:
            return []
        # By key, then event time (ties in row order): each key's first and last breach.
        order = np.lexsort((obs.ts[breach], code))
        breach, code = breach[order], code[order]
        starts = np.flatnonzero(np.concatenate(([True], code[1:] != code[:-1])))
        ends = np.append(starts[1:], len(code)) - 1
        confirmed = np.logical_or.reduceat(obs.confirmed[breach], starts)
        marks: list[Mark] = []
        firsts, lasts = breach[starts].tolist(), breach[ends].tolist()
        keys = code[starts].tolist()
        for c, first, last, conf in zip(keys, firsts, lasts, confirmed.tolist(), strict=True):
            key = self.codes.key_of(c)
            confidence = "confirmed" if conf else "possible"
            marks.append(("alert", key, first, confidence, True))
            marks.append(("cleared", key, last, confidence, True))
        return self.event_maker.make(obs, marks)

