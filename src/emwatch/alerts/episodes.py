"""Alert episodes: a breach opens one alert, further breaching checks add nothing, compliance clears it.

Debounce: an episode opens after K consecutive breaching checks or T seconds in breach, and clears
after its own (larger) K/T of compliance, so GPS jitter at a boundary does not flap. A *possible*
breach (the accuracy circle straddles the zone) opens a possible alert that an accurate fix later
upgrades in place (`confirmed` event) rather than duplicating.

Late fixes: see alerts/late_episodes.py. The key codes and sorted views the batch path uses to skip
the checks that change nothing live in alerts/episode_codes.py and alerts/episode_state.py.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.episode_codes import EpisodeKey as EpisodeKey
from emwatch.alerts.episode_codes import is_member as is_member
from emwatch.alerts.episode_events import Mark
from emwatch.alerts.episode_state import DEFAULT_HORIZON_MS as DEFAULT_HORIZON_MS
from emwatch.alerts.episode_state import OPEN, PENDING, POSSIBLE, ZONE_RULE_CODES
from emwatch.alerts.late_episodes import REPLAYED_CODES, LateEpisodes
from emwatch.alerts.late_episodes import REPLAYED_RULES as REPLAYED_RULES
from emwatch.alerts.timeline import CLOSED, Kind, Timeline, transition
from emwatch.alerts.timeline import IMMEDIATE as IMMEDIATE
from emwatch.alerts.timeline import Debounce as Debounce
from emwatch.model import AlertEvent, Observations

_NOTHING_PENDING = (0, 0)


class EpisodeBook(LateEpisodes):
    """Open episodes (with their confidence) and partial evidence towards opening or clearing one."""

    def update(self, obs: Observations) -> list[AlertEvent]:
        """Turn checks into episode transitions, in event-time order within each episode."""
        if len(obs) == 0:
            return []
        code = self.codes.of_rows(obs)
        rows = self._rows_with_news(obs, code)
        if len(rows) == 0:
            return []
        rows = rows[np.lexsort((obs.ts[rows], code[rows]))]
        touched: set[int] = set()
        marks = self._step_rows(obs, rows, code[rows], touched)
        self._newest_ts = max(self._newest_ts, int(obs.ts[rows].max()))
        self._forget_recent(touched)
        self._forget_timelines()
        self._sync(touched)
        events = self.event_maker.make(obs, marks)
        events.sort(key=lambda e: e.ts)  # stable: one episode's own order is kept
        return events

    def _rows_with_news(self, obs: Observations, code: NDArray[np.int64]) -> NDArray[np.intp]:
        """Every row of each key with some row that may change its state; the rest confirm it."""
        # A key with nothing open or pending has news only in a breach; the few held keys are
        # looked at closely (clearing evidence, pending counts, a possible alert to confirm).
        flags = self._flags_of_rows(obs.subject, code)
        held = np.flatnonzero(flags & (OPEN | PENDING))
        news = obs.breach.copy()
        if len(held):
            f, breach = flags[held], obs.breach[held]
            is_open = (f & OPEN) != 0
            upgrade = ((f & POSSIBLE) != 0) & breach & obs.confirmed[held]
            news[held] = (breach != is_open) | ((f & PENDING) != 0) | upgrade
        if not news.any():
            return np.empty(0, dtype=np.intp)
        return np.flatnonzero(is_member(np.sort(code[news]), code))

    def _step_rows(
        self, obs: Observations, rows: NDArray[np.intp], codes: NDArray[np.int64], touched: set[int]
    ) -> list[Mark]:
        """Each row through its key's debounce machine, in order; the transitions that raise events."""
        open_, pending, timelines = self._open, self._pending, self._timelines
        policy_of, horizon_ms = self._policy_by_rule, self.horizon_ms
        set_state, replayed, zone_rule = self._set_state, REPLAYED_CODES, ZONE_RULE_CODES
        raised: list[tuple[Kind, int, int, str]] = []  # (kind, code, row, confidence): keys made below
        for i, c, ts, breach, confirmed, rule in zip(
            rows.tolist(), codes.tolist(), obs.ts[rows].tolist(), obs.breach[rows].tolist(),
            obs.confirmed[rows].tolist(), obs.rule[rows].tolist(), strict=True,
        ):
            count, since = pending.get(c, _NOTHING_PENDING)
            state = (open_.get(c), count, since)
            after, kind = transition(policy_of[rule], state, ts, breach, confirmed)
            if after == state:
                continue
            touched.add(c)
            if replayed[rule]:  # only these are ever re-derived: the others need no history
                timeline = timelines.get(c)
                if timeline is None:
                    timeline = timelines[c] = Timeline(state)
                    self._timeline_new.append(c)
                timeline.record(ts, after, kind, horizon_ms)
                if after == CLOSED:
                    self._closed(c, ts)
            set_state(c, after, ts, zone_rule[rule])
            if kind is not None:
                confidence = state[0] if kind == "cleared" else after[0]  # a clear keeps the episode's own
                raised.append((kind, c, i, confidence or "confirmed"))
        # Keys for the whole batch at once: their codes are decoded together (one numpy pass).
        keys = self.codes.keys_of([r[1] for r in raised])
        return [(kind, key, i, conf, False) for (kind, _, i, conf), key in zip(raised, keys, strict=True)]
