"""The AlertEvents of episode transitions, built for a whole batch of check rows at once."""

from __future__ import annotations

from emwatch.alerts.episode_codes import EpisodeKey
from emwatch.alerts.severity import severity_of
from emwatch.alerts.timeline import Kind
from emwatch.model import AlertEvent, Observations
from emwatch.registry import Registry

# (kind, key, row of the check that caused it, confidence, late)
Mark = tuple[Kind, EpisodeKey, int, str, bool]


class EventMaker:
    """AlertEvents for one registry: who, where and how severe, from the rows that caused them."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._severity: dict[tuple[str, str, str], str] = {}  # (rule, risk, jurisdiction): few values

    def make(self, obs: Observations, marks: list[Mark]) -> list[AlertEvent]:
        """One event per mark, in the marks' order."""
        if not marks:
            return []
        rows = [m[2] for m in marks]
        subject, device = obs.subject[rows].tolist(), obs.device[rows].tolist()
        ts, lat, lon = obs.ts[rows].tolist(), obs.lat[rows].tolist(), obs.lon[rows].tolist()
        registry, detail = self.registry, obs.detail
        jurisdictions, risks = registry.subject_jurisdiction, registry.subject_risk
        device_ids = registry.device_ids
        severity, severity_of = self._severity, self._severity_of
        details = [detail.get(row) for row in rows] if detail else [None] * len(rows)
        out = []
        for (kind, key, _, confidence, late), s, d, t, la, lo, data in zip(
            marks, subject, device, ts, lat, lon, details, strict=True
        ):
            rule, jurisdiction = key.rule, jurisdictions[s]
            risk = risks[s]
            # positional: AlertEvent's field order (type .. severity, seq, alert_id, confidence, late, data)
            out.append(AlertEvent(
                kind, rule, key.subject_id, jurisdiction, device_ids[d], key.zone_id or None, t,
                None if la != la else la, None if lo != lo else lo,
                severity.get((rule, risk, jurisdiction)) or severity_of(rule, risk, jurisdiction),
                0, 0, confidence, late, data,
            ))
        return out

    def _severity_of(self, rule: str, risk: str, jurisdiction: str) -> str:
        found = self._severity.get((rule, risk, jurisdiction))
        if found is None:
            overrides = self.registry.severity_overrides.get(jurisdiction)
            found = self._severity[(rule, risk, jurisdiction)] = severity_of(rule, risk, overrides)
        return found
