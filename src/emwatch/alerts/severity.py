"""Severity of each alert rule by the subject's risk level (风险等级): built-in defaults, and per-jurisdiction
overrides that apply to a jurisdiction and everything below it (the nearest one wins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

SEVERITIES = ("critical", "serious", "warning")
RISK_LEVELS = ("high", "medium", "low")

SEVERITY: dict[str, dict[str, str]] = {
    # Leaving the county of residence (执行地) is the violation the law names first; always urgent.
    "zone_exit": {"high": "critical", "medium": "critical", "low": "serious"},
    # Entering a prohibited place (特定场所), e.g. a victim's home or a school.
    "zone_entry": {"high": "critical", "medium": "critical", "low": "critical"},
    # A cut strap means the bracelet may no longer be on the person: always the most urgent.
    "strap_tamper": {"high": "critical", "medium": "critical", "low": "critical"},
    "case_tamper": {"high": "critical", "medium": "serious", "low": "serious"},
    "battery_low": {"high": "warning", "medium": "warning", "low": "warning"},
    # 脱管: silence is the violation the law names; how fast it matters follows the risk level.
    "signal_lost": {"high": "critical", "medium": "serious", "low": "serious"},
    "location_anomaly": {"high": "serious", "medium": "serious", "low": "warning"},
    "curfew_violation": {"high": "critical", "medium": "serious", "low": "serious"},
    "permit_overdue": {"high": "critical", "medium": "serious", "low": "serious"},
    # A warning ring exists to act before the violation: urgent for high-risk subjects.
    "zone_approach": {"high": "serious", "medium": "warning", "low": "warning"},
    # 人机分离: the bracelet may be off the person, but the evidence is circumstantial (a fused score).
    "device_separation": {"high": "critical", "medium": "serious", "low": "serious"},
    # A protected victim's safety is at stake whatever the subject's own risk level.
    "victim_proximity": {"high": "critical", "medium": "critical", "low": "critical"},
    "subject_contact": {"high": "critical", "medium": "serious", "low": "serious"},
}


# Resolved overrides of one jurisdiction: (rule, risk level) → severity.
Overrides = Mapping[tuple[str, str], str]


@dataclass(frozen=True, slots=True)
class SeverityOverrideRow:
    """One stored override: in `jurisdiction_id` and below, `rule` on a `risk_level` subject is `severity`."""

    jurisdiction_id: str
    rule: str
    risk_level: str
    severity: str


def severity_of(rule: str, risk_level: str, overrides: Overrides | None = None) -> str:
    """Severity for a rule firing on a subject of this risk level ('serious' when unknown)."""
    if overrides and (found := overrides.get((rule, risk_level))) is not None:
        return found
    return SEVERITY.get(rule, {}).get(risk_level, "serious")


def resolve_overrides(
    parent: Mapping[str, str | None], rows: Sequence[SeverityOverrideRow]
) -> dict[str, dict[tuple[str, str], str]]:
    """Per jurisdiction id: its overrides merged with its ancestors' (the nearest wins).

    Only jurisdictions with some override on their path appear; the rest use the defaults.
    """
    own: dict[str, dict[tuple[str, str], str]] = {}
    for r in rows:
        own.setdefault(r.jurisdiction_id, {})[(r.rule, r.risk_level)] = r.severity
    if not own:
        return {}
    out: dict[str, dict[tuple[str, str], str]] = {}
    for jur in parent:
        path: list[str] = []
        node: str | None = jur
        while node is not None and node not in path and len(path) < 32:  # a cycle must not hang a reload
            path.append(node)
            node = parent.get(node)
        merged: dict[tuple[str, str], str] = {}
        for node_id in reversed(path):  # root first, so the nearest jurisdiction's override wins
            merged.update(own.get(node_id, {}))
        if merged:
            out[jur] = merged
    return out
