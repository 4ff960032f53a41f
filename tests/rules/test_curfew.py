"""Curfew: a scheduled inclusion zone (home 22:00-06:00) checked by fixes and by a clock tick."""

from __future__ import annotations

from typing import Any

import pytest

from emwatch.alerts.episodes import Debounce
from emwatch.rules.engine import RuleConfig
from tests.rules.harness import COUNTY, HOME, World

WINDOW_OPENS = 800  # seconds after T0: 22:00 local
WINDOW_CLOSES = WINDOW_OPENS + 8 * 3600


def world() -> World:
    return World(zones=[COUNTY, HOME], config=RuleConfig(max_speed_kmh=1e12))


def curfew(w: World) -> list[tuple[str, str, float]]:
    return [(e.type, e.confidence, (e.ts - 1_000_000_000) / 1000) for e in w.events if e.rule == "curfew_violation"]


@pytest.mark.parametrize(("script", "expected"), [
    # At home before 22:00 and still reporting: nothing.
    ([("fix", 700, "in2"), ("tick", 810)], []),
    # Out before 22:00 is allowed; still out when the window opens: the clock catches it.
    ([("fix", 100, "in"), ("fix", 700, "in"), ("tick", 810)], [("alert", "confirmed", 810)]),
    # A bracelet that sends nothing at all still gets a (possible) curfew violation.
    ([("tick", 810)], [("alert", "possible", 810)]),
    # Back home clears it.
    ([("fix", 700, "in"), ("tick", 810), ("fix", 900, "in2")], [("alert", "confirmed", 810), ("cleared", "confirmed", 900)]),
    # Leaving home during the window: the fix itself opens the episode, the tick does not duplicate it.
    ([("fix", 850, "in2"), ("tick", 860), ("fix", 1000, "in"), ("tick", 1010)], [("alert", "confirmed", 1000)]),
    # The window closing ends the obligation.
    ([("fix", 700, "in"), ("tick", 810), ("tick", WINDOW_CLOSES + 5)], [("alert", "confirmed", 810), ("cleared", "confirmed", WINDOW_CLOSES + 5)]),
])
def test_curfew(script: list[tuple[str, int] | tuple[str, int, str]], expected: list[tuple[str, str, float]]) -> None:
    w = world()
    for step in script:
        if step[0] == "tick":
            w.tick(step[1])
        else:
            w.send((step[1], step[2]))  # type: ignore[misc]
    assert curfew(w) == expected


def test_outside_home_by_day_is_not_a_curfew_breach() -> None:
    w = world()
    w.send((0, "in"), (300, "in"))
    w.tick(400)
    assert curfew(w) == [] and w.events == []


ZONE = Debounce(open_checks=2, open_ms=60_000, clear_checks=3, clear_ms=120_000)  # production defaults


def debounced() -> World:
    return World(zones=[COUNTY, HOME], config=RuleConfig(max_speed_kmh=1e12), policies={"curfew_violation": ZONE})


Script = list[tuple[Any, ...]]


def play(w: World, script: Script) -> list[tuple[str, str, float]]:
    for step in script:
        if step[0] == "tick":
            w.tick(step[1])
        else:
            w.send((step[1], step[2], *step[3:]))
    return curfew(w)


@pytest.mark.parametrize(("script", "expected"), [
    # One stray fix outside while at home: the clock re-reading it does not make it two checks.
    ([("fix", 850, "in2"), ("fix", 900, "in"), ("tick", 910), ("tick", 940), ("tick", 970), ("fix", 1000, "in2")], []),
    # Two fixes outside are two checks: the episode opens on the second.
    ([("fix", 850, "in2"), ("fix", 900, "in"), ("tick", 910), ("fix", 930, "in")], [("alert", "confirmed", 930)]),
    # Out since before the window: the clock judges that fix once, the next fix outside confirms it.
    ([("fix", 700, "in"), ("tick", 810), ("tick", 840), ("tick", 870)], []),
    ([("fix", 700, "in"), ("tick", 810), ("tick", 840), ("fix", 860, "in")], [("alert", "confirmed", 860)]),
    # A noisy indoor fix whose circle straddles home, twice: only possibly out.
    ([("fix", 850, "in2"), ("fix", 900, "in", {"acc": 300.0}), ("fix", 930, "in", {"acc": 300.0})],
     [("alert", "possible", 930)]),
    # Silence is evidence that grows with time: a bracelet never heard from, tick after tick.
    ([("tick", 810), ("tick", 840)], [("alert", "possible", 840)]),
])  # fmt: skip
def test_curfew_debounce_counts_distinct_evidence(script: Script, expected: list[tuple[str, str, float]]) -> None:
    assert play(debounced(), script) == expected


@pytest.mark.parametrize(("acc", "confidence"), [(5.0, "confirmed"), (300.0, "possible")])
def test_the_clock_judges_a_fix_from_before_the_window_by_its_error_circle(acc: float, confidence: str) -> None:
    assert play(world(), [("fix", 700, "in", {"acc": acc}), ("tick", 810)]) == [("alert", confidence, 810)]
