"""Alert episodes: a breach opens one alert, consecutive breaching fixes add nothing, compliance clears it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from emwatch.alerts.severity import severity_of
from emwatch.model import AlertEvent, FixBatch, Observations
from emwatch.registry import Registry


def rule_for(zone_is_inclusion: bool) -> str:
    """The alert rule a zone kind raises."""
    return "zone_exit" if zone_is_inclusion else "zone_entry"


@dataclass(frozen=True, slots=True)
class EpisodeKey:
    """Identity of an episode that survives registry reloads and restarts."""

    subject_id: str
    rule: str
    zone_id: str


class EpisodeBook:
    """The set of open episodes, with a sorted (subject, zone) view for vectorized lookups."""

    def __init__(self, registry: Registry, open_keys: Iterable[EpisodeKey] = ()) -> None:
        self._open: set[EpisodeKey] = set(open_keys)
        self.rebind(registry)

    @property
    def open_keys(self) -> frozenset[EpisodeKey]:
        return frozenset(self._open)

    def rebind(self, registry: Registry) -> None:
        """Recompute dense views after a registry change."""
        self.registry = registry
        self._refresh()

    def _refresh(self) -> None:
        subjects = {s: i for i, s in enumerate(self.registry.subject_ids)}
        zones = self.registry.zones.index_of
        pairs = sorted(
            (subjects[k.subject_id], zones[k.zone_id])
            for k in self._open
            if k.subject_id in subjects and k.zone_id in zones
        )
        self.open_subject = np.array([p[0] for p in pairs], dtype=np.int32)
        self.open_zone = np.array([p[1] for p in pairs], dtype=np.int32)
        n_zones = max(len(self.registry.zones.zones), 1)
        self._open_codes = self.open_subject.astype(np.int64) * n_zones + self.open_zone

    def open_pairs(self) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
        """(subject, zone) of every open episode, sorted by subject."""
        return self.open_subject, self.open_zone

    def update(self, batch: FixBatch, obs: Observations) -> list[AlertEvent]:
        """Turn observations into episode transitions, in event-time order within each episode."""
        if len(obs.fix) == 0:
            return []
        registry = self.registry
        n_zones = max(len(registry.zones.zones), 1)
        code = obs.subject.astype(np.int64) * n_zones + obs.zone
        ts = batch.fixes.ts[obs.fix]
        order = np.lexsort((ts, code))
        code, breach, fix, zone = code[order], obs.breach[order], obs.fix[order], obs.zone[order]

        first = np.ones(len(code), dtype=bool)
        first[1:] = code[1:] != code[:-1]
        previous = np.empty_like(breach)
        previous[1:] = breach[:-1]
        previous[first] = np.isin(code[first], self._open_codes)
        changed = np.flatnonzero(breach != previous)
        if len(changed) == 0:
            return []

        events: list[AlertEvent] = []
        fixes = batch.fixes
        for i in changed.tolist():
            z = registry.zones.zones[int(zone[i])]
            row = int(fix[i])
            s_idx = int(batch.subject[row])
            rule = rule_for(z.kind == "inclusion")
            key = EpisodeKey(registry.subject_ids[s_idx], rule, z.id)
            opening = bool(breach[i])
            if opening:
                self._open.add(key)
            else:
                self._open.discard(key)
            events.append(AlertEvent(
                type="alert" if opening else "cleared",
                rule=rule,
                subject_id=key.subject_id,
                jurisdiction_id=registry.subject_jurisdiction[s_idx],
                device_id=fixes.device_ids[row],
                zone_id=z.id,
                ts=int(fixes.ts[row]),
                lat=float(fixes.lat[row]),
                lon=float(fixes.lon[row]),
                severity=severity_of(rule, registry.subject_risk[s_idx]),
            ))
        self._refresh()
        events.sort(key=lambda e: e.ts)  # stable: one episode's open/clear order is kept
        return events
