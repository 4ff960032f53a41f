"""Proximity: the moving exclusion circle around a victim, and two subjects forbidden to meet.

Scripts are (seconds, device, position[, fix extras]); every step is one batch. Devices: "s1" is
ankle-1 (subject s1), "s2" is ankle-2 (subject s2), "v" is victim-1 (protects the victim from s1).
Defaults: violation ring 500 m, warning ring 1000 m, positions stale after 300 s.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from emwatch.geo.cells import cells_for, haversine_m
from emwatch.registry import ContactBanRow, DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.pair_state import PairState
from emwatch.rules.proximity import candidate_pairs, disk_k
from tests.rules.harness import T0, World

DEVICES = {"s1": "ankle-1", "s2": "ankle-2", "v": "victim-1"}
BAN = ContactBanRow("s1", "s2", radius_m=200.0, min_seconds=120.0)
Step = tuple[Any, ...]


def run(script: list[Step], bans: list[ContactBanRow] | None = None) -> World:
    world = World(bans=bans or [])
    for seconds, device, place, *extra in script:
        world.send((seconds, place, *extra), device=DEVICES[device])  # type: ignore[arg-type]
    return world


def seen(world: World, rule: str) -> list[tuple[str, str, str, float]]:
    """(type, subject, confidence, seconds) of every event of `rule`."""
    return [(e.type, e.subject_id, e.confidence, (e.ts - T0) / 1000) for e in world.events if e.rule == rule]


@pytest.mark.parametrize(("script", "expected"), [
    # No false alarm: the victim is 5 km away.
    ([(0, "s1", "in"), (0, "v", "in_n5000"), (60, "s1", "in")], []),
    # 700 m: inside the warning ring only: a possible alert.
    ([(0, "v", "in_n700"), (10, "s1", "in")], [("alert", "s1", "possible", 10)]),
    # Closing in to 300 m upgrades it in place; back out beyond the warning ring clears it.
    ([(0, "v", "in_n700"), (10, "s1", "in"), (70, "v", "in_n300"), (130, "v", "in_n1500")],
     [("alert", "s1", "possible", 10), ("confirmed", "s1", "confirmed", 70), ("cleared", "s1", "confirmed", 130)]),
    # The victim moves towards the subject (the circle moves with the victim): a violation at once.
    ([(0, "s1", "in"), (0, "v", "in_n5000"), (60, "v", "in_n50")], [("alert", "s1", "confirmed", 60)]),
    # A cell-tower fix 300 m away can only make it possible.
    ([(0, "v", "in_n300"), (10, "s1", "in", {"src": "lbs"})], [("alert", "s1", "possible", 10)]),
    # The victim's position is older than 300 s: it says nothing.
    ([(0, "v", "in_n50"), (400, "s1", "in")], []),
    # Silence does not clear: the victim's device goes quiet, the subject moves off; only a fresh
    # victim fix far away clears.
    ([(0, "v", "in_n50"), (10, "s1", "in"), (500, "s1", "in_n5000"), (520, "v", "in")],
     [("alert", "s1", "confirmed", 10), ("cleared", "s1", "confirmed", 520)]),
])
def test_victim_proximity(script: list[Step], expected: list[tuple[str, str, str, float]]) -> None:
    assert seen(run(script), "victim_proximity") == expected


@pytest.mark.parametrize(("script", "expected"), [
    # Far apart: nothing.
    ([(0, "s1", "in"), (0, "s2", "in_n5000"), (200, "s1", "in"), (200, "s2", "in_n5000")], []),
    # Passing each other briefly (60 s < 120 s): no alarm.
    ([(0, "s1", "in"), (0, "s2", "in_n50"), (60, "s2", "in_n50"), (90, "s2", "in_n1500"),
      (150, "s1", "in"), (200, "s2", "in_n1500")], []),
    # Together for 120 s: both of them are in breach; apart again clears both.
    ([(0, "s1", "in"), (0, "s2", "in_n50"), (60, "s2", "in_n50"), (120, "s1", "in"),
      (180, "s2", "in_n1500")],
     [("alert", "s1", "confirmed", 120), ("alert", "s2", "confirmed", 120),
      ("cleared", "s1", "confirmed", 180), ("cleared", "s2", "confirmed", 180)]),
    # 300 m apart is outside the ban's 200 m.
    ([(0, "s1", "in"), (0, "s2", "in_n300"), (150, "s1", "in"), (150, "s2", "in_n300")], []),
    # s2's position is older than 300 s: no meeting can be established from it.
    ([(0, "s2", "in_n50"), (400, "s1", "in"), (600, "s1", "in")], []),
])
def test_subject_contact(script: list[Step], expected: list[tuple[str, str, str, float]]) -> None:
    assert seen(run(script, [BAN]), "subject_contact") == expected


def test_no_ban_no_contact() -> None:
    world = run([(0, "s1", "in"), (0, "s2", "in_n50"), (300, "s1", "in"), (300, "s2", "in_n50")])
    assert seen(world, "subject_contact") == []


def test_alerts_carry_the_other_party() -> None:
    world = run([(0, "v", "in_n300"), (10, "s1", "in"), (20, "s2", "in_n50"), (150, "s2", "in_n50")], [BAN])
    victim = next(e for e in world.events if e.rule == "victim_proximity")
    assert victim.data == {"victim_device_id": "victim-1", "distance_m": pytest.approx(300, abs=1),
                           "ring": "violation"}
    contact = [e for e in world.events if e.rule == "subject_contact"]
    assert [(e.subject_id, e.data["other_subject_id"]) for e in contact if e.data] == [("s1", "s2"), ("s2", "s1")]


def test_victim_fixes_belong_to_no_subject() -> None:
    world = run([(0, "v", "out")])
    assert world.engine.registry.device_subject[world.engine.registry.device_index["victim-1"]] == -1
    assert world.events == []  # a victim leaving the county is nobody's zone_exit


# The neighbourhood search must find every pair within the radius (no missed contact), anywhere.
@pytest.mark.parametrize(("lat", "radius_m", "resolution"), [
    (0.0, 200.0, 7), (30.0, 1000.0, 7), (30.0, 3000.0, 7), (60.0, 500.0, 8), (-45.0, 1000.0, 6),
])
def test_grid_disk_candidates_include_every_pair_within_radius(lat: float, radius_m: float, resolution: int) -> None:
    n = 60
    rng = np.random.default_rng(int(lat * 10 + radius_m))
    subjects = [SubjectRow(f"s{i}", "j", "medium") for i in range(n)]
    devices = [DeviceRow(f"d{i}", "ankle", f"s{i}") for i in range(n)]
    bans = [ContactBanRow(f"s{i}", f"s{j}", radius_m, 0) for i in range(n) for j in range(i + 1, n)]
    registry = Registry.build([JurisdictionRow("j", None)], subjects, devices, [], 9, bans)
    state = PairState(registry, 100.0, 600_000, resolution)
    # Two thirds in a crowd a few radii across (many pairs near the limit), the rest 50-150 km off.
    spread = np.where(np.arange(n) < 2 * n // 3, 3 * radius_m, 150_000.0) / 111_195
    offset = np.where(np.arange(n) < 2 * n // 3, 0.0, 100_000 / 111_195)
    state.lat[:] = lat + offset + rng.uniform(-spread, spread, n) / 2
    state.lon[:] = 120.0 + rng.uniform(-spread, spread, n) / np.cos(np.radians(lat))
    state.pos_ts[:] = 0
    state.cell[:] = cells_for(state.lat, state.lon, resolution)
    moved = np.arange(n, dtype=np.int32)
    found = set(candidate_pairs(state, moved, 0, radius_m, 60_000).tolist())
    d = haversine_m(state.lat[state.pair_x], state.lon[state.pair_x], state.lat[state.pair_y], state.lon[state.pair_y])
    within = set(np.flatnonzero(d <= radius_m).tolist())
    assert within and within <= found
    assert len(found) < len(bans)  # and it is a neighbourhood, not every pair


@pytest.mark.parametrize("resolution", [6, 7, 8, 9])
@pytest.mark.parametrize("edges", [0.25, 1.0, 3.0])
def test_disk_k_covers_points_at_the_radius_anywhere_on_earth(resolution: int, edges: float) -> None:
    from h3.api import basic_int as h3i

    radius = edges * h3i.average_hexagon_edge_length(resolution, unit="m")
    k = disk_k(radius, resolution)
    rng = np.random.default_rng(resolution * 100 + int(edges * 4))
    lat, lon, bearing = rng.uniform(-80, 80, 1500), rng.uniform(-180, 180, 1500), rng.uniform(0, 2 * np.pi, 1500)
    lat2 = lat + radius * np.cos(bearing) / 111_195
    lon2 = lon + radius * np.sin(bearing) / 111_195 / np.cos(np.radians(lat))
    a, b = cells_for(lat, lon, resolution), cells_for(lat2, lon2, resolution)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        assert y in set(h3i.grid_disk(x, k))
