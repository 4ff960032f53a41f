"""Matching alerts to ground-truth episodes, and the numbers computed from the matches."""

from __future__ import annotations

from typing import Any

import pytest

from device_sim.score import Alert, Tolerance, alerts_from_events, format_table, match, score

MIN = 60_000
T0 = 1_700_000_000_000
EPISODES = [
    {"subject": "subj-000001", "rule": "zone_exit", "start": T0 + 10 * MIN, "end": T0 + 30 * MIN, "zone_id": "county"},
    {"subject": "subj-000002", "rule": "zone_entry", "start": T0 + 10 * MIN, "end": T0 + 20 * MIN, "zone_id": "school"},
    {"subject": "subj-000003", "rule": "subject_contact", "start": T0 + 50 * MIN, "end": T0 + 60 * MIN, "other_subject": "subj-000004"},
    {"subject": "subj-000005", "rule": "zone_entry", "start": T0 + 5 * MIN, "end": T0 + 5 * MIN + 20_000, "zone_id": "school", "brief": True},
]
TOL = Tolerance(early_s=120, late_s=600)


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (Alert("zone_exit", "subj-000001", "county", T0 + 11 * MIN), 0),  # inside the episode
        (Alert("zone_exit", "subj-000001", "county", T0 + 9 * MIN), 0),  # up to `early` before: GPS noise
        (Alert("zone_exit", "subj-000001", "county", T0 + 7 * MIN), None),  # too early
        (Alert("zone_exit", "subj-000001", "county", T0 + 39 * MIN), 0),  # up to `late` after the end
        (Alert("zone_exit", "subj-000001", "county", T0 + 41 * MIN), None),  # too late
        (Alert("zone_exit", "subj-000001", None, T0 + 11 * MIN), 0),  # an alert without a zone matches any
        (Alert("zone_exit", "subj-000001", "other", T0 + 11 * MIN), None),  # a different zone does not
        (Alert("zone_entry", "subj-000001", "county", T0 + 11 * MIN), None),  # a different rule does not
        (Alert("zone_exit", "subj-000009", "county", T0 + 11 * MIN), None),  # nor another subject
        (Alert("subject_contact", "subj-000004", None, T0 + 55 * MIN), 2),  # either subject of a meeting
        (Alert("zone_entry", "subj-000005", "school", T0 + 5 * MIN), 3),  # a brief episode still matches
    ],
)
def test_an_alert_matches_an_episode_of_its_rule_subject_zone_and_time(alert: Alert, expected: int | None) -> None:
    matched, _ = match(EPISODES, [alert], TOL)
    assert matched == [expected]


def truth(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"t0": T0, "t1": T0 + 86_400_000, "devices": 10, "subjects": 9, "world": {}, "episodes": episodes,
            "scripted": [{"subject": "subj-000009", "kind": "boundary_walk", "near_miss": True}]}


def test_recall_precision_false_alarms_and_delay() -> None:
    alerts = [
        Alert("zone_exit", "subj-000001", "county", T0 + 12 * MIN),  # 2 min late
        Alert("zone_exit", "subj-000001", "county", T0 + 20 * MIN),  # duplicate (re-opened)
        Alert("zone_exit", "subj-000009", "county", T0 + 20 * MIN),  # false alarm on a near-miss subject
        Alert("zone_entry", "subj-000005", "school", T0 + 5 * MIN),  # brief episode caught: not a false alarm
        Alert("zone_entry", "other-tenant", "school", T0 + 5 * MIN),  # not this trace's subject: ignored
    ]
    report = score(truth(EPISODES), alerts, TOL)
    exit_row, entry_row = report["rules"]["zone_exit"], report["rules"]["zone_entry"]
    assert (exit_row["episodes"], exit_row["detected"], exit_row["recall"]) == (1, 1, 1.0)
    assert (exit_row["alerts"], exit_row["true_alerts"], exit_row["false_alarms"], exit_row["duplicates"]) == (3, 2, 1, 1)
    assert exit_row["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert exit_row["false_alarms_per_device_day"] == 0.1  # 1 false alarm / (10 devices x 1 day)
    assert exit_row["delay_median_s"] == exit_row["delay_p95_s"] == 120.0
    assert (entry_row["episodes"], entry_row["brief"], entry_row["detected"], entry_row["recall"]) == (1, 1, 0, 0.0)
    assert entry_row["false_alarms"] == 0
    assert report["rules"]["subject_contact"]["recall"] == 0.0
    assert report["overall"]["episodes"] == 3 and report["overall"]["detected"] == 1
    assert report["near_miss_false_alarms"] == {"boundary_walk": [{"subject": "subj-000009", "rule": "zone_exit", "ts": T0 + 20 * MIN}]}


def test_alerts_come_from_feed_events_or_api_rows() -> None:
    rows = [
        {"seq": 1, "id": 7, "type": "alert", "rule": "zone_exit", "subject_id": "s", "zone_id": "z", "ts": T0},
        {"seq": 2, "id": 7, "type": "cleared", "rule": "zone_exit", "subject_id": "s", "zone_id": "z", "ts": T0 + 1},
        {"id": 8, "rule": "signal_lost", "subject_id": "s", "zone_id": None, "opened_at": "2023-11-14T22:13:20Z"},
    ]
    assert alerts_from_events(rows) == [Alert("zone_exit", "s", "z", T0), Alert("signal_lost", "s", None, T0)]


@pytest.mark.parametrize(
    ("replay", "scorable"),
    [
        (None, True),  # not replayed: scored as recorded
        ({"speed": 1, "clock": "wall"}, True),  # real time: the wall clock is the trace's clock
        ({"speed": 0, "clock": "event"}, True),  # the service's timer was driven in trace time
        ({"speed": 50, "clock": "wall"}, False),  # fixes minutes to hours old on arrival look silent
    ],
)
def test_clock_rules_are_scored_only_when_the_service_clock_followed_the_trace(
    replay: dict[str, Any] | None, scorable: bool
) -> None:
    silent = {"subject": "subj-000001", "rule": "signal_lost", "start": T0 + 10 * MIN, "end": T0 + 40 * MIN}
    doc = truth([silent])
    if replay is not None:
        doc["replay"] = replay
    alerts = [Alert("signal_lost", "subj-000002", None, T0 + 5 * MIN)]
    report = score(doc, alerts, TOL)
    if scorable:
        assert report["not_scorable"] == {} and report["rules"]["signal_lost"]["false_alarms"] == 1
    else:
        assert set(report["not_scorable"]) == {"signal_lost", "curfew_violation"}
        assert "signal_lost" not in report["rules"] and report["overall"]["alerts"] == 0
        assert "not scorable" in format_table(report)


def test_a_victim_warning_before_the_violation_matches_it() -> None:
    episode = {"subject": "subj-000001", "rule": "victim_proximity", "start": T0 + 20 * MIN, "end": T0 + 30 * MIN}
    warned = Alert("victim_proximity", "subj-000001", None, T0 + 11 * MIN)  # possible at 1 km, 9 min ahead
    too_early = Alert("victim_proximity", "subj-000001", None, T0 + 9 * MIN)
    zone_early = Alert("zone_exit", "subj-000001", None, T0 + 11 * MIN)
    matched, _ = match([episode, {**episode, "rule": "zone_exit"}], [warned, too_early, zone_early], TOL)
    assert matched == [0, None, None]
