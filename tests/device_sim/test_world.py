"""The demo world: deterministic under a seed, with homes and devices where the spec says."""

from __future__ import annotations

import re

import numpy as np
import shapely
from sim_compliance import violations

from device_sim.world import (
    PHONE_INTERVAL_S,
    REPORT_INTERVAL_S,
    VICTIM_RADIUS_M,
    World,
    build_world,
)


def test_same_seed_same_world() -> None:
    a, b = build_world(50, seed=3), build_world(50, seed=3)
    assert a.subjects.ids == b.subjects.ids
    assert a.subjects.names == b.subjects.names
    assert a.subjects.risk_levels == b.subjects.risk_levels
    np.testing.assert_array_equal(a.subjects.home_x, b.subjects.home_x)
    np.testing.assert_array_equal(a.subjects.breacher, b.subjects.breacher)
    assert a.devices.ids == b.devices.ids
    assert a.own_zones == b.own_zones


def test_different_seed_different_world() -> None:
    a, b = build_world(50, seed=3), build_world(50, seed=4)
    assert not np.array_equal(a.subjects.home_x, b.subjects.home_x)


def test_homes_are_inside_the_county_and_outside_every_zone_they_must_avoid(world: World) -> None:
    s = world.subjects
    lon, lat = world.geography.frame.to_lonlat(s.home_x, s.home_y)
    assert shapely.contains_xy(world.geography.county, lon, lat).all()
    broken = violations(world, np.arange(len(s)), lon, lat)
    assert not any(v.any() for v in broken.values()), {k: int(v.sum()) for k, v in broken.items() if v.any()}


def test_subjects_are_spread_across_every_office(world: World) -> None:
    offices = {j["id"] for j in world.geography.jurisdictions if j["properties"]["kind"] == "office"}
    assert set(world.subjects.jurisdiction_ids) == offices
    assert set(world.subjects.risk_levels) == {"high", "medium", "low"}


def test_every_subject_wears_one_ankle_bracelet_and_some_carry_a_phone(world: World) -> None:
    d = world.devices
    assert all(re.fullmatch(r"dev-\d{6}", i) for i in d.ids)
    assert len(set(d.ids)) == len(d.ids)
    ankles = np.array([k == "ankle" for k in d.kinds])
    assert np.bincount(d.subject_index[ankles], minlength=len(world.subjects)).tolist() == [1] * len(
        world.subjects
    )
    phones = d.subject_index[~ankles]
    assert 0 < phones.size < len(world.subjects)
    assert len(set(phones.tolist())) == phones.size  # at most one phone each


def test_report_interval_follows_risk_level(world: World) -> None:
    d = world.devices
    for kind, subject, interval in zip(d.kinds, d.subject_index, d.interval_s, strict=True):
        expected = (
            PHONE_INTERVAL_S if kind == "phone" else REPORT_INTERVAL_S[world.subjects.risk_levels[subject]]
        )
        assert interval == expected


def test_own_zones_are_victim_circles_for_one_subject_far_from_home(world: World) -> None:
    assert world.own_zones, "seed 7 gives some subjects a victim zone"
    for zone in world.own_zones:
        p = zone["properties"]
        assert zone["geometry"]["type"] == "Point"
        assert p == {
            "kind": "exclusion",
            "name": p["name"],
            "radius_m": VICTIM_RADIUS_M,
            "subject_id": p["subject_id"],
            "schedule": None,
        }
        assert zone["id"] == f"zone-victim-{p['subject_id']}"
        assert p["subject_id"] in world.subjects.ids


def test_breach_fraction_picks_that_share_of_subjects() -> None:
    assert build_world(100, seed=1, breach_fraction=0.05).subjects.breacher.sum() == 5
    assert build_world(100, seed=1, breach_fraction=0.0).subjects.breacher.sum() == 0
