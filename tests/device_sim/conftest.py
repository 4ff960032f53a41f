"""Server-free fixtures: a small seeded world and a recorded four-hour simulation of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest

from device_sim.noise import NoiseParams
from device_sim.simulator import Simulator
from device_sim.world import World, build_world

START_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z, a whole second
TRACE_HOURS = 4
TRACE_STEP_MS = 5_000
# Without coverage gaps every fix is sent when measured, so the ground truth at send time is its own.
NO_GAPS = NoiseParams(gap_per_h=0.0)


@dataclass(frozen=True)
class Trace:
    """Every fix of a run, flattened, with the ground truth at the moment it was taken."""

    device_index: npt.NDArray[np.int64]
    subject_index: npt.NDArray[np.int64]
    ts: npt.NDArray[np.int64]
    lon: npt.NDArray[np.float64]
    lat: npt.NDArray[np.float64]
    routine: npt.NDArray[np.bool_]  # the subject was not on a breach excursion


@pytest.fixture(scope="session")
def world() -> World:
    return build_world(120, seed=7, breach_fraction=0.2)


@pytest.fixture(scope="session")
def simulator_trace(world: World) -> tuple[Simulator, Trace]:
    sim = Simulator(world, START_MS, noise=NO_GAPS, horizon_s=TRACE_HOURS * 3600)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("device_index", "ts", "lon", "lat", "routine")}
    for t in range(START_MS + TRACE_STEP_MS, START_MS + TRACE_HOURS * 3_600_000 + 1, TRACE_STEP_MS):
        fixes = sim.step(t).fixes
        subject = world.devices.subject_index[fixes.device_index]
        parts["device_index"].append(fixes.device_index)
        parts["ts"].append(fixes.ts)
        parts["lon"].append(fixes.lon)
        parts["lat"].append(fixes.lat)
        parts["routine"].append(~sim.breaching[subject])
    device_index = np.concatenate(parts["device_index"])
    trace = Trace(
        device_index=device_index,
        subject_index=world.devices.subject_index[device_index],
        ts=np.concatenate(parts["ts"]),
        lon=np.concatenate(parts["lon"]),
        lat=np.concatenate(parts["lat"]),
        routine=np.concatenate(parts["routine"]),
    )
    return sim, trace


@pytest.fixture(scope="session")
def trace(simulator_trace: tuple[Simulator, Trace]) -> Trace:
    return simulator_trace[1]
