"""人机分离: the separation score opens device_separation only on strong or combined evidence.

Scripts are (seconds, device, fix position or "event:<type>"); device "a" is the bracelet ankle-1,
"p" its paired phone phone-1; every step is one batch. Defaults: distance beyond max(acc) + 150 m
(0.6), BLE companion_lost (0.5), one device moving for 10 min while the other rests (0.4), bracelet
motionless for 4 h (0.3); threshold 0.6.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from emwatch.rules.engine import RuleConfig
from emwatch.rules.separation import SeparationConfig
from tests.rules.harness import T0, World

Step = tuple[int, str, str]
DEVICES = {"a": "ankle-1", "p": "phone-1"}
NO_DISTANCE = SeparationConfig(distance_m=1e7)  # isolates the other evidence


def every(start: int, stop: int, step: int, device: str, what: str) -> list[Step]:
    """A device reporting `what` every `step` seconds in [start, stop)."""
    return [(t, device, what) for t in range(start, stop, step)]


def walk(start: int, device: str, places: list[str], step: int = 120) -> list[Step]:
    """A device visiting `places` one per `step` seconds."""
    return [(start + i * step, device, place) for i, place in enumerate(places)]


def steps(*parts: list[Step]) -> list[Step]:
    """All the parts' steps, in time order (the bracelet first within a second)."""
    return sorted((s for part in parts for s in part), key=lambda s: (s[0], s[1]))


def run(script: list[Step], config: SeparationConfig | None = None) -> World:
    world = World(config=RuleConfig(max_speed_kmh=1e12, separation=config or SeparationConfig()))
    for seconds, device, what in steps(script):
        world.send((seconds, what), device=DEVICES[device])
    return world


def separation(world: World) -> list[tuple[str, float]]:
    """(type, seconds) of every device_separation event so far."""
    return [(e.type, (e.ts - T0) / 1000) for e in world.events if e.rule == "device_separation"]


TOGETHER = every(0, 3600, 300, "a", "in") + every(0, 3600, 300, "p", "in_n50")
TRIP = ["in_n300", "in_n700", "in_n1500", "in_n1500", "in_n700", "in_n300"]  # out and back, at most 7 m/s


@pytest.mark.parametrize(("script", "config", "expected"), [
    # No false alarm: phone in the pocket, a GPS/Wi-Fi jitter of 50 m between them.
    (TOGETHER, SeparationConfig(), []),
    # The phone 300 m from the bracelet, both fresh: distance alone is strong enough.
    (steps(every(0, 900, 300, "a", "in"), [(0, "p", "in"), (300, "p", "in_n300")]), SeparationConfig(),
     [("alert", 300)]),
    # ...and coming back together clears it.
    (steps(every(0, 900, 300, "a", "in"), [(0, "p", "in"), (300, "p", "in_n300"), (600, "p", "in")]),
     SeparationConfig(), [("alert", 300), ("cleared", 600)]),
    # A stale phone position (older than 10 min) says nothing about distance now.
    (steps(every(900, 1800, 300, "a", "in"), [(0, "p", "in_n5000")]), SeparationConfig(), []),
    # Fixes 5 min apart: 300 m is within what either could have travelled since; no decision.
    (steps(every(0, 900, 300, "a", "in"), [(0, "p", "in"), (450, "p", "in_n300")]), SeparationConfig(), []),
    # A flaky BLE link alone is not enough...
    (steps(TOGETHER, [(100, "p", "event:companion_lost")]), SeparationConfig(), []),
    # ...nor is a subject asleep for 5 hours with the phone on the night stand...
    (steps(every(0, 5 * 3600, 300, "a", "in"), every(0, 5 * 3600, 300, "p", "in")), SeparationConfig(), []),
    # ...but a bracelet that has not moved for 4 h *and* lost its phone link was left behind.
    (steps(every(0, 5 * 3600, 300, "a", "in"), [(100, "p", "event:companion_lost")]), SeparationConfig(),
     [("alert", 4 * 3600)]),
    # companion_ok before the 4 hours are up: nothing.
    (steps(every(0, 5 * 3600, 300, "a", "in"),
           [(100, "p", "event:companion_lost"), (200, "a", "event:companion_ok")]), SeparationConfig(), []),
    # Bracelet on the table, phone walking away (distance evidence switched off): moving-while-still
    # alone (0.4) stays below the threshold; with the BLE link lost (0.9) it opens.
    (steps(every(0, 3000, 60, "a", "in"), [(0, "p", "in")], walk(600, "p", TRIP * 3)), NO_DISTANCE, []),
    (steps(every(0, 3000, 60, "a", "in"), [(0, "p", "in"), (650, "p", "event:companion_lost")],
           walk(600, "p", TRIP * 3)), NO_DISTANCE, [("alert", 1200)]),
    # The phone left at home while the bracelet goes out: the same evidence the other way round.
    (steps(every(0, 3000, 60, "p", "in"), [(0, "a", "in"), (650, "a", "event:companion_lost")],
           walk(600, "a", TRIP * 3)), NO_DISTANCE, [("alert", 1200)]),
    # Both walk off together after 5 h at a desk, the phone reporting the move first: no alarm.
    (steps(every(0, 5 * 3600, 300, "a", "in"), every(0, 5 * 3600, 300, "p", "in"),
           walk(5 * 3600, "p", TRIP), walk(5 * 3600 + 30, "a", TRIP)), SeparationConfig(), []),
])
def test_device_separation(script: list[Step], config: SeparationConfig, expected: list[tuple[str, int]]) -> None:
    assert separation(run(script, config)) == expected


@pytest.mark.parametrize(("phone_acc", "expected"), [
    (None, [("alert", 300)]),   # gps default 15 m: 300 m > 15 + 150
    (200.0, []),                # a 200 m Wi-Fi circle can explain 300 m: 300 < 200 + 150
])
def test_distance_allows_for_the_larger_error_circle(phone_acc: float | None, expected: list[tuple[str, int]]) -> None:
    world = World()
    world.send((0, "in"))
    world.send((0, "in"), device="phone-1")
    world.send((300, "in"))
    world.send((300, "in_n300", {"acc": phone_acc} if phone_acc else {}), device="phone-1")
    assert separation(world) == expected


def test_the_alert_carries_its_evidence() -> None:
    world = run(steps(every(0, 5 * 3600, 300, "a", "in"), [(0, "p", "in")]))
    world.send((17_700, "in_n700"), (17_700, "event:companion_lost"), device="phone-1")
    alert = world.events[-1]
    assert (alert.type, alert.rule, alert.device_id) == ("alert", "device_separation", "ankle-1")
    assert alert.data is not None
    assert alert.data["evidence"] == ["distance", "companion_lost", "motionless"]
    assert alert.data["phone_id"] == "phone-1"
    assert alert.data["distance_m"] == pytest.approx(700, abs=1)
    assert alert.to_message()["data"] == alert.data


def test_debounce_needs_two_checks_in_a_row() -> None:
    from emwatch.pipeline import PAIR_RULE_DEBOUNCE

    world = World(policies=dict(PAIR_RULE_DEBOUNCE))
    steps = [(0, "a", "in"), (0, "p", "in"), (60, "a", "in"), (60, "p", "in_n300"),  # one stray phone fix
             (90, "p", "in"), (120, "a", "in")]
    for seconds, device, place in steps:
        world.send((seconds, place), device=DEVICES[device])
    assert separation(world) == []
    world.send((180, "in"))
    world.send((180, "in_n300"), device="phone-1")  # apart...
    world.send((240, "in"))  # (the phone's next report is due: its silence is not news yet)
    world.send((300, "in"))  # ...and no sign of it since: the phone missed a report, the second check
    assert separation(world) == [("alert", 300)]


def test_state_survives_a_registry_reload() -> None:
    world = World(config=RuleConfig(max_speed_kmh=1e12))
    world.send((0, "in"))
    world.send((10, "event:companion_lost"), device="phone-1")
    world.engine.replace_registry(replace(world.engine.registry))
    assert world.engine.pairs.companion_lost.tolist() == [True]


def run_debounced(*parts: list[Step]) -> World:
    """The script with separation debounced as in production: two checks in a row open, two clear."""
    from emwatch.pipeline import PAIR_RULE_DEBOUNCE

    world = World(config=RuleConfig(max_speed_kmh=1e12), policies=dict(PAIR_RULE_DEBOUNCE))
    for seconds, device, what in steps(*parts):
        world.send((seconds, what), device=DEVICES[device])
    return world


BRACELET_30S = every(15, 600, 30, "a", "in")  # off the phone's beat: no report of the two at the same second
PHONE_60S = every(0, 600, 60, "p", "in_n50")


def but(part: list[Step], *changed: Step) -> list[Step]:
    """`part` with the steps at the same (second, device) as `changed` replaced by them."""
    at = {(s[0], s[1]) for s in changed}
    return [s for s in part if (s[0], s[1]) not in at] + list(changed)


@pytest.mark.parametrize(("parts", "expected"), [
    # The reported false alarm: one stray phone fix 700 m off (a multipath jump), and the bracelet's
    # next fix, compared with that same phone fix, counted as the second check of the debounce.
    ([BRACELET_30S, but(PHONE_60S, (120, "p", "in_n700"))], []),
    # ...however often the bracelet reports before the phone's next (good) fix.
    ([every(5, 600, 10, "a", "in"), but(PHONE_60S, (120, "p", "in_n700"))], []),
    # ...and with the cadences offset (the phone 5 s after the bracelet).
    ([every(0, 600, 60, "a", "in"), but(every(5, 600, 60, "p", "in_n50"), (125, "p", "in_n700"))], []),
    # The same the other way round: one stray bracelet fix, the phone reporting more often.
    ([but(every(0, 600, 60, "a", "in"), (120, "a", "in_n700")), every(0, 600, 30, "p", "in_n50")], []),
    # A bracelet's cell-tower fix off by more than its accuracy, then heartbeats only (indoors, no
    # fix): alive without a fix is not silent, and the phone's fixes meanwhile add nothing new.
    ([every(15, 120, 60, "a", "in"), [(120, "a", "in_n700")], every(180, 900, 60, "a", "event:heartbeat"),
      every(5, 900, 60, "p", "in_n50")], []),
    # Evidence that goes is no news: after 5 h at home (motionless) one stray phone fix, then the
    # subject gets up (the bracelet moves 140 m, no longer motionless) before the phone's next fix.
    ([every(0, 18_030, 300, "a", "in"), every(18_030, 18_300, 30, "a", "in2"),
      but(every(0, 18_600, 60, "p", "in_n50"), (18_000, "p", "in_n700"))], []),
    # A true separation still opens, on the next phone fix that is still away (not on the bracelet's
    # fix in between, which has nothing new to compare with).
    ([BRACELET_30S, PHONE_60S[:2], every(120, 600, 60, "p", "in_n700")], [("alert", 180)]),
    ([every(0, 600, 60, "a", "in"), every(5, 120, 60, "p", "in_n50"), every(125, 600, 60, "p", "in_n700")],
     [("alert", 185)]),
    # The bracelet walks off without its phone (left at home, reporting on).
    ([BRACELET_30S[:4], every(120, 600, 30, "a", "in_n700"), PHONE_60S], [("alert", 180)]),
    # The phone goes dark once away: its missed report (silent for sync_s + jitter_s, 75 s) is the
    # second check.
    ([BRACELET_30S, PHONE_60S[:2], [(120, "p", "in_n700")]], [("alert", 195)]),
])  # fmt: skip
def test_one_stray_fix_is_one_check(parts: list[list[Step]], expected: list[tuple[str, int]]) -> None:
    assert separation(run_debounced(*parts)) == expected


@pytest.mark.parametrize(("jitter_s", "expected"), [(15.0, []), (0.0, [("alert", 181), ("cleared", 241)])])
def test_a_report_due_with_the_other_devices_is_not_a_silence(jitter_s: float, expected: list[tuple[str, int]]) -> None:
    # Both report every 60 s, the phone's clock a second ahead and its message first; one stray phone
    # fix 1.5 km off at 121, "apart" once the bracelet's fix of 120 comes. At 181 that fix is 61 s old
    # and the next one on its way: without the allowance for jitter that looked like a missed report,
    # and the stray "apart" (still standing: 61 s between the fixes is too long to show them together)
    # counted again.
    from emwatch.pipeline import PAIR_RULE_DEBOUNCE

    config = RuleConfig(max_speed_kmh=1e12, separation=SeparationConfig(jitter_s=jitter_s))
    world = World(config=config, policies=dict(PAIR_RULE_DEBOUNCE))
    for t in range(0, 600, 60):
        world.send((t + 1, "in_n1500" if t == 120 else "in_n50"), device="phone-1")
        world.send((t, "in"))
    assert separation(world) == expected
