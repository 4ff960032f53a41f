"""The simulator: deterministic, routine subjects stay compliant, scripted ones really violate."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import NO_GAPS, START_MS, Trace
from sim_compliance import violations

from device_sim.kinds import ENTRY, EXIT
from device_sim.simulator import Simulator
from device_sim.world import World, build_world


def run(world: World, seed: int, steps: int, step_ms: int = 1_000) -> list[tuple[np.ndarray, ...]]:
    sim = Simulator(world, START_MS, seed=seed)
    out: list[tuple[np.ndarray, ...]] = []
    for k in range(1, steps + 1):
        r = sim.step(START_MS + k * step_ms)
        f, e = r.fixes, r.events
        out.append((f.device_index, f.ts, f.lon, f.lat, f.acc, f.src, f.batt, f.seq, e.device_index, e.type))
    return out


def test_same_seed_same_messages() -> None:
    world = build_world(40, seed=2, breach_fraction=0.4, near_miss_fraction=0.2)
    for a, b in zip(run(world, 5, 600, 5_000), run(world, 5, 600, 5_000), strict=True):
        for column_a, column_b in zip(a, b, strict=True):
            np.testing.assert_array_equal(column_a, column_b)


def test_different_seed_different_fixes() -> None:
    world = build_world(40, seed=2)
    a, b = run(world, 5, 120), run(world, 6, 120)
    assert any(not np.array_equal(x[2], y[2]) for x, y in zip(a, b, strict=True))


def test_fixes_while_on_routine_never_break_a_zone(world: World, trace: Trace) -> None:
    routine = trace.routine
    broken = violations(world, trace.subject_index[routine], trace.lon[routine], trace.lat[routine])
    assert {zone: int(v.sum()) for zone, v in broken.items() if v.any()} == {}


def test_non_breachers_are_always_on_routine(world: World, trace: Trace) -> None:
    assert trace.routine[~world.subjects.breacher[trace.subject_index]].all()


@pytest.mark.parametrize(("kind", "rule"), [(EXIT, "zone_exit"), (ENTRY, "zone_entry")])
def test_scripted_zone_breaches_show_in_the_fixes_and_come_back(
    world: World, simulator_trace: tuple[Simulator, Trace], kind: int, rule: str
) -> None:
    sim, trace = simulator_trace
    broken = violations(world, trace.subject_index, trace.lon, trace.lat)
    truth = [e for e in sim.ground_truth() if e["rule"] == rule and not e.get("brief")]
    subjects = np.flatnonzero(world.subjects.script == kind)
    assert subjects.size
    for subject in subjects:
        sid = world.subjects.ids[subject]
        mine = [e for e in truth if e["subject"] == sid]
        assert mine and not mine[0].get("open"), f"{sid} never {rule} or never came back"
        breaking = broken[mine[0]["zone_id"]][trace.subject_index == subject]
        assert breaking.any() and not breaking[int(np.argmax(breaking)):].all()


@pytest.mark.parametrize("risk", ["high", "medium", "low"])
def test_ankle_bracelets_report_at_their_risk_interval(risk: str) -> None:
    world = build_world(60, seed=11, breach_fraction=0.0)
    sim = Simulator(world, START_MS, noise=NO_GAPS)
    seen: dict[int, list[int]] = {}
    for k in range(1, 10 * 60 + 1):  # ten minutes in 1 s steps
        f = sim.step(START_MS + k * 1_000).fixes
        for d, ts in zip(f.device_index.tolist(), f.ts.tolist(), strict=True):
            seen.setdefault(d, []).append(ts)
    expected_ms = {"high": 10_000, "medium": 30_000, "low": 60_000}[risk]
    ankles = [
        d
        for d, kind in enumerate(world.devices.kinds)
        if kind == "ankle" and world.subjects.risk_levels[world.devices.subject_index[d]] == risk
    ]
    assert ankles
    for d in ankles:
        gaps = set(np.diff(seen[d]).tolist())
        assert gaps == {expected_ms}, (world.devices.ids[d], gaps)
        assert len(seen[d]) == 600_000 // expected_ms


def test_phones_report_every_minute_and_sequence_numbers_count_up(world: World) -> None:
    sim = Simulator(world, START_MS, noise=NO_GAPS)
    seqs: dict[int, list[int]] = {}
    for k in range(1, 5 * 60 + 1):
        f = sim.step(START_MS + k * 1_000).fixes
        for d, seq in zip(f.device_index.tolist(), f.seq.tolist(), strict=True):
            seqs.setdefault(d, []).append(seq)
    phones = [d for d, kind in enumerate(world.devices.kinds) if kind == "phone"]
    for d in phones:
        assert seqs[d] == list(range(1, 6))


def test_time_must_not_go_backwards(world: World) -> None:
    sim = Simulator(world, START_MS)
    sim.step(START_MS + 5_000)
    with pytest.raises(ValueError, match="backwards"):
        sim.step(START_MS + 1_000)
