"""Vectorized movement: subjects commute home <-> activity points and run their scripted excursions.

Every subject is in one straight leg (A -> B, progress 0..1) or dwelling at B; a step updates all of
them with a few numpy operations, never a per-subject loop. Nights (kinds.CURFEW_LOCAL_H, a little
earlier) are spent at home; a scripted subject waits at home for its excursion: out to the target,
dwell, on to the via point if any, and back home, after which it returns to routine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.geo import FloatArray
from device_sim.kinds import EXCURSION_KINDS, HOME_DRIFT, LEFT_HOME
from device_sim.scripts import Plan, local_hour
from device_sim.world import ACTIVITY_POINTS, BoolArray, World

ROUTINE, WAIT, OUT, VIA, BACK = 0, 1, 2, 3, 4
HOME_BY_LOCAL_H = 21.0  # routine subjects head home from here until the morning
MORNING_LOCAL_H = 7.0


@dataclass(frozen=True, slots=True)
class MovementParams:
    """Speeds in m/s and durations in seconds, each drawn uniformly from (low, high)."""

    walk_speed: tuple[float, float] = (1.0, 1.6)
    ride_speed: tuple[float, float] = (6.0, 12.0)  # e-bike or bus, for legs longer than ride_above_m
    ride_above_m: float = 1_500.0
    home_dwell_s: tuple[float, float] = (10 * 60, 60 * 60)
    activity_dwell_s: tuple[float, float] = (5 * 60, 40 * 60)
    via_dwell_s: float = 30.0
    wander_sigma_m: float = 20.0  # sideways drift off the straight leg (Ornstein-Uhlenbeck)
    wander_clip_m: float = 60.0  # bounded so routine paths stay inside world.SAFE_MARGIN_M
    wander_tau_s: float = 120.0


class Movement:
    """True positions of all subjects in local metres, advanced by `advance(t_ms)`."""

    def __init__(
        self, world: World, rng: np.random.Generator, start_ms: int, params: MovementParams, plan: Plan
    ) -> None:
        s = world.subjects
        n = len(s)
        self._world, self._rng, self._p, self.plan = world, rng, params, plan
        self.t_ms = start_ms
        self.ax, self.ay = s.home_x.copy(), s.home_y.copy()
        self.bx, self.by = s.home_x.copy(), s.home_y.copy()
        self.progress = np.ones(n)
        self.length = np.ones(n)
        self.speed = np.ones(n)
        self.lateral = np.zeros(n)
        self.to_home = np.ones(n, dtype=bool)
        excursion = plan.has(*EXCURSION_KINDS)
        self.mode = np.where(excursion, WAIT, ROUTINE).astype(np.int64)
        # Everyone starts at home, leaving at staggered times; scripted subjects wait for their start.
        self.dwell_until = start_ms + rng.uniform(0, params.home_dwell_s[1], n) * 1000
        self.dwell_until = np.where(excursion, plan.start_ms, self.dwell_until)
        self.dwell_until[plan.kind == HOME_DRIFT] = np.inf
        self.x, self.y = s.home_x.copy(), s.home_y.copy()

    @property
    def breaching(self) -> BoolArray:
        """Subjects away on a scripted violation excursion."""
        return np.asarray((self.mode >= OUT) & self._world.subjects.breacher)

    @property
    def indoors(self) -> BoolArray:
        """Dwelling at home or an activity point (GPS is poor indoors); scripted targets are outdoors."""
        return np.asarray((self.progress >= 1.0) & (self.mode <= WAIT))

    def bracelet_xy(self) -> tuple[FloatArray, FloatArray]:
        """Where each subject's ankle bracelet is: on them, or at home while they are out without it."""
        s = self._world.subjects
        left = (self.plan.kind == LEFT_HOME) & (self.mode >= OUT)
        return np.where(left, s.home_x, self.x), np.where(left, s.home_y, self.y)

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
            [self.mode == OUT, self.mode == VIA, self.to_home],
            [self.plan.dwell_s, np.full(n, p.via_dwell_s), rng.uniform(*p.home_dwell_s, n)],
            rng.uniform(*p.activity_dwell_s, n),
        )
        self.dwell_until = np.where(arrived, t_ms + dwell * 1000, self.dwell_until)
        self.mode = np.where(arrived & (self.mode == BACK), ROUTINE, self.mode)

    def _depart(self, depart: BoolArray, t_ms: int) -> None:
        s, p, plan, rng, n = self._world.subjects, self._p, self.plan, self._rng, depart.size
        hour = local_hour(t_ms)
        night = hour >= HOME_BY_LOCAL_H or hour < MORNING_LOCAL_H
        if night:  # at home: stay in (look again in half an hour); out: the next leg goes home anyway
            stay = depart & (self.mode == ROUTINE) & self.to_home
            self.dwell_until = np.where(stay, t_ms + 1_800_000, self.dwell_until)
            depart = depart & ~stay
        go_out = depart & (self.mode == WAIT)
        go_via = depart & (self.mode == OUT) & ~np.isnan(plan.via_x)
        go_back = depart & ((self.mode == VIA) | ((self.mode == OUT) & np.isnan(plan.via_x)))
        routine = depart & (self.mode == ROUTINE)
        k = rng.integers(0, ACTIVITY_POINTS, n)
        rows = np.arange(n)
        # Routine legs only ever join home and an activity point: world.py checked those are safe.
        rx = np.where(self.to_home, s.activity_x[rows, k], s.home_x)
        ry = np.where(self.to_home, s.activity_y[rows, k], s.home_y)
        cases = [go_out, go_via, go_back, routine]
        bx = np.select(cases, [plan.target_x, plan.via_x, s.home_x, rx], self.bx)
        by = np.select(cases, [plan.target_y, plan.via_y, s.home_y, ry], self.by)
        self.ax, self.ay = np.where(depart, self.bx, self.ax), np.where(depart, self.by, self.ay)
        self.bx, self.by = bx, by
        self.to_home = np.select(cases, [False, False, True, ~self.to_home], self.to_home)
        self.mode = np.select(cases[:3], [OUT, VIA, BACK], self.mode)
        length = np.maximum(np.hypot(self.bx - self.ax, self.by - self.ay), 1.0)
        speed = np.where(
            length > p.ride_above_m, rng.uniform(*p.ride_speed, n), rng.uniform(*p.walk_speed, n)
        )
        speed = np.where(go_out | go_via | go_back, plan.speed, speed)
        self.length = np.where(depart, length, self.length)
        self.speed = np.where(depart, speed, self.speed)
        self.progress = np.where(depart, 0.0, self.progress)
        self.lateral = np.where(depart, 0.0, self.lateral)

    def _wander(self, dt: float) -> None:
        p = self._p
        decay = np.exp(-dt / p.wander_tau_s)
        noise = self._rng.normal(0.0, p.wander_sigma_m * np.sqrt(1 - decay**2), self.lateral.size)
        self.lateral = np.clip(self.lateral * decay + noise, -p.wander_clip_m, p.wander_clip_m)
