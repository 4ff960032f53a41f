"""脱管: a bracelet silent past its risk level's limit raises signal_lost; hearing from it clears it."""

from __future__ import annotations

import pytest

from emwatch.rules.engine import RuleConfig
from tests.rules.harness import World

LIMITS = (("high", 300.0), ("medium", 900.0), ("low", 1800.0))  # the test subject is high risk: 300 s


@pytest.mark.parametrize(("script", "expected"), [
    ([("fix", 0), ("tick", 299)], []),
    ([("fix", 0), ("tick", 301)], [("alert", 301)]),
    ([("fix", 0), ("tick", 301), ("tick", 400), ("tick", 900)], [("alert", 301)]),  # one episode
    ([("fix", 0), ("tick", 301), ("fix", 350)], [("alert", 301), ("cleared", 350)]),
    ([("fix", 0), ("event", 200), ("tick", 450)], []),      # a heartbeat is a sign of life too
    ([("tick", 10_000)], []),                                # never heard from: not yet monitored
])
def test_signal_lost(script: list[tuple[str, int]], expected: list[tuple[str, int]]) -> None:
    world = World(config=RuleConfig(max_speed_kmh=1e12, silence_limit_s=LIMITS))
    for step, seconds in script:
        if step == "tick":
            world.tick(seconds)
        elif step == "fix":
            world.send((seconds, "in"))
        else:
            world.send((seconds, "event:heartbeat"))
    assert [(e.type, (e.ts - 1_000_000_000) // 1000) for e in world.events if e.rule == "signal_lost"] == expected


def test_a_silent_phone_is_not_signal_lost() -> None:
    world = World(config=RuleConfig(max_speed_kmh=1e12, silence_limit_s=LIMITS))
    world.send((0, "in"), device="phone-1")
    assert world.tick(10_000) == []


def test_state_restored_after_a_restart_still_times_out() -> None:
    world = World(config=RuleConfig(max_speed_kmh=1e12, silence_limit_s=LIMITS))
    world.engine.seed([("ankle-1", 1_000_000_000, 30.02, 120.02), ("unknown-device", 1, 0.0, 0.0)])
    assert [(e.type, e.rule) for e in world.tick(301)] == [("alert", "signal_lost")]
