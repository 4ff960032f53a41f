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
