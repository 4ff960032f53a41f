"""Scripted violations appear in the ground truth under the service's rule names; near-misses do not."""

from __future__ import annotations

from typing import Any

import pytest

from device_sim.kinds import KIND_NAMES, NEAR_MISS_KINDS, ROUTINE
from device_sim.noise import NoiseParams
from device_sim.simulator import Simulator
from device_sim.trace import DEFAULT_START_MS
from device_sim.truth import RULES
from device_sim.world import World, build_world

HOURS = 6
RULE_OF_KIND = {
    "exit": "zone_exit", "entry": "zone_entry", "victim": "victim_proximity", "meet": "subject_contact",
    "curfew": "curfew_violation", "overstay": "permit_overdue", "strap": "strap_tamper",
    "silent": "signal_lost", "left_home": "device_separation", "battery": "battery_low", "case": "case_tamper",
}  # fmt: skip


@pytest.fixture(scope="module")
def scripted() -> tuple[World, list[dict[str, Any]]]:
    world = build_world(60, seed=3, breach_fraction=0.5, near_miss_fraction=0.25)
    sim = Simulator(world, DEFAULT_START_MS, noise=NoiseParams.clean(), horizon_s=HOURS * 3600)
    for k in range(1, HOURS * 360 + 1):  # 10 s steps, from 18:00 local to midnight
        sim.step(sim.start_ms + k * 10_000)
    return world, sim.ground_truth()


@pytest.mark.parametrize(("kind", "rule"), RULE_OF_KIND.items())
def test_each_scripted_violation_is_a_ground_truth_episode_of_its_rule(
    scripted: tuple[World, list[dict[str, Any]]], kind: str, rule: str
) -> None:
    world, truth = scripted
    subjects = [world.subjects.ids[i] for i, k in enumerate(world.subjects.script) if KIND_NAMES[k] == kind]
    assert subjects
    for sid in subjects:
        mine = [e for e in truth if e["rule"] == rule and sid in (e["subject"], e.get("other_subject"))]
        assert any(not e.get("brief") for e in mine), (sid, kind)


def test_near_miss_subjects_have_no_episode(scripted: tuple[World, list[dict[str, Any]]]) -> None:
    world, truth = scripted
    near = {world.subjects.ids[i] for i, k in enumerate(world.subjects.script) if k in NEAR_MISS_KINDS}
    assert near and not [e for e in truth if e["subject"] in near and e["rule"] != "battery_low"]


def test_routine_subjects_only_have_device_episodes(scripted: tuple[World, list[dict[str, Any]]]) -> None:
    world, truth = scripted
    routine = {world.subjects.ids[i] for i, k in enumerate(world.subjects.script) if k == ROUTINE}
    rules = {e["rule"] for e in truth if e["subject"] in routine}
    assert rules <= {"battery_low", "curfew_violation"}  # a late commute home may overrun the curfew


def test_every_episode_uses_a_service_rule_name_and_is_well_formed(
    scripted: tuple[World, list[dict[str, Any]]],
) -> None:
    _, truth = scripted
    for e in truth:
        assert e["rule"] in RULES and e["start"] <= e["end"]
        assert set(e) <= {"subject", "rule", "start", "end", "zone_id", "other_subject", "brief", "open"}
