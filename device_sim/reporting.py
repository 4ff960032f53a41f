"""What devices report: which are due when, with what accuracy, noise, battery and sequence number."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.geo import FloatArray
from device_sim.world import IntArray, World

SOURCES = ("gps", "wifi", "lbs")  # `Fixes.src` indexes this tuple


@dataclass(frozen=True, slots=True)
class Fixes:
    """The fixes of one simulation step, a struct of arrays indexed by fix."""

    device_index: IntArray  # into World.devices
    ts: IntArray  # epoch milliseconds
    lon: FloatArray
    lat: FloatArray
    acc: FloatArray  # metres, the device's own accuracy estimate
    src: IntArray  # index into SOURCES
    batt: IntArray  # percent
    seq: IntArray  # per-device counter, from 1

    def __len__(self) -> int:
        return int(self.device_index.size)


@dataclass(frozen=True, slots=True)
class NoiseParams:
    """First-version GPS model: Gaussian error scaled to the reported accuracy, clipped."""

    ankle_acc_m: tuple[float, float] = (4.0, 15.0)
    phone_gps_acc_m: tuple[float, float] = (5.0, 20.0)
    phone_wifi_acc_m: tuple[float, float] = (20.0, 40.0)
    phone_wifi_share: float = 0.2
    # Per-axis s.d. as a fraction of `acc`: vendors report acc as a ~68 % radius.
    sigma_per_acc: float = 0.7
    # Clipping keeps a routine subject's fixes inside world.SAFE_MARGIN_M; a later issue replaces it
    # with heavy-tailed urban-canyon noise and scores alerts against ground truth instead.
    clip_sigmas: float = 3.0
    ankle_drain_pct_per_h: float = 1.5
    phone_drain_pct_per_h: float = 4.0


class Reporter:
    """Turns true subject positions into device fixes at each device's reporting interval."""

    def __init__(self, world: World, rng: np.random.Generator, start_ms: int, params: NoiseParams) -> None:
        devices = world.devices
        self._world = world
        self._rng = rng
        self._params = params
        self._interval_ms = devices.interval_s * 1000
        # Whole-second phases: with 1 s steps every fix lands exactly on its schedule.
        self._phase_ms = rng.integers(0, devices.interval_s) * 1000
        self._last_ms = start_ms  # a slot exactly at start_ms belongs to before the run
        self._start_ms = start_ms
        self._seq = np.zeros(len(devices), dtype=np.int64)
        self._is_phone = np.array([k == "phone" for k in devices.kinds])
        self._batt0 = rng.uniform(40.0, 100.0, len(devices))
        self._drain = np.where(self._is_phone, params.phone_drain_pct_per_h, params.ankle_drain_pct_per_h)

    def due(self, t_ms: int) -> IntArray:
        """Devices with a scheduled report in (previous step, t_ms]."""
        now = (t_ms - self._phase_ms) // self._interval_ms
        before = (self._last_ms - self._phase_ms) // self._interval_ms
        return np.flatnonzero(now > before).astype(np.int64)

    def report(self, t_ms: int, x: FloatArray, y: FloatArray) -> Fixes:
        """Fixes for the devices due at t_ms, given each subject's true position in local metres."""
        idx = self.due(t_ms)
        self._last_ms = t_ms
        p, rng, n = self._params, self._rng, idx.size
        phone = self._is_phone[idx]
        wifi = phone & (rng.random(n) < p.phone_wifi_share)
        acc = np.where(
            wifi,
            rng.uniform(*p.phone_wifi_acc_m, n),
            np.where(phone, rng.uniform(*p.phone_gps_acc_m, n), rng.uniform(*p.ankle_acc_m, n)),
        )
        limit = p.clip_sigmas * p.sigma_per_acc * acc
        dx = np.clip(rng.normal(0.0, p.sigma_per_acc * acc), -limit, limit)
        dy = np.clip(rng.normal(0.0, p.sigma_per_acc * acc), -limit, limit)
        subject = self._world.devices.subject_index[idx]
        lon, lat = self._world.geography.frame.to_lonlat(x[subject] + dx, y[subject] + dy)
        self._seq[idx] += 1
        return Fixes(
            device_index=idx,
            ts=np.full(n, t_ms, dtype=np.int64),
            lon=lon,
            lat=lat,
            acc=np.round(acc, 1).astype(np.float64),
            src=np.where(wifi, SOURCES.index("wifi"), SOURCES.index("gps")).astype(np.int64),
            batt=self._battery(idx, t_ms),
            seq=self._seq[idx].copy(),
        )

    def _battery(self, idx: IntArray, t_ms: int) -> IntArray:
        """Drains linearly; at 10 % the subject charges it back to 100 % (instantly, for now)."""
        hours = (t_ms - self._start_ms) / 3_600_000
        level = 10.0 + np.mod(self._batt0[idx] - 10.0 - self._drain[idx] * hours, 90.0)
        return np.round(level).astype(np.int64)
