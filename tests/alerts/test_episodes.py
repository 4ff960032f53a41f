"""Alert episodes: one alert per breach, a paired clear, nothing in between; debounce against jitter."""

from __future__ import annotations

import pytest

from emwatch.alerts.episodes import Debounce, EpisodeKey
from tests.rules.harness import World


def fixes(positions: list[str]) -> list[tuple[int, str]]:
    return [(i, p) for i, p in enumerate(positions)]


@pytest.mark.parametrize("batch_size", [1, 3, 10])
@pytest.mark.parametrize(("positions", "expected"), [
    (["in", "in", "in"], []),
    (["in", "out", "out", "out", "in"], [("alert", "zone_exit", "county", 1), ("cleared", "zone_exit", "county", 4)]),
    (["out"] * 10, [("alert", "zone_exit", "county", 0)]),
    (["in", "school", "school", "in"], [("alert", "zone_entry", "school", 1), ("cleared", "zone_entry", "school", 3)]),
    (["victim", "in"], [("alert", "zone_entry", "victim", 0), ("cleared", "zone_entry", "victim", 1)]),
    (["out", "in", "out"], [("alert", "zone_exit", "county", 0), ("cleared", "zone_exit", "county", 1),
                            ("alert", "zone_exit", "county", 2)]),
])
def test_episodes_without_debounce(positions: list[str], expected: list[tuple[str, str, str, int]], batch_size: int) -> None:
    world = World()
    for start in range(0, len(positions), batch_size):
        world.send(*fixes(positions)[start:start + batch_size])
    assert world.summary() == expected


ZONE = Debounce(open_checks=3, open_ms=0, clear_checks=3, clear_ms=0)


@pytest.mark.parametrize(("positions", "expected"), [
    (["in", "in", "out", "out", "out"], [("alert", "zone_exit", "county", 4)]),  # opens on the 3rd fix outside
    (["in", "out", "in", "out", "in", "out", "out"], []),                         # boundary jitter: no alert
    (["out", "out", "out", "in", "out", "in", "in"], [("alert", "zone_exit", "county", 2)]),  # no flapping clear
    (["out", "out", "out", "in", "in", "in"], [("alert", "zone_exit", "county", 2), ("cleared", "zone_exit", "county", 5)]),
])
def test_debounce_by_consecutive_fixes(positions: list[str], expected: list[tuple[str, str, str, int]]) -> None:
    world = World(policies={"zone_exit": ZONE})
    for fix in fixes(positions):
        world.send(fix)
    assert world.summary() == expected


def test_debounce_by_time_in_breach() -> None:
    world = World(policies={"zone_exit": Debounce(open_checks=100, open_ms=60_000, clear_checks=100, clear_ms=120_000)})
    for seconds, position in [(0, "out"), (30, "out"), (61, "out"), (100, "in"), (200, "in"), (221, "in")]:
        world.send((seconds, position))
    assert world.summary() == [("alert", "zone_exit", "county", 61), ("cleared", "zone_exit", "county", 221)]


def test_shared_school_clears_when_the_fix_is_far_from_it() -> None:
    # "out" is nowhere near the school's H3 cover, so only the open episode brings the pair back.
    world = World()
    world.send((0, "school"), (1, "out"))
    assert sorted(world.summary()) == sorted([
        ("alert", "zone_entry", "school", 0), ("cleared", "zone_entry", "school", 1), ("alert", "zone_exit", "county", 1),
    ])


def test_an_episode_open_before_a_restart_is_not_opened_again() -> None:
    world = World(open_keys=[EpisodeKey("s1", "zone_exit", "county")])
    world.send(*fixes(["out", "out", "in"]))
    assert world.summary() == [("cleared", "zone_exit", "county", 2)]


def test_a_phone_does_not_trigger_zone_rules() -> None:
    world = World()
    world.send(*fixes(["out", "school"]), device="phone-1")
    assert world.summary() == []


def test_an_older_fix_arriving_late_does_not_flip_the_current_state() -> None:
    world = World()
    world.send((2, "out"))
    world.send((1, "in"))
    assert [e[0] for e in world.summary()] == ["alert"]
