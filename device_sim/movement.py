"""Vectorized movement: subjects commute home <-> activity points; breachers periodically cross a zone.

Every subject is in one straight leg (A -> B, progress 0..1) or dwelling at B; a step updates all of
them with a few numpy operations, never a per-subject loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from device_sim.geo import FloatArray
from device_sim.reporting import Fixes, NoiseParams, Reporter
from device_sim.world import ACTIVITY_POINTS, BoolArray, World

ROUTINE, BREACH_OUT, BREACH_BACK = 0, 1, 2


@dataclass(frozen=True, slots=True)
class MovementParams:
    """Speeds in m/s and durations in seconds, each drawn uniformly from (low, high)."""

    walk_speed: tuple[float, float] = (1.0, 1.6)
    ride_speed: tuple[float, float] = (6.0, 12.0)  # e-bike or bus, for legs longer than ride_above_m
    ride_above_m: float = 1_500.0
    home_dwell_s: tuple[float, float] = (10 * 60, 60 * 60)
    activity_dwell_s: tuple[float, float] = (5 * 60, 40 * 60)
    # Breaches come early so a short demo shows alerts, then recur for long runs.
    first_breach_s: tuple[float, float] = (60, 15 * 60)
    breach_dwell_s: tuple[float, float] = (5 * 60, 15 * 60)
    breach_every_s: tuple[float, float] = (45 * 60, 120 * 60)
    exit_overshoot_m: float = 1_500.0  # how far past the county boundary an exit breach goes
    wander_sigma_m: float = 20.0  # sideways drift off the straight leg (Ornstein-Uhlenbeck)
    wander_clip_m: float = 60.0  # bounded so routine paths stay inside world.SAFE_MARGIN_M
    wander_tau_s: float = 120.0


class Movement:
    """True positions of all subjects in local metres, advanced by `advance(t_ms)`."""

    def __init__(self, world: World, rng: np.random.Generator, start_ms: int, params: MovementParams) -> None:
        s = world.subjects
        n = len(s)
        self._world, self._rng, self._p = world, rng, params
        self.t_ms = start_ms
        self.ax, self.ay = s.home_x.copy(), s.home_y.copy()
        self.bx, self.by = s.home_x.copy(), s.home_y.copy()
        self.progress = np.ones(n)
        self.length = np.ones(n)
        self.speed = np.ones(n)
        self.lateral = np.zeros(n)
        self.to_home = np.ones(n, dtype=bool)
        self.mode = np.full(n, ROUTINE, dtype=np.int64)
        # Everyone starts at home, leaving at staggered times.
        self.dwell_until = start_ms + rng.uniform(0, params.home_dwell_s[1], n) * 1000
        self.next_breach = np.where(
            s.breacher, start_ms + rng.uniform(*params.first_breach_s, n) * 1000, np.inf
        )
        self.target_x, self.target_y, self.breach_zone = breach_targets(world, rng, params)
        self.x, self.y = s.home_x.copy(), s.home_y.copy()

    @property
    def breaching(self) -> BoolArray:
        """Ground truth: the subject is on a breach excursion (heading out, there, or coming back)."""
        return np.asarray(self.mode != ROUTINE)

    def advance(self, t_ms: int) -> None:
        """Move everyone to time t_ms; steps of up to a few seconds keep legs and dwells accurate."""
        dt = (t_ms - self.t_ms) / 1000
        if dt < 0:
            raise ValueError(f"time went backwards: {t_ms} < {self.t_ms}")
        self.t_ms = t_ms
        moving = self.progress < 1.0
        self.progress = np.where(moving, np.minimum(1.0, self.progress + self.speed * dt / self.length), 1.0)
        arrived = moving & (self.progress >= 1.0)
        if arrived.any():
            self._arrive(arrived, t_ms)
        depart = ~moving & (t_ms >= self.dwell_until)
        if depart.any():
            self._depart(depart, t_ms)
        self._wander(dt)
        dx, dy = self.bx - self.ax, self.by - self.ay
        side = self.lateral * np.sin(np.pi * self.progress) / self.length  # zero at both ends of a leg
        self.x = self.ax + dx * self.progress - dy * side
        self.y = self.ay + dy * self.progress + dx * side

    def _arrive(self, arrived: BoolArray, t_ms: int) -> None:
        p, rng, n = self._p, self._rng, arrived.size
        dwell = np.select(
            [self.mode == BREACH_OUT, self.to_home],
            [rng.uniform(*p.breach_dwell_s, n), rng.uniform(*p.home_dwell_s, n)],
            rng.uniform(*p.activity_dwell_s, n),
        )
        self.dwell_until = np.where(arrived, t_ms + dwell * 1000, self.dwell_until)
        home_again = arrived & (self.mode == BREACH_BACK)
        self.next_breach = np.where(
            home_again, t_ms + rng.uniform(*p.breach_every_s, n) * 1000, self.next_breach
        )
        self.mode = np.where(home_again, ROUTINE, self.mode)

    def _depart(self, depart: BoolArray, t_ms: int) -> None:
        s, p, rng, n = self._world.subjects, self._p, self._rng, depart.size
        go_out = depart & (self.mode == ROUTINE) & (t_ms >= self.next_breach)
        go_back = depart & (self.mode == BREACH_OUT)
        routine = depart & ~go_out & ~go_back
        k = rng.integers(0, ACTIVITY_POINTS, n)
        rows = np.arange(n)
        # Routine legs only ever join home and an activity point: world.py checked those are safe.
        rx = np.where(self.to_home, s.activity_x[rows, k], s.home_x)
        ry = np.where(self.to_home, s.activity_y[rows, k], s.home_y)
        bx = np.select([go_out, go_back, routine], [self.target_x, s.home_x, rx], self.bx)
        by = np.select([go_out, go_back, routine], [self.target_y, s.home_y, ry], self.by)
        self.ax, self.ay = np.where(depart, self.bx, self.ax), np.where(depart, self.by, self.ay)
        self.bx, self.by = bx, by
        self.to_home = np.select([go_out, go_back, routine], [False, True, ~self.to_home], self.to_home)
        self.mode = np.select([go_out, go_back], [BREACH_OUT, BREACH_BACK], self.mode)
        length = np.maximum(np.hypot(self.bx - self.ax, self.by - self.ay), 1.0)
        speed = np.where(
            length > p.ride_above_m, rng.uniform(*p.ride_speed, n), rng.uniform(*p.walk_speed, n)
        )
        self.length = np.where(depart, length, self.length)
        self.speed = np.where(depart, speed, self.speed)
        self.progress = np.where(depart, 0.0, self.progress)
        self.lateral = np.where(depart, 0.0, self.lateral)

    def _wander(self, dt: float) -> None:
        p = self._p
        decay = np.exp(-dt / p.wander_tau_s)
        noise = self._rng.normal(0.0, p.wander_sigma_m * np.sqrt(1 - decay**2), self.lateral.size)
        self.lateral = np.clip(self.lateral * decay + noise, -p.wander_clip_m, p.wander_clip_m)


def breach_targets(
    world: World, rng: np.random.Generator, params: MovementParams
) -> tuple[FloatArray, FloatArray, list[str | None]]:
    """Per subject, where a breach leads and which zone it violates (None for non-breachers).

    Half the breachers leave the county (past its nearest border point); the others enter the
    nearest exclusion zone that applies to them, their victim's home when they have one.
    """
    s, geo = world.subjects, world.geography
    n = len(s)
    home = shapely.points(s.home_x, s.home_y)
    # Exit: from home to the nearest border point, then on past it until clearly outside.
    border = shapely.get_coordinates(
        shapely.get_point(shapely.shortest_line(geo.county_xy.boundary, home), 0)
    )
    out = border - np.column_stack([s.home_x, s.home_y])
    out /= np.maximum(np.hypot(out[:, 0], out[:, 1]), 1.0)[:, None]
    exit_xy = border + out * params.exit_overshoot_m
    for _ in range(5):
        inside = shapely.contains_xy(geo.county_xy, exit_xy[:, 0], exit_xy[:, 1])
        exit_xy[inside] += out[inside] * params.exit_overshoot_m
    # Entry: nearest shared exclusion zone that applies to the subject (group zones only to members).
    zones = geo.exclusion_features
    applies = np.array([[_applies(z, groups) for z in zones] for groups in s.groups])
    dist = np.where(applies, shapely.distance(np.array(geo.exclusions_xy)[None, :], home[:, None]), np.inf)
    nearest = np.argmin(dist, axis=1)
    entry_xy = shapely.get_coordinates(shapely.point_on_surface(np.array(geo.exclusions_xy)[nearest]))
    has_victim = ~np.isnan(s.victim_x)
    entry_xy[has_victim] = np.column_stack([s.victim_x, s.victim_y])[has_victim]

    exits = rng.random(n) < 0.5
    xy = np.where(exits[:, None], exit_xy, entry_xy)
    inclusion_id = next(z["id"] for z in geo.shared_zones if z["properties"]["kind"] == "inclusion")
    zone_ids: list[str | None] = [
        None
        if not s.breacher[i]
        else inclusion_id
        if exits[i]
        else f"zone-victim-{s.ids[i]}"
        if has_victim[i]
        else str(zones[nearest[i]]["id"])
        for i in range(n)
    ]
    return xy[:, 0].copy(), xy[:, 1].copy(), zone_ids


def _applies(zone: dict[str, Any], groups: list[str]) -> bool:
    group = zone["properties"].get("group_id")
    return group is None or group in groups


class Simulator:
    """The whole simulation: `step(t_ms)` moves everyone and returns the fixes due at t_ms."""

    def __init__(
        self,
        world: World,
        start_ms: int,
        seed: int | None = None,
        movement: MovementParams | None = None,
        noise: NoiseParams | None = None,
    ) -> None:
        seeds = np.random.SeedSequence([world.seed if seed is None else seed, 1]).spawn(2)
        self.world = world
        self.movement = Movement(
            world, np.random.default_rng(seeds[0]), start_ms, movement or MovementParams()
        )
        self.reporter = Reporter(world, np.random.default_rng(seeds[1]), start_ms, noise or NoiseParams())

    def step(self, t_ms: int) -> Fixes:
        """Advance to t_ms (epoch ms, non-decreasing) and return the fixes due in (last step, t_ms]."""
        self.movement.advance(t_ms)
        return self.reporter.report(t_ms, self.movement.x, self.movement.y)

    def true_lonlat(self) -> tuple[FloatArray, FloatArray]:
        """Ground truth: every subject's noise-free position now."""
        return self.world.geography.frame.to_lonlat(self.movement.x, self.movement.y)

    @property
    def breaching(self) -> BoolArray:
        return self.movement.breaching
