"""Alert episodes: a breach opens one alert, further breaching checks add nothing, compliance clears it.

Debounce: an episode opens after K consecutive breaching checks or T seconds in breach, and clears
after its own (larger) K/T of compliance, so GPS jitter at a boundary does not flap. A *possible*
breach (the accuracy circle straddles the zone) opens a possible alert that an accurate fix later
upgrades in place (`confirmed` event) rather than duplicating.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.severity import severity_of
from emwatch.model import AlertEvent, AlertEventType, Observations
from emwatch.registry import Registry
from emwatch.rules.catalog import RULE_CODE, RULES, ZONE_RULES


@dataclass(frozen=True, slots=True)
class EpisodeKey:
    """Identity of an episode that survives registry reloads and restarts ('' when no zone)."""

    subject_id: str
    rule: str
    zone_id: str


@dataclass(frozen=True, slots=True)
class Debounce:
    """How much evidence opens and clears an episode of one rule."""

    open_checks: int = 1
    open_ms: int = 0  # 0: by count only
    clear_checks: int = 1
    clear_ms: int = 0

    def due(self, count: int, since_ms: int, ts: int, *, opening: bool) -> bool:
        checks, window = (self.open_checks, self.open_ms) if opening else (self.clear_checks, self.clear_ms)
        return count >= checks or (window > 0 and ts - since_ms >= window)


IMMEDIATE = Debounce()


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
        policies: Mapping[str, Debounce] | None = None,
    ) -> None:
        self._open: dict[EpisodeKey, str] = {k: "confirmed" for k in open_keys}
        self._pending: dict[EpisodeKey, tuple[int, int]] = {}  # (consecutive checks, since ts)
        self._policies = dict(policies or {})
        self.rebind(registry)

    @property
    def open_keys(self) -> frozenset[EpisodeKey]:
        return frozenset(self._open)

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
        self._possible_codes = self._codes(k for k, c in self._open.items() if c == "possible")
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
        possible = [self._open.get(k) == "possible" for _, k in states]
        self._possible_codes = place(self._possible_codes, possible)
        self._derive_zone_pairs()

    def _derive_zone_pairs(self) -> None:
        # Codes sort by subject first (the most significant part), so the pairs come out sorted by subject.
        codes = self._open_codes
        zone = codes % self._n_zones - 1
        rule = (codes // self._n_zones) % len(RULES)
        keep = np.isin(rule, list(ZONE_RULES)) & (zone >= 0)
        self.open_subject = (codes[keep] // self._n_zones // len(RULES)).astype(np.int32)
        self.open_zone = zone[keep].astype(np.int32)

    def open_pairs(self) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """(subject, zone) of every open zone episode, sorted by subject."""
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
        self._sync(touched)
        events.sort(key=lambda e: e.ts)  # stable: one episode's own order is kept
        return events

    def late_episodes(self, obs: Observations) -> list[AlertEvent]:
        """Violations found in late fixes: one alert + clear per (subject, rule, zone) with a breach,
        unless that episode is open now (then it is known already). Never touches current state."""
        breach = np.flatnonzero(obs.breach)
        if len(breach) == 0:
            return []
        code = (obs.subject[breach].astype(np.int64) * len(RULES) + obs.rule[breach]) * self._n_zones
        code += obs.zone[breach] + 1
        known = is_member(self._open_codes, code)
        breach, code = breach[~known], code[~known]
        events: list[AlertEvent] = []
        for c in np.unique(code).tolist():
            rows = breach[code == c]
            rows = rows[np.argsort(obs.ts[rows], kind="stable")]
            first, last = int(rows[0]), int(rows[-1])
            rule = RULES[int(obs.rule[first])]
            zone = int(obs.zone[first])
            zone_id = self.registry.zones.zones[zone].id if zone >= 0 else ""
            key = EpisodeKey(self.registry.subject_ids[int(obs.subject[first])], rule, zone_id)
            confidence = "confirmed" if obs.confirmed[rows].any() else "possible"
            events.append(dataclasses.replace(self._event("alert", key, obs, first, confidence), late=True))
            events.append(dataclasses.replace(self._event("cleared", key, obs, last, confidence), late=True))
        return events

    def _step(self, obs: Observations, i: int, touched: set[EpisodeKey]) -> AlertEvent | None:
        registry = self.registry
        rule = RULES[int(obs.rule[i])]
        zone = int(obs.zone[i])
        subject = int(obs.subject[i])
        zone_id = registry.zones.zones[zone].id if zone >= 0 else ""
        key = EpisodeKey(registry.subject_ids[subject], rule, zone_id)
        touched.add(key)
        policy = self._policies.get(rule, IMMEDIATE)
        ts, breach, confirmed = int(obs.ts[i]), bool(obs.breach[i]), bool(obs.confirmed[i])
        state = self._open.get(key)
        if state is None and not breach:
            self._pending.pop(key, None)
            return None
        if state is not None and breach:
            self._pending.pop(key, None)
            if confirmed and state == "possible":
                self._open[key] = "confirmed"
                return self._event("confirmed", key, obs, i, "confirmed")
            return None
        count, since = self._pending.get(key, (0, ts))
        if not policy.due(count + 1, since, ts, opening=state is None):
            self._pending[key] = (count + 1, since)
            return None
        self._pending.pop(key, None)
        if state is None:
            confidence = "confirmed" if confirmed else "possible"
            self._open[key] = confidence
            return self._event("alert", key, obs, i, confidence)
        del self._open[key]
        return self._event("cleared", key, obs, i, state)

    def _event(
        self, kind: AlertEventType, key: EpisodeKey, obs: Observations, i: int, confidence: str
    ) -> AlertEvent:
        registry = self.registry
        subject = int(obs.subject[i])
        lat, lon = float(obs.lat[i]), float(obs.lon[i])
        return AlertEvent(
            type=kind, rule=key.rule, subject_id=key.subject_id,
            jurisdiction_id=registry.subject_jurisdiction[subject],
            device_id=registry.device_ids[int(obs.device[i])], zone_id=key.zone_id or None,
            ts=int(obs.ts[i]), lat=None if lat != lat else lat, lon=None if lon != lon else lon,
            severity=severity_of(key.rule, registry.subject_risk[subject]), confidence=confidence,
            data=obs.detail.get(i) if obs.detail else None,
        )
