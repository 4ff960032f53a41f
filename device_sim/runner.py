"""The simulation loop: set up via the API, then step the simulator and publish in (scaled) real time."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass

from device_sim.orders import build_orders, permit_rows
from device_sim.protocol import encode_report
from device_sim.publish import MqttTarget, Publisher
from device_sim.setup import setup_via_api
from device_sim.simulator import DEFAULT_HORIZON_S, Simulator
from device_sim.world import build_world

log = logging.getLogger(__name__)

STEP_MS = 1_000  # one simulated second per step: every fix lands exactly on its schedule
# Fixes older than EMWATCH_MAX_AGE_S (7 days by default) are rejected; stay well inside it.
MAX_BACKFILL_S = 6 * 86_400
# Without --duration, a fast run gets this much wall time at full speed before it catches up.
DEFAULT_FAST_WALL_S = 3_600.0


@dataclass(frozen=True, slots=True)
class SimClock:
    """Maps wall time to simulated epoch ms; never runs ahead of the wall clock.

    With speed K > 1 the simulation starts in the past, so its fixes are never in the future
    (the service rejects those); once it catches up with now it continues at real time.
    """

    start_ms: int
    wall0: float
    speed: float

    @classmethod
    def starting_now(cls, speed: float, duration_s: float | None) -> SimClock:
        wall0 = time.time()
        fast_wall_s = duration_s if duration_s is not None else DEFAULT_FAST_WALL_S
        backfill_s = min(MAX_BACKFILL_S, max(0.0, speed - 1.0) * fast_wall_s)
        return cls(start_ms=int(wall0 - backfill_s) * 1000, wall0=wall0, speed=speed)

    def wall_time_of(self, t_ms: int) -> float:
        """The wall-clock time (epoch s) at which simulated time t_ms is due."""
        return max(self.wall0 + (t_ms - self.start_ms) / 1000 / self.speed, t_ms / 1000)


async def run_simulation(
    api_url: str,
    mqtt_url: str,
    subjects: int,
    speed: float,
    duration_s: float | None,
    seed: int,
    batch: int,
    stop: asyncio.Event | None = None,
    *,
    breach_fraction: float = 0.05,
    log_every_s: float = 5.0,
    credentials: tuple[str, str] | None = None,
) -> None:
    """Build a world, create it through the API, then publish its fixes until duration or `stop`.

    `duration_s` is wall-clock seconds (None: until stopped); `speed` K runs K simulated seconds per
    wall second; `batch` > 1 publishes gateway batches of up to that many fixes.
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    stop = stop or asyncio.Event()
    world = build_world(subjects, seed, breach_fraction)
    log.info(
        "world: %d subjects, %d devices, %d breachers (seed %d)",
        len(world.subjects),
        len(world.devices),
        int(world.subjects.breacher.sum()),
        seed,
    )
    # `emwatch-sim run` against a service: EMWATCH_SIM_CREDENTIALS=user:password of an admin.
    if credentials is None and ":" in (spec := os.environ.get("EMWATCH_SIM_CREDENTIALS", "")):
        user, _, password = spec.partition(":")
        credentials = (user, password)
    clock = SimClock.starting_now(speed, duration_s)
    horizon_s = duration_s * speed if duration_s is not None else DEFAULT_HORIZON_S
    sim = Simulator(world, clock.start_ms, seed, horizon_s=horizon_s, track_truth=False)
    # Simulated time is real epoch time here (no rebasing): the orders need no shift.
    orders = build_orders(world, permit_rows(world, sim.plan))
    await setup_via_api(api_url, world, credentials=credentials, orders=orders)
    end_wall = clock.wall0 + duration_s if duration_s is not None else float("inf")
    stats = _Stats(time.monotonic())
    identifier = f"emwatch-sim-{os.getpid()}-{seed}"
    async with Publisher(MqttTarget.parse(mqtt_url), identifier) as publisher:
        t_ms = clock.start_ms
        while not stop.is_set():
            due = clock.wall_time_of(t_ms + STEP_MS)
            if due > end_wall or await _stopped_before(stop, due - time.time()):
                break
            t_ms += STEP_MS
            report = sim.step(t_ms)
            messages = [*encode_report(report, world, batch), *sim.victim_messages]
            await publisher.publish_all(messages)
            stats.add(len(report.fixes), len(messages))
            if stats.due(log_every_s):
                stats.log(t_ms, int(sim.breaching.sum()))
    stats.log(t_ms, int(sim.breaching.sum()))


async def _stopped_before(stop: asyncio.Event, delay_s: float) -> bool:
    """Sleep `delay_s` unless `stop` is set first; True if it was."""
    if delay_s <= 0:
        return stop.is_set()
    try:
        await asyncio.wait_for(stop.wait(), delay_s)
    except TimeoutError:
        return False
    return True


class _Stats:
    """Counters for the periodic progress line."""

    def __init__(self, now: float) -> None:
        self.fixes = self.messages = self.window_fixes = 0
        self.window_start = self.last_log = now

    def add(self, fixes: int, messages: int) -> None:
        self.fixes += fixes
        self.messages += messages
        self.window_fixes += fixes

    def due(self, every_s: float) -> bool:
        return time.monotonic() - self.last_log >= every_s

    def log(self, t_ms: int, breaching: int) -> None:
        now = time.monotonic()
        rate = self.window_fixes / max(now - self.window_start, 1e-9)
        sim_time = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t_ms / 1000))
        log.info(
            "sim %s | %d fixes in %d messages sent | %.0f fixes/s | %d subjects breaching",
            sim_time,
            self.fixes,
            self.messages,
            rate,
            breaching,
        )
        self.window_fixes, self.window_start, self.last_log = 0, now, now
