"""人机分离 on the clock: silence must not hide a separation (a dead phone far away, a bracelet on a table).

Scripts are (seconds, device, fix position / "event:<type>" / "tick"); "a" is the bracelet ankle-1,
"p" its phone phone-1. Separation debounce as in production: two checks in a row open, two clear.
"""

from __future__ import annotations

import pytest

from emwatch.pipeline import PAIR_RULE_DEBOUNCE
from tests.rules.harness import T0, World

Step = tuple[int, str, str]
DEVICES = {"a": "ankle-1", "p": "phone-1"}


def every(start: int, stop: int, step: int, device: str, what: str) -> list[Step]:
    return [(t, device, what) for t in range(start, stop, step)]


def run(*parts: list[Step]) -> World:
    world = World(policies=dict(PAIR_RULE_DEBOUNCE))
    for seconds, device, what in sorted((s for part in parts for s in part), key=lambda s: (s[0], s[1])):
        if what == "tick":
            world.tick(seconds)
        else:
            world.send((seconds, what), device=DEVICES[device])
    return world


def separation(world: World) -> list[tuple[str, float, tuple[str, ...]]]:
    """(type, seconds, evidence) of every device_separation event."""
    return [
        (e.type, (e.ts - T0) / 1000, tuple(e.data["evidence"]) if e.data else ())
        for e in world.events if e.rule == "device_separation"
    ]


TOGETHER_AT_0 = [(0, "a", "in"), (0, "p", "in")]
PHONE_AWAY_AT_60 = [(60, "a", "in"), (60, "p", "in_n300")]  # one check "apart": not enough to open
HEARTBEATS = every(120, 6 * 3600, 600, "a", "event:heartbeat")  # alive, resting, no fixes


@pytest.mark.parametrize(("parts", "expected"), [
    # The phone went dark right after one "apart" fix; the bracelet only sends heartbeats. No report
    # would ever check again: the tick does, and the last "apart" stands while the phone is silent.
    ([TOGETHER_AT_0, PHONE_AWAY_AT_60, HEARTBEATS, every(180, 1200, 300, "-", "tick")],
     [("alert", 180, ("distance",))]),
    # Without the tick nothing would ever raise it (documents why the tick is needed).
    ([TOGETHER_AT_0, PHONE_AWAY_AT_60, HEARTBEATS], []),
    # The phone comes back next to the bracelet: together again, cleared by two checks.
    ([TOGETHER_AT_0, PHONE_AWAY_AT_60, every(180, 900, 300, "-", "tick"),
      [(900, "a", "in"), (900, "p", "in_n50"), (960, "a", "in")]],
     [("alert", 180, ("distance",)), ("cleared", 960, ())]),
    # A bracelet left on a table for hours, sending only heartbeats, its phone link lost: the tick sees
    # 4 h without movement plus companion_lost (0.3 + 0.5) and opens at the second tick past 4 h.
    ([TOGETHER_AT_0, [(100, "p", "event:companion_lost")], HEARTBEATS, every(1800, 6 * 3600, 1800, "-", "tick")],
     [("alert", 16_200, ("companion_lost", "motionless"))]),
    # The same bracelet sending nothing at all is 脱管 (signal_lost), not separation: a silent device
    # proves nothing about where it lies.
    ([TOGETHER_AT_0, [(100, "p", "event:companion_lost")], every(1800, 6 * 3600, 1800, "-", "tick")], []),
    # Asleep at home: bracelet and phone at rest, heartbeats only, BLE link fine: ticks raise nothing.
    ([TOGETHER_AT_0, HEARTBEATS, every(120, 6 * 3600, 600, "p", "event:heartbeat"),
      every(1800, 6 * 3600, 1800, "-", "tick")], []),
])
def test_separation_on_the_clock(parts: list[list[Step]], expected: list[tuple[str, float, tuple[str, ...]]]) -> None:
    assert separation(run(*parts)) == expected


def test_a_silent_away_phone_keeps_the_alert_open_while_the_bracelet_reports() -> None:
    # Before: the "apart" decision went stale after 10 min and the alert cleared although nothing
    # showed the two together again.
    # (The second check is the bracelet's fix at 180: at 120 the phone's report was only just due.)
    world = run(TOGETHER_AT_0, PHONE_AWAY_AT_60, [(120, "a", "in")], every(180, 3600, 300, "a", "in"),
                every(200, 3600, 600, "-", "tick"))
    assert separation(world) == [("alert", 180, ("distance",))]


STRAY_AT_60 = [(60, "a", "in"), (60, "p", "in_n700")]  # one multipath fix: the phone "700 m" away
TICKS = every(15, 900, 30, "-", "tick")  # 15, 45, 75, ...: never at the same second as a fix


@pytest.mark.parametrize(("parts", "expected"), [
    # The reported defect: the tick 15 s after the stray fix re-counted its "apart" as a second check
    # and opened at 75 s. The ticks bring nothing new while the phone is not overdue; its next fix (on
    # time, 60 s later) shows the two together again. (The bracelet rests: heartbeats, no fixes.)
    ([TOGETHER_AT_0, STRAY_AT_60, [(75, "-", "tick")], HEARTBEATS, every(120, 900, 60, "p", "in_n50")], []),
    ([TOGETHER_AT_0, STRAY_AT_60, TICKS, HEARTBEATS, every(120, 900, 60, "p", "in_n50")], []),
    # The same fix, then the phone falls silent while away (the bracelet only sends heartbeats): once
    # it has missed its report (silent for sync_s + jitter_s, 75 s) the silence is the second check,
    # on the tick.
    ([TOGETHER_AT_0, STRAY_AT_60, HEARTBEATS, TICKS], [("alert", 135, ("distance",))]),
    # Two "apart" fixes in a row open on the second fix, as before; the ticks between add nothing.
    ([TOGETHER_AT_0, STRAY_AT_60, [(120, "a", "in"), (120, "p", "in_n700")], TICKS],
     [("alert", 120, ("distance",))]),
])
def test_a_tick_counts_only_new_evidence(
    parts: list[list[Step]], expected: list[tuple[str, float, tuple[str, ...]]]
) -> None:
    assert separation(run(*parts)) == expected
