"""The ledger decides in memory what the database would: which episode events change an alert, and its id."""

from __future__ import annotations

import pytest

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
