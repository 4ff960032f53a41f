"""The simulator: deterministic, routine subjects stay compliant, breachers leave and come back."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import START_MS, Trace
from sim_compliance import violations

from device_sim.movement import Simulator
from device_sim.world import World, build_world


def run(world: World, seed: int, steps: int, step_ms: int = 1_000) -> list[tuple[np.ndarray, ...]]:
    sim = Simulator(world, START_MS, seed=seed)
    out: list[tuple[np.ndarray, ...]] = []
    for k in range(1, steps + 1):
        f = sim.step(START_MS + k * step_ms)
        out.append((f.device_index, f.ts, f.lon, f.lat, f.acc, f.src, f.batt, f.seq))
    return out


def test_same_seed_same_fixes() -> None:
    world = build_world(40, seed=2, breach_fraction=0.2)
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


def test_every_breacher_breaks_its_zone_and_comes_back(
    world: World, simulator_trace: tuple[Simulator, Trace]
) -> None:
    sim, trace = simulator_trace
    broken = violations(world, trace.subject_index, trace.lon, trace.lat)
    for subject in np.flatnonzero(world.subjects.breacher):
        zone = sim.movement.breach_zone[subject]
        assert zone is not None
        mine = trace.subject_index == subject
        breaking = broken[zone][mine]
        assert breaking.any(), f"{world.subjects.ids[subject]} never broke {zone}"
        first = int(np.argmax(breaking))
        assert not breaking[first:].all(), f"{world.subjects.ids[subject]} never came back from {zone}"


def test_some_breachers_leave_the_county_and_some_enter_an_exclusion_zone(
    simulator_trace: tuple[Simulator, Trace],
) -> None:
    zones = {z for z in simulator_trace[0].movement.breach_zone if z is not None}
    assert "zone-demo-county" in zones
    assert zones - {"zone-demo-county"}


@pytest.mark.parametrize("risk", ["high", "medium", "low"])
def test_ankle_bracelets_report_at_their_risk_interval(risk: str) -> None:
    world = build_world(60, seed=11)
    sim = Simulator(world, START_MS)
    seen: dict[int, list[int]] = {}
    for k in range(1, 10 * 60 + 1):  # ten minutes in 1 s steps
        f = sim.step(START_MS + k * 1_000)
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
    phases = {seen[d][0] % expected_ms for d in ankles}
    if risk != "high" or len(ankles) > 3:
        assert len(phases) > 1, "devices are spread over the interval, not all at once"


def test_phones_report_every_minute_and_sequence_numbers_count_up(world: World) -> None:
    sim = Simulator(world, START_MS)
    seqs: dict[int, list[int]] = {}
    for k in range(1, 5 * 60 + 1):
        f = sim.step(START_MS + k * 1_000)
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
