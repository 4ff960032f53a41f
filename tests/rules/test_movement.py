"""Impossible movement marks a fix suspect: location_anomaly instead of a zone alert based on it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emwatch.geo.cells import haversine_m
from emwatch.model import FixBatch, FixColumns
from emwatch.rules.engine import RuleConfig
from emwatch.rules.movement import suspect_fixes
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


def _one_at_a_time(device: np.ndarray, fresh: np.ndarray, lat: np.ndarray, lon: np.ndarray, ts: np.ndarray,
                   acc: np.ndarray, prev: dict[int, tuple[float, float, int, float]], max_mps: float) -> list[bool]:
    """The specification, fix by fix: judged against the device's last trusted fresh fix."""
    verdicts = []
    ref = dict(prev)
    for r in range(len(device)):
        d = int(device[r])
        if not fresh[r]:
            verdicts.append(False)
            continue
        last = ref.get(d)
        bad = False
        if last is not None and not math.isnan(last[0]):
            gap = float(haversine_m(lat[r], lon[r], last[0], last[1])) - acc[r] - (0.0 if math.isnan(last[3]) else last[3])
            bad = gap / max((ts[r] - last[2]) / 1000.0, 1.0) > max_mps
        verdicts.append(bad)
        if not bad:
            ref[d] = (float(lat[r]), float(lon[r]), int(ts[r]), float(acc[r]))
    return verdicts


@pytest.mark.parametrize("seed", range(5))
def test_a_batch_with_many_jumps_gets_the_verdicts_of_one_fix_at_a_time(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, devices = 3_000, 200
    device = np.sort(rng.integers(0, devices, n)).astype(np.int32)
    ts = np.cumsum(rng.integers(0, 20_000, n)).astype(np.int64)  # sorted within each device
    jump = rng.random(n) < 0.2  # one fix in five thrown ~100 km away (jamming, spoofing)
    lat = 30.0 + rng.normal(0, 0.001, n) + jump * rng.choice([-1.0, 1.0], n)
    lon = 120.0 + rng.normal(0, 0.001, n)
    acc = rng.choice([5.0, 50.0, 400.0], n)
    fresh = rng.random(n) < 0.9
    prev_lat = np.where(rng.random(devices) < 0.8, 30.0, np.nan)  # some devices never seen before
    prev_lon = np.full(devices, 120.0)
    prev_ts = np.full(devices, -60_000, np.int64)
    prev_acc = np.where(rng.random(devices) < 0.5, 20.0, np.nan)  # restored without accuracy
    cols = FixColumns([f"d{d}" for d in device], ts, lat, lon, acc.astype(np.float32),
                      np.zeros(n, np.int8), np.full(n, -1, np.int16), np.zeros(n, np.int64))
    batch = FixBatch(cols, device, device, np.zeros(n, np.uint64), fresh, np.zeros(n, bool))
    got = suspect_fixes(batch, acc, prev_lat, prev_lon, prev_ts, prev_acc, 250 / 3.6)
    prev = {d: (prev_lat[d], prev_lon[d], int(prev_ts[d]), prev_acc[d]) for d in range(devices)}
    expected = _one_at_a_time(device, fresh, lat, lon, ts, acc, prev, 250 / 3.6)
    assert got.tolist() == expected
    assert 0.1 < got.mean() < 0.5  # many jumps were judged suspect, and many fixes trusted
