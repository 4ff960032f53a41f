"""Score the alerts a service raised against a trace's ground truth (matching rules: README.md).

An alert matches a ground-truth episode when the rule is the same, the subject is the episode's
(or, for `subject_contact`, its other subject), the zone is the same when both name one, and the
alert's `ts` lies in [start - early, end + late]. Matching alerts are true; an episode with at
least one is detected, its delay = first matching alert's ts - start (0 if earlier). Alerts that
match nothing are false alarms. Brief episodes (too short to be seen between fixes) do not count
towards recall, but alerts matching them are not false alarms either.

Rules the service runs on its wall clock (`CLOCK_RULES`) are only scorable when the alerts' clock
followed the trace: a replay at speed 1, or one whose truth says `replay.clock == "event"` (the
service's timer was driven in trace time). Otherwise they are reported as `not_scorable`, with why.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

DAY_MS = 86_400_000
# Timer rules: the service checks them against its own clock (signal_lost: silence since the last
# report; curfew_violation: also "no recent position" while a curfew is in force).
CLOCK_RULES = ("signal_lost", "curfew_violation")


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far before an episode's start and after its end an alert may still belong to it."""

    early_s: float = 120.0  # GPS noise and clock skew can show a crossing a little early
    late_s: float = 600.0  # a rule may need a while (signal_lost waits for silence to last)
    # Rules that warn before the violation by design: victim_proximity opens a *possible* alert at its
    # 1 km warning ring, up to 500 m (about 600 s at walking pace) before the 500 m violation.
    early_by_rule: dict[str, float] = field(default_factory=lambda: {"victim_proximity": 600.0})

    def early_ms(self, rule: str) -> float:
        return self.early_by_rule.get(rule, self.early_s) * 1000


@dataclass(frozen=True, slots=True)
class Alert:
    """The part of an alert the scorer needs."""

    rule: str
    subject_id: str
    zone_id: str | None
    ts: int  # epoch ms of the fix or event that opened it


def alerts_from_events(rows: list[dict[str, Any]]) -> list[Alert]:
    """Alerts from feed events (`type` alert/cleared, `ts` ms) or /api/alerts rows (`opened_at`)."""
    out = []
    for r in rows:
        if "type" in r and r["type"] != "alert":
            continue
        ts = r.get("ts")
        if ts is None:
            ts = int(datetime.fromisoformat(str(r["opened_at"]).replace("Z", "+00:00")).timestamp() * 1000)
        out.append(Alert(str(r["rule"]), str(r["subject_id"]), r.get("zone_id"), int(ts)))
    return out


def match(
    episodes: list[dict[str, Any]], alerts: list[Alert], tol: Tolerance
) -> tuple[list[int | None], dict[int, int]]:
    """For each alert the index of the episode it matches (None: false alarm), and per episode the
    ts of its first matching alert. Among several candidates an alert goes to the earliest-starting."""
    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, e in enumerate(episodes):
        by_key[(e["rule"], e["subject"])].append(i)
        if e.get("other_subject"):
            by_key[(e["rule"], e["other_subject"])].append(i)
    late = tol.late_s * 1000
    matched: list[int | None] = []
    first: dict[int, int] = {}
    for a in alerts:
        hit = None
        for i in sorted(by_key.get((a.rule, a.subject_id), []), key=lambda i: episodes[i]["start"]):
            e = episodes[i]
            zone = e.get("zone_id")
            if zone is not None and a.zone_id is not None and zone != a.zone_id:
                continue
            if e["start"] - tol.early_ms(a.rule) <= a.ts <= e["end"] + late:
                hit = i
                break
        matched.append(hit)
        if hit is not None:
            first[hit] = min(first.get(hit, a.ts), a.ts)
    return matched, first


def score(truth: dict[str, Any], alerts: list[Alert], tol: Tolerance | None = None) -> dict[str, Any]:
    """Per rule and overall: recall, precision, false alarms per device-day, detection delay."""
    tol = tol or Tolerance()
    subjects = {s for s in _truth_subjects(truth)}
    alerts = [a for a in alerts if a.subject_id in subjects]  # other tenants' alerts are not ours
    unscorable = not_scorable(truth)
    alerts = [a for a in alerts if a.rule not in unscorable]
    episodes = [e for e in truth["episodes"] if e["rule"] not in unscorable]
    matched, first = match(episodes, alerts, tol)
    device_days = truth["devices"] * (truth["t1"] - truth["t0"]) / DAY_MS
    near_miss = {s["subject"]: s["kind"] for s in truth.get("scripted", []) if s.get("near_miss")}
    rules = sorted({e["rule"] for e in episodes} | {a.rule for a in alerts})
    report: dict[str, Any] = {"rules": {}, "device_days": round(device_days, 3), "tolerance": tol.__repr__()}
    totals: dict[str, Any] = defaultdict(int, delays=[])
    false_near_miss: dict[str, list[dict[str, Any]]] = defaultdict(list)
    report["false_alarm_alerts"] = [
        {"subject": a.subject_id, "rule": a.rule, "zone_id": a.zone_id, "ts": a.ts}
        for a, m in zip(alerts, matched, strict=True) if m is None
    ]  # fmt: skip
    for rule in rules:
        ep = [i for i, e in enumerate(episodes) if e["rule"] == rule]
        counted = [i for i in ep if not episodes[i].get("brief")]
        detected = [i for i in counted if i in first]
        mine = [k for k, a in enumerate(alerts) if a.rule == rule]
        true_alerts = [k for k in mine if matched[k] is not None]
        false = [k for k in mine if matched[k] is None]
        for k in false:
            if alerts[k].subject_id in near_miss:
                kind = near_miss[alerts[k].subject_id]
                alarm = {"subject": alerts[k].subject_id, "rule": rule, "ts": alerts[k].ts}
                false_near_miss[kind].append(alarm)
        delays = [max(0, first[i] - episodes[i]["start"]) / 1000 for i in detected]
        row = _row(len(counted), len(ep) - len(counted), len(detected), len(mine), len(true_alerts),
                   len(false), len({matched[k] for k in true_alerts}), delays, device_days)  # fmt: skip
        report["rules"][rule] = row
        for key in ("episodes", "brief", "detected", "alerts", "true_alerts", "false_alarms", "duplicates"):
            totals[key] += row[key]
        totals["delays"] += delays
    report["overall"] = _row(
        totals["episodes"], totals["brief"], totals["detected"], totals["alerts"], totals["true_alerts"],
        totals["false_alarms"], totals["true_alerts"] - totals["duplicates"], totals["delays"], device_days,
    )  # fmt: skip
    report["near_miss_false_alarms"] = dict(false_near_miss)
    report["not_scorable"] = unscorable
    return report


def not_scorable(truth: dict[str, Any]) -> dict[str, str]:
    """Clock rules that this truth's replay makes meaningless to score, each with the reason."""
    replay = truth.get("replay")
    if replay is None or replay.get("clock") == "event" or replay.get("speed") == 1:
        return {}
    why = (f"replayed at speed {replay.get('speed')} against the service's wall clock: fixes hours old "
           "on arrival look silent")  # fmt: skip
    return dict.fromkeys(CLOCK_RULES, why)


def _row(
    episodes: int, brief: int, detected: int, alerts: int, true_alerts: int, false: int,
    distinct_matched: int, delays: list[float], device_days: float,
) -> dict[str, Any]:  # fmt: skip
    return {
        "episodes": episodes,
        "brief": brief,
        "detected": detected,
        "recall": round(detected / episodes, 4) if episodes else None,
        "alerts": alerts,
        "true_alerts": true_alerts,
        "false_alarms": false,
        "duplicates": true_alerts - distinct_matched,
        "precision": round(true_alerts / alerts, 4) if alerts else None,
        "false_alarms_per_device_day": round(false / device_days, 4) if device_days else None,
        "delay_median_s": round(float(np.median(delays)), 1) if delays else None,
        "delay_p95_s": round(float(np.percentile(delays, 95)), 1) if delays else None,
    }


def _truth_subjects(truth: dict[str, Any]) -> list[str]:
    """Subject ids of the trace's world: `<namespace>subj-000001` ... in order."""
    namespace = truth["world"].get("namespace", "")
    return [f"{namespace}subj-{i + 1:06d}" for i in range(truth["subjects"])]


def format_table(report: dict[str, Any]) -> str:
    """The report as a fixed-width text table, one line per rule and an overall line."""
    head = f"{'rule':<18} {'episodes':>8} {'detected':>8} {'recall':>7} {'alerts':>6} {'false':>5} " \
           f"{'precision':>9} {'FA/dev-day':>10} {'delay med':>9} {'p95':>7}"  # fmt: skip
    lines = [head, "-" * len(head)]
    for name, r in [*report["rules"].items(), ("overall", report["overall"])]:
        lines.append(
            f"{name:<18} {r['episodes']:>8} {r['detected']:>8} {_f(r['recall']):>7} {r['alerts']:>6} "
            f"{r['false_alarms']:>5} {_f(r['precision']):>9} {_f(r['false_alarms_per_device_day']):>10} "
            f"{_s(r['delay_median_s']):>9} {_s(r['delay_p95_s']):>7}"
        )
    for name, why in report.get("not_scorable", {}).items():
        lines.append(f"{name:<18} not scorable: {why}")
    return "\n".join(lines)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}s"
