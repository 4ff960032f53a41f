"""Court orders set up for the scripts: curfews moved with a replay's shift, permits, victims, bans."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import shapely

from device_sim.kinds import MEET, OVERSTAY, PERMITTED
from device_sim.orders import CURFEW_HOME_RADIUS_M, build_orders, curfew_window, permit_rows
from device_sim.replay import rebase_shift_ms
from device_sim.scripts import in_curfew
from device_sim.simulator import Simulator
from device_sim.trace import DEFAULT_START_MS
from device_sim.victims import VictimReporter
from device_sim.world import VICTIM_INTERVAL_S, World, build_world
from emwatch.geo.geojson import zones_from_geojson
from emwatch.rules.schedule import ScheduleTable

HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(40, seed=1, breach_fraction=0.5, near_miss_fraction=0.25, namespace="o-")


@pytest.mark.parametrize("shift_ms", [0, 60_000, 7 * HOUR_MS + 13 * 60_000, -(3 * 86_400_000 + 5 * 60_000)])
def test_a_curfew_set_up_with_a_shift_is_in_force_exactly_when_the_trace_says(world: World, shift_ms: int) -> None:
    orders = build_orders(world, [], shift_ms)
    zone = zones_from_geojson({"type": "FeatureCollection", "features": orders.zones[:1]})[0]
    table = ScheduleTable.build([zone.schedule])
    trace_times = DEFAULT_START_MS + np.arange(0, 30 * HOUR_MS, 7 * 60_000, dtype=np.int64)
    service = table.active(np.zeros(len(trace_times), dtype=np.int32), trace_times + shift_ms)
    assert service.tolist() == [in_curfew(float(t)) for t in trace_times]


def test_every_curfew_subject_gets_a_home_circle_and_nobody_else(world: World) -> None:
    zones = build_orders(world, []).zones
    subjects = [world.subjects.ids[i] for i in np.flatnonzero(world.subjects.curfew)]
    assert [z["properties"]["subject_id"] for z in zones] == subjects
    assert {z["properties"]["radius_m"] for z in zones} == {CURFEW_HOME_RADIUS_M}
    assert curfew_window(0) == ("22:00", "06:00") and curfew_window(-HOUR_MS) == ("21:00", "05:00")


def test_a_shift_that_is_not_whole_minutes_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="whole minutes"):
        build_orders(world, [], 1_000)
    assert all(rebase_shift_ms(0, HOUR_MS, speed, 1_717_000_000_123) % 60_000 == 0 for speed in (0, 1, 50))


def test_permits_cover_the_whole_trip_and_move_with_the_shift(world: World) -> None:
    sim = Simulator(world, DEFAULT_START_MS, horizon_s=6 * 3600)
    rows = permit_rows(world, sim.plan)
    kinds = {world.subjects.ids[i]: int(k) for i, k in enumerate(sim.plan.kind)}
    assert rows and {kinds[r["subject"]] for r in rows} <= {PERMITTED, OVERSTAY}
    orders = build_orders(world, rows, shift_ms=HOUR_MS)
    destinations = {z["id"]: z for z in orders.zones if z["properties"].get("role") == "permit_destination"}
    frame = world.geography.frame
    for row, body in zip(rows, orders.permits, strict=True):
        assert body["zone_ids"][0] in destinations and body["grace_s"] == 0
        assert body["starts_at"].startswith("2024-06-03") and body["subject_id"] == row["subject"]
        i = world.subjects.ids.index(row["subject"])
        zone = destinations[body["zone_ids"][0]]
        cx, cy = frame.to_xy(np.array(zone["geometry"]["coordinates"][:1]),
                             np.array(zone["geometry"]["coordinates"][1:]))  # fmt: skip
        circle = shapely.Point(cx[0], cy[0]).buffer(zone["properties"]["radius_m"])
        trip = shapely.LineString([(world.subjects.home_x[i], world.subjects.home_y[i]),
                                   (sim.plan.target_x[i], sim.plan.target_y[i])])  # fmt: skip
        assert circle.buffer(-500).contains(trip)  # wander and GPS noise stay well inside


def test_victims_devices_and_no_contact_orders(world: World) -> None:
    orders = build_orders(world, [])
    protected = [world.subjects.ids[i] for i in np.flatnonzero(~np.isnan(world.subjects.victim_x))]
    assert sorted(d["protects_subject_id"] for d in orders.victim_devices) == protected
    assert all(d["kind"] == "victim" and "subject_id" not in d for d in orders.victim_devices)
    meet = {world.subjects.ids[i] for i in np.flatnonzero(world.subjects.script == MEET)}
    assert {s for b in orders.contact_bans for s in (b["subject_a"], b["subject_b"])} == meet


def test_victims_devices_report_their_home_on_schedule(world: World) -> None:
    reporter = VictimReporter(world, np.random.default_rng(0), DEFAULT_START_MS)
    messages = [m for t in range(1, 601) for m in reporter.messages(DEFAULT_START_MS + t * 1000)]
    assert len(messages) == len(world.victims) * 600 // VICTIM_INTERVAL_S
    frame, s = world.geography.frame, world.subjects
    for topic, raw in messages:
        device = topic.split("/")[3]
        k = world.victims.ids.index(device)
        fix = orjson.loads(raw)
        x, y = frame.to_xy(np.array([fix["lon"]]), np.array([fix["lat"]]))
        i = world.victims.subject_index[k]
        assert np.hypot(x[0] - s.victim_x[i], y[0] - s.victim_y[i]) < 60 and fix["src"] == "gps"
