"""The sensor model has the statistical properties it claims, within tolerance."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import START_MS

from device_sim.noise import GPS, LBS, NoiseParams, measure
from device_sim.reporting import EVENT_TYPES
from device_sim.simulator import Simulator
from device_sim.world import build_world

N = 200_000


def draw(p: NoiseParams, sigma: float, indoors: bool = False, phone: bool = False):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    return measure(rng, p, np.full(N, sigma), np.full(N, phone), np.full(N, indoors))


@pytest.mark.parametrize("sigma", [5.0, 15.0, 30.0])
def test_open_sky_gps_error_has_the_device_sigma_and_acc_is_its_68_percent_radius(sigma: float) -> None:
    m = draw(NoiseParams.clean(), sigma)
    assert (m.src == GPS).all() and m.has_fix.all()
    assert np.std(m.dx) == pytest.approx(sigma, rel=0.02) and np.std(m.dy) == pytest.approx(sigma, rel=0.02)
    within_acc = np.hypot(m.dx, m.dy) <= m.acc
    assert within_acc.mean() == pytest.approx(0.68, abs=0.03)


def test_urban_noise_has_multipath_outliers_lbs_fallback_and_indoor_heartbeats() -> None:
    p = NoiseParams.urban()
    outdoors = draw(p, 10.0)
    far = np.hypot(outdoors.dx, outdoors.dy) > 50.0
    assert far[outdoors.src == GPS].mean() == pytest.approx(p.multipath_p, abs=0.003)
    lbs = outdoors.src == LBS
    assert lbs.mean() == pytest.approx(p.lbs_p, abs=0.002)
    assert (outdoors.acc[lbs] >= 500).all() and (outdoors.acc[lbs] <= 2_000).all()
    indoors = draw(p, 10.0, indoors=True)
    assert (~indoors.has_fix).mean() == pytest.approx(p.indoor_nofix_p, abs=0.005)
    poor = indoors.has_fix & (indoors.src == GPS) & (indoors.acc >= 30)
    assert poor.mean() == pytest.approx(p.indoor_poor_p, abs=0.01)


def test_coverage_gaps_hold_fixes_back_and_flush_them_between_live_ones() -> None:
    world = build_world(60, seed=4, breach_fraction=0.0)
    p = NoiseParams(gap_per_h=2.0)
    sim = Simulator(world, START_MS, noise=p, horizon_s=4 * 3600)
    last_ts: dict[int, int] = {}
    late = out_of_order = total = 0
    for k in range(1, 4 * 3600 + 1):
        t = START_MS + k * 1_000
        f = sim.step(t).fixes
        total += len(f)
        late += int((t - f.ts > 10_000).sum())  # more than clock skew behind: it was buffered
        for d, ts in zip(f.device_index.tolist(), f.ts.tolist(), strict=True):
            out_of_order += ts < last_ts.get(d, 0)
            last_ts[d] = max(ts, last_ts.get(d, 0))
    gap_share = p.gap_per_h * np.mean(p.gap_s) / 3600  # expected share of time in a gap
    assert late / total == pytest.approx(gap_share, rel=0.35)
    assert out_of_order > 0, "some buffered fixes go out after a newer live one"


def test_clock_skew_battery_drain_and_low_battery_events() -> None:
    world = build_world(100, seed=5, breach_fraction=0.0)
    sim = Simulator(world, START_MS, noise=NoiseParams(gap_per_h=0.0), horizon_s=12 * 3600)
    skews: list[int] = []
    lows: set[tuple[str, int]] = set()  # (subject, step) of every battery_low event, bracelet or phone
    for k in range(1, 12 * 60 + 1):  # 12 h in 1 min steps
        t = START_MS + k * 60_000
        r = sim.step(t)
        skews += (r.fixes.ts - t).tolist()
        low = r.events.device_index[r.events.type == EVENT_TYPES.index("battery_low")]
        lows |= {(world.subjects.ids[world.devices.subject_index[d]], t) for d in low.tolist()}
    assert max(abs(s) for s in skews) <= 5_000 and len(set(skews)) > 10
    # The rule is per subject: an episode starts with a device's event and holds every later one.
    episodes = [e for e in sim.ground_truth() if e["rule"] == "battery_low"]
    assert lows and {(e["subject"], e["start"]) for e in episodes} <= lows
    assert all(any(e["subject"] == s and e["start"] <= t <= e["end"] for e in episodes) for s, t in lows)
