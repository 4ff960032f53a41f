"""Victims' devices: a phone app at the victim's home reporting GPS fixes, the centre of the moving
exclusion circle the `victim_proximity` rule keeps the protected-against subject out of."""

from __future__ import annotations

import numpy as np
import orjson

from device_sim.noise import ACC_PER_SIGMA
from device_sim.protocol import Message, fix_topic
from device_sim.world import VICTIM_INTERVAL_S, World

VICTIM_SIGMA_M = (4.0, 10.0)  # per device, per axis: a phone by a window at home
VICTIM_BATTERY = 80


class VictimReporter:
    """A fix every VICTIM_INTERVAL_S from each victim device, on its own topic (no gateway)."""

    def __init__(self, world: World, rng: np.random.Generator, start_ms: int) -> None:
        v, s = world.victims, world.subjects
        self._world, self._rng = world, rng
        self._x, self._y = s.victim_x[v.subject_index], s.victim_y[v.subject_index]
        self._sigma = rng.uniform(*VICTIM_SIGMA_M, len(v))
        self._interval_ms = VICTIM_INTERVAL_S * 1000
        # Whole-second phases, so with 1 s steps every fix lands exactly on its schedule.
        self._next = start_ms + rng.integers(1, VICTIM_INTERVAL_S + 1, len(v)) * 1000
        self._seq = np.zeros(len(v), dtype=np.int64)

    def messages(self, t_ms: int) -> list[Message]:
        """Fixes due at or before t_ms (at most one per device per step), in device order."""
        due = np.flatnonzero(self._next <= t_ms)
        if due.size == 0:
            return []
        ts = self._next[due].copy()
        self._next[due] += self._interval_ms
        self._seq[due] += 1
        sigma = self._sigma[due]
        x = self._x[due] + self._rng.normal(0.0, sigma)
        y = self._y[due] + self._rng.normal(0.0, sigma)
        lon, lat = self._world.geography.frame.to_lonlat(x, y)
        ids = self._world.victims.ids
        return [
            (fix_topic(ids[d]), orjson.dumps({
                "ts": int(t), "lat": round(float(la), 6), "lon": round(float(lo), 6),
                "acc": round(float(sg) * ACC_PER_SIGMA, 1), "src": "gps", "batt": VICTIM_BATTERY,
                "seq": int(q),
            }))
            for d, t, la, lo, sg, q in zip(
                due.tolist(), ts.tolist(), lat.tolist(), lon.tolist(), sigma.tolist(),
                self._seq[due].tolist(), strict=True,
            )
        ]  # fmt: skip
