"""Impossible movement marks a fix suspect: location_anomaly instead of a zone alert based on it."""

from __future__ import annotations

import pytest

from emwatch.rules.engine import RuleConfig
from tests.rules.harness import World


@pytest.mark.parametrize(("fixes", "expected"), [
    ([(0, "in"), (60, "in2")], []),                                       # ~150 m in a minute: walking
    ([(0, "in"), (10, "far")], [("alert", "location_anomaly", "")]),      # 150 km in 10 s
    ([(0, "in"), (10, "far"), (20, "in2")],                               # the jump, then a plausible fix
     [("alert", "location_anomaly", ""), ("cleared", "location_anomaly", "")]),
    ([(0, "in"), (3 * 3600, "far")], [("alert", "zone_exit", "county")]),  # 150 km in 3 h: a real trip
])
def test_impossible_movement(fixes: list[tuple[int, str]], expected: list[tuple[str, str, str]]) -> None:
    world = World(config=RuleConfig(max_speed_kmh=250))
    for fix in fixes:
        world.send(fix)
    assert [(e.type, e.rule, e.zone_id or "") for e in world.events] == expected


def test_a_suspect_fix_in_the_same_batch_raises_no_zone_alert() -> None:
    world = World(config=RuleConfig(max_speed_kmh=250))
    world.send((0, "in"), (10, "school"))  # 12 km in 10 s, straight into the school
    assert [e.rule for e in world.events] == ["location_anomaly"]


def test_error_circles_are_allowed_for() -> None:
    world = World(config=RuleConfig(max_speed_kmh=250))
    world.send((0, "in", {"acc": 5.0}), (1, "in2", {"src": "lbs"}))  # 140 m jump within a 1 km LBS circle
    assert world.events == []


# Each fix is judged against the device's last *trusted* fix, with that fix's own error circle, in
# whatever batches the fixes come: `batches` splits the same fixes differently.
GOOD = {"acc": 5.0}
POOR = {"acc": 400.0}  # an indoor fix 400 m off would still be plausible


@pytest.mark.parametrize("batches", [[1, 1, 1], [3], [2, 1], [1, 2]])
@pytest.mark.parametrize(("fixes", "expected"), [
    # A poor indoor fix 700 m off, between two good ones 10 s apart: 300 m beyond its 400 m circle
    # in 10 s is 108 km/h, plausible; taking the poor fix as exact (70 m/s = 252 km/h) was not.
    ([(0, "in", GOOD), (10, "in_n700", POOR), (20, "in", GOOD)], []),
    # An LBS fix (1 km circle) between two good fixes: nothing is impossible.
    ([(0, "in", GOOD), (10, "in_n1500", {"src": "lbs"}), (20, "in", GOOD)], []),
    # A jump, then a fix back where it was: only the jump is suspect (judged against the first fix,
    # not against the suspect one), and it clears the anomaly.
    ([(0, "in", GOOD), (10, "far", GOOD), (20, "in2", GOOD)],
     [("alert", "location_anomaly", ""), ("cleared", "location_anomaly", "")]),
    # Two jumps in a row to the same far place: both are judged against the last trusted fix.
    ([(0, "in", GOOD), (10, "far", GOOD), (20, "far", GOOD)], [("alert", "location_anomaly", "")]),
])  # fmt: skip
def test_a_fix_is_judged_against_the_last_trusted_fix_in_any_batching(
    fixes: list[tuple[int, str, dict[str, object]]], expected: list[tuple[str, str, str]], batches: list[int]
) -> None:
    world = World(config=RuleConfig(max_speed_kmh=250))
    start = 0
    for size in batches:
        world.send(*fixes[start:start + size])
        start += size
    assert [(e.type, e.rule, e.zone_id or "") for e in world.events] == expected


def test_the_error_circle_of_the_last_fix_survives_into_the_next_batch() -> None:
    world = World(config=RuleConfig(max_speed_kmh=250))
    world.send((0, "in_n700", POOR))
    assert world.engine.state.last_acc[0] == 400.0
    world.send((5, "in", GOOD))  # 700 m in 5 s is 504 km/h, but 300 m beyond a 400 m circle is walkable
    assert world.events == []


def test_a_restored_position_keeps_its_error_circle() -> None:
    world = World(config=RuleConfig(max_speed_kmh=250))
    world.engine.seed([("ankle-1", 1_000_000_000, 30.02 + 700 / 111_195, 120.02, 400.0)])
    world.send((5, "in", GOOD))
    assert world.events == []
