"""Default severity of each alert rule by the subject's risk level (风险等级)."""

from __future__ import annotations

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


def severity_of(rule: str, risk_level: str) -> str:
    """Severity for a rule firing on a subject of this risk level ('serious' when unknown)."""
    return SEVERITY.get(rule, {}).get(risk_level, "serious")
