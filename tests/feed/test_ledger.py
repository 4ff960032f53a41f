"""The ledger decides in memory what the database would: which episode events change an alert, and its id."""

from __future__ import annotations

import dataclasses

import pytest
from prometheus_client import REGISTRY

from emwatch.alerts.timeline import Revision
from emwatch.feed.ledger import AlertLedger
from emwatch.model import AlertEvent


def ev(type_: str, zone: str = "z1", late: bool = False) -> AlertEvent:
    return AlertEvent(type_, "zone_exit", "s1", "j1", "d1", zone, 0, None, None, "critical", late=late)  # type: ignore[arg-type]


@pytest.mark.parametrize(("open_before", "events", "expected"), [
    ({}, [ev("alert"), ev("cleared")], [("alert", 100), ("cleared", 100)]),   # new episode: next reserved id
    ({"z1": 7}, [ev("alert")], []),                                          # already open: it continues
    ({"z1": 7}, [ev("confirmed"), ev("cleared")], [("confirmed", 7), ("cleared", 7)]),
    ({}, [ev("cleared"), ev("confirmed")], []),                              # nothing open: nothing changes
    ({"z1": 7}, [ev("alert", late=True), ev("cleared", late=True)], []),     # late, episode open: dropped whole
    ({}, [ev("alert", "z1"), ev("alert", "z2")], [("alert", 100), ("alert", 101)]),
])
def test_admit(open_before: dict[str, int], events: list[AlertEvent], expected: list[tuple[str, int]]) -> None:
    ledger = AlertLedger(((("s1", "zone_exit", z), i) for z, i in open_before.items()), [100, 101])
    assert [(e.type, e.alert_id) for e in ledger.admit(events)] == expected


def test_late_alert_on_record_is_dropped_with_its_clear() -> None:
    ledger = AlertLedger((), [100])
    admitted = ledger.admit([ev("alert", late=True), ev("cleared", late=True)], {("s1", "zone_exit", "z1")})
    assert admitted == []


def test_ids_continue_above_the_highest_when_the_reserve_runs_dry() -> None:
    ledger = AlertLedger((), [5])
    ledger.admit([ev("alert", "a")])
    assert [e.alert_id for e in ledger.admit([ev("alert", "b")])] == [6]
    assert ledger.ids_wanted > 0


# -- revisions: late fixes that move the event-time bounds of alerts already raised ------------------

KEY = ("s1", "zone_exit", "z1")


def skipped() -> float:
    return REGISTRY.get_sample_value("emwatch_revisions_skipped_total") or 0.0


def at(type_: str, ts: int, late: bool = False) -> AlertEvent:
    return dataclasses.replace(ev(type_, late=late), ts=ts)


def rev(start: int, end: int | None, was_start: int | None, was_end: int | None) -> Revision:
    return Revision(start, end, "confirmed", was_start, was_end)


@pytest.mark.parametrize(("events", "revision", "expected"), [
    # the open alert started earlier in event time: opened_at moves, it stays open
    ([at("alert", 100_000)], rev(40_000, None, 100_000, None), (40_000, None, 100_000, None)),
    # a closed alert's end moved later (a late fix still in breach)
    ([at("alert", 100_000), at("cleared", 200_000)], rev(100_000, 250_000, 100_000, 200_000),
     (100_000, 250_000, 100_000, 200_000)),
    # two closed episodes merged: the first alert now ends where the second did
    ([at("alert", 100_000), at("cleared", 150_000), at("alert", 160_000), at("cleared", 200_000)],
     rev(100_000, 200_000, 100_000, 150_000), (100_000, 200_000, 100_000, 150_000)),
    # merged into the open episode: the record never reopens a closed alert, only its start may move
    ([at("alert", 100_000), at("cleared", 150_000)], rev(90_000, None, 100_000, 150_000),
     (90_000, 150_000, 100_000, 150_000)),
])
def test_revision_maps_to_the_alert_its_former_bounds_describe(
    events: list[AlertEvent], revision: Revision, expected: tuple[int, int | None, int, int | None]
) -> None:
    ledger = AlertLedger((), [100, 101])
    ledger.admit(events)
    [revised] = ledger.revise([(KEY, revision)])
    assert (revised.type, revised.alert_id, revised.ts, revised.late) == ("revised", 100, expected[0], False)
    assert revised.data == dict(zip(("opened_at", "cleared_at", "was_opened_at", "was_cleared_at"), expected,
                                    strict=True))
    assert (revised.rule, revised.subject_id, revised.zone_id, revised.seq) == ("zone_exit", "s1", "z1", 0)


def test_the_open_alert_is_revised_even_when_it_was_reopened_after_its_episode_start() -> None:
    # A late fix showed a cleared episode went on: the record reopened it as a new alert at the first
    # check after the old clear; the book's open episode still starts where the old one did.
    ledger = AlertLedger((), [100, 101])
    ledger.admit([at("alert", 100_000), at("cleared", 150_000), at("alert", 170_000, late=True)])
    [revised] = ledger.revise([(KEY, rev(80_000, None, 100_000, None))])
    assert (revised.alert_id, revised.data) == (101, {"opened_at": 80_000, "cleared_at": None,
                                                       "was_opened_at": 170_000, "was_cleared_at": None})


def test_successive_revisions_compare_with_the_last_one() -> None:
    ledger = AlertLedger((), [100])
    ledger.admit([at("alert", 100_000)])
    assert len(ledger.revise([(KEY, rev(60_000, None, 100_000, None))])) == 1
    assert ledger.revise([(KEY, rev(60_000, None, 60_000, None))]) == []  # nothing moved
    [again] = ledger.revise([(KEY, rev(50_000, None, 60_000, None))])
    assert again.data is not None and again.data["was_opened_at"] == 60_000


def test_revealed_episodes_are_not_revisions() -> None:
    ledger = AlertLedger((), [100])
    ledger.admit([at("alert", 100_000)])
    before = skipped()
    assert ledger.revise([(KEY, rev(10_000, 20_000, None, None))]) == []
    assert skipped() == before


@pytest.mark.parametrize("case", ["open_at_start", "never_admitted", "beyond_horizon"])
def test_revision_of_an_unknown_alert_is_skipped_and_counted(case: str) -> None:
    ledger = AlertLedger([(KEY, 7)] if case == "open_at_start" else [], [100], horizon_ms=60_000)
    if case == "beyond_horizon":
        ledger.admit([at("alert", 100_000), at("cleared", 110_000), dataclasses.replace(at("alert", 400_000),
                                                                                       zone_id="z2")])
    before = skipped()
    was_end = 110_000 if case == "beyond_horizon" else None
    assert ledger.revise([(KEY, rev(50_000, was_end, 100_000, was_end))]) == []
    assert skipped() == before + 1
