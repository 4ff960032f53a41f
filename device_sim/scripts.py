"""Scripted behaviour: who commits which violation or near-miss, and when and where (a `Plan`).

A subject has at most one script. Violations are written to the ground truth by `truth.py` from the
true state they produce (not from this intention); near-misses are behaviour that must NOT alert.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from device_sim.geo import FloatArray
from device_sim.kinds import (
    BOUNDARY_WALK,
    CURFEW,
    ENTRY,
    EXIT,
    HOME_DRIFT,
    LEFT_HOME,
    OVERSTAY,
    PERMITTED,
    ROUTINE,
    SILENT,
    STRAP,
    VICTIM,
    contact_pairs,
)
from device_sim.world import BoolArray, IntArray, World

EXIT_OVERSHOOT_M = 1_500.0  # how far past the county border an exit goes
VICTIM_APPROACH_M = 350.0  # inside the 500 m proximity radius, outside the 200 m exclusion circle
BOUNDARY_INSIDE_M = (150.0, 250.0)  # a boundary walk keeps this far inside the county
BOUNDARY_WALK_M = 1_200.0
CURFEW_LOCAL_H = (22.0, 6.0)  # 22:00-06:00 local time (UTC+8)
UTC_OFFSET_H = 8.0


@dataclass(frozen=True, slots=True)
class Plan:
    """When and where each subject's script happens; arrays indexed by subject, NaN/-1 when unused."""

    kind: IntArray
    start_ms: FloatArray  # departure from home (excursions) or the device effect's time
    end_ms: FloatArray  # device effects (strap, silent) end; NaN: never within the run
    target_x: FloatArray
    target_y: FloatArray
    via_x: FloatArray  # boundary walk's second point
    via_y: FloatArray
    dwell_s: FloatArray  # at the target
    speed: FloatArray  # m/s on every leg of the excursion
    permit_start_ms: FloatArray
    permit_end_ms: FloatArray
    partner: IntArray  # the other subject of a meeting

    def has(self, *kinds: int) -> BoolArray:
        return np.isin(self.kind, kinds)


def local_hour(t_ms: float) -> float:
    """Local (UTC+8) time of day in hours, 0 <= h < 24."""
    return float((t_ms / 3_600_000 + UTC_OFFSET_H) % 24)


def in_curfew(t_ms: float) -> bool:
    """Whether local time is within the curfew hours (which wrap past midnight)."""
    h = local_hour(t_ms)
    return h >= CURFEW_LOCAL_H[0] or h < CURFEW_LOCAL_H[1]


def next_local_hour_ms(t_ms: float, hour: float) -> float:
    """The first epoch ms >= t_ms at which local (UTC+8) time is `hour`:00."""
    day_ms = 86_400_000
    offset = ((hour - UTC_OFFSET_H) % 24) * 3_600_000
    base = (t_ms - offset) // day_ms * day_ms + offset
    return float(base if base >= t_ms else base + day_ms)


def make_plan(world: World, rng: np.random.Generator, start_ms: int, horizon_s: float) -> Plan:
    """Draw start times, targets, dwell, speed and permits for every scripted subject."""
    s, geo = world.subjects, world.geography
    n, kind = len(s), s.script
    nan = np.full(n, np.nan)
    start = start_ms + rng.uniform(0.08, 0.5, n) * horizon_s * 1000
    curfew_start = next_local_hour_ms(start_ms, CURFEW_LOCAL_H[0])
    start = np.where(kind == CURFEW, curfew_start + rng.uniform(15, 45, n) * 60_000, start)
    start = np.where(kind == HOME_DRIFT, float(start_ms), start)
    tx, ty = nan.copy(), nan.copy()
    # Exit, overstay, permitted trip: past the nearest border point.
    home = shapely.points(s.home_x, s.home_y)
    nearest = shapely.get_point(shapely.shortest_line(geo.county_xy.boundary, home), 0)
    border = shapely.get_coordinates(nearest)
    out = border - np.column_stack([s.home_x, s.home_y])
    out /= np.maximum(np.hypot(out[:, 0], out[:, 1]), 1.0)[:, None]
    exit_xy = border + out * EXIT_OVERSHOOT_M
    for _ in range(5):
        inside = shapely.contains_xy(geo.county_xy, exit_xy[:, 0], exit_xy[:, 1])
        exit_xy[inside] += out[inside] * EXIT_OVERSHOOT_M
    trip = np.isin(kind, (EXIT, OVERSTAY, PERMITTED))
    tx, ty = np.where(trip, exit_xy[:, 0], tx), np.where(trip, exit_xy[:, 1], ty)
    ex, ey = entry_targets(world)
    entry = kind == ENTRY
    tx, ty = np.where(entry, ex, tx), np.where(entry, ey, ty)
    # Victim approach: on the line victim -> home, VICTIM_APPROACH_M from the victim.
    to_home = np.column_stack([s.home_x - s.victim_x, s.home_y - s.victim_y])
    to_home /= np.maximum(np.hypot(to_home[:, 0], to_home[:, 1]), 1.0)[:, None]
    victim = kind == VICTIM
    tx = np.where(victim, s.victim_x + to_home[:, 0] * VICTIM_APPROACH_M, tx)
    ty = np.where(victim, s.victim_y + to_home[:, 1] * VICTIM_APPROACH_M, ty)
    # Curfew breach and bracelet-left-at-home trips go to an ordinary activity point (a safe leg).
    errand = np.isin(kind, (CURFEW, LEFT_HOME))
    tx, ty = np.where(errand, s.activity_x[:, 0], tx), np.where(errand, s.activity_y[:, 0], ty)
    # Boundary walk: towards the nearest border point, stopping well inside, then along it.
    depth = rng.uniform(*BOUNDARY_INSIDE_M, n)
    walk = kind == BOUNDARY_WALK
    ax, ay = border[:, 0] - out[:, 0] * depth, border[:, 1] - out[:, 1] * depth
    tx, ty = np.where(walk, ax, tx), np.where(walk, ay, ty)
    vx, vy = _along_boundary(world, ax, ay, out, depth, walk)
    # Meetings: the midpoint of the two homes, both leaving at the first one's start.
    pairs = contact_pairs(kind)
    partner = np.full(n, -1, dtype=np.int64)
    partner[pairs[:, 0]], partner[pairs[:, 1]] = pairs[:, 1], pairs[:, 0]
    if pairs.size:
        mx = (s.home_x[pairs[:, 0]] + s.home_x[pairs[:, 1]]) / 2
        my = (s.home_y[pairs[:, 0]] + s.home_y[pairs[:, 1]]) / 2
        tx[pairs.ravel()], ty[pairs.ravel()] = np.repeat(mx, 2), np.repeat(my, 2)
        start[pairs[:, 1]] = start[pairs[:, 0]]
    length = np.hypot(tx - s.home_x, ty - s.home_y)
    speed = np.where(length > 1_500.0, rng.uniform(6.0, 12.0, n), rng.uniform(1.0, 1.6, n))
    dwell = np.select(
        [entry, np.isin(kind, (EXIT, OVERSTAY, PERMITTED)), walk],
        [rng.uniform(5, 15, n) * 60, rng.uniform(10, 25, n) * 60, rng.uniform(1, 3, n) * 60],
        rng.uniform(20, 40, n) * 60,
    )
    if pairs.size:  # both stay until the later one has been there D minutes
        arrive = start + length / speed * 1000
        together_ms = rng.uniform(10, 20, len(pairs)) * 60_000
        leave = np.maximum(arrive[pairs[:, 0]], arrive[pairs[:, 1]]) + together_ms
        dwell[pairs[:, 0]] = (leave - arrive[pairs[:, 0]]) / 1000
        dwell[pairs[:, 1]] = (leave - arrive[pairs[:, 1]]) / 1000
    leg_ms = length / speed * 1000
    permitted, overstay = kind == PERMITTED, kind == OVERSTAY
    permit_start = np.where(permitted | overstay, start - 10 * 60_000, np.nan)
    permit_end = np.select(
        [permitted, overstay],
        [start + 2 * leg_ms + dwell * 1000 + 40 * 60_000, start + leg_ms + dwell * 400],
        np.nan,
    )
    end = np.select(
        [kind == STRAP, kind == SILENT],
        [np.where(rng.random(n) < 0.5, start + rng.uniform(10, 40, n) * 60_000, np.nan),
         start + rng.uniform(20, 60, n) * 60_000],
        np.nan,
    )  # fmt: skip
    scripted = kind != ROUTINE
    return Plan(
        kind=kind, start_ms=np.where(scripted, start, np.nan), end_ms=end, target_x=tx, target_y=ty,
        via_x=vx, via_y=vy, dwell_s=dwell, speed=speed, permit_start_ms=permit_start,
        permit_end_ms=permit_end, partner=partner,
    )  # fmt: skip


def entry_targets(world: World) -> tuple[FloatArray, FloatArray]:
    """Per subject, a point inside the nearest exclusion zone that applies (the victim's home if any)."""
    s, geo = world.subjects, world.geography
    zones = geo.exclusion_features
    home = shapely.points(s.home_x, s.home_y)
    areas = np.array(geo.exclusions_xy)
    applies = np.array([[_applies(z, g) for z in zones] for g in s.groups]).reshape(len(s), len(zones))
    dist = np.where(applies, shapely.distance(areas[None, :], home[:, None]), np.inf)
    xy = shapely.get_coordinates(shapely.point_on_surface(areas[np.argmin(dist, axis=1)]))
    has_victim = ~np.isnan(s.victim_x)
    xy[has_victim] = np.column_stack([s.victim_x, s.victim_y])[has_victim]
    return xy[:, 0].copy(), xy[:, 1].copy()


def _applies(zone: dict[str, object], groups: list[str]) -> bool:
    props = zone["properties"]
    assert isinstance(props, dict)
    group = props.get("group_id")
    return group is None or group in groups


def _along_boundary(
    world: World, ax: FloatArray, ay: FloatArray, out: FloatArray, depth: FloatArray, rows: BoolArray
) -> tuple[FloatArray, FloatArray]:
    """A second point BOUNDARY_WALK_M along the border from (ax, ay), as deep inside; NaN if none fits."""
    boundary = world.geography.county_xy.boundary
    vx, vy = np.full(ax.size, np.nan), np.full(ax.size, np.nan)
    for sign in (1.0, -1.0):
        for fraction in (1.0, 0.6, 0.3):
            todo = rows & np.isnan(vx)
            if not todo.any():
                return vx, vy
            bx = ax[todo] - sign * out[todo, 1] * BOUNDARY_WALK_M * fraction
            by = ay[todo] + sign * out[todo, 0] * BOUNDARY_WALK_M * fraction
            legs = shapely.linestrings(np.stack([np.column_stack([ax[todo], ay[todo]]),
                                                 np.column_stack([bx, by])], axis=1))  # fmt: skip
            ok = shapely.within(legs, world.geography.county_xy) & (
                shapely.distance(legs, boundary) >= depth[todo] * 0.8
            )
            idx = np.flatnonzero(todo)[ok]
            vx[idx], vy[idx] = bx[ok], by[ok]
    return vx, vy
