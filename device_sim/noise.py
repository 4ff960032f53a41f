"""Position error model: what a bracelet or phone measures, given where it truly is.

GPS: Gaussian per-axis error with a per-device sigma (5-30 m), `acc` ~ its 68 % radius; now and then
a multipath outlier (tens to hundreds of metres off, `acc` unaware). Indoors: no fix at all (the
bracelet sends a heartbeat instead) or a poor fix with a large `acc`. Without GPS: an LBS (cell
tower) fix, 500-2,000 m. Phones also report Wi-Fi fixes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from device_sim.geo import FloatArray
from device_sim.world import BoolArray, IntArray

SOURCES = ("gps", "wifi", "lbs")  # `Fixes.src` indexes this tuple
GPS, WIFI, LBS = 0, 1, 2
# `acc` is a 68 % radius; for a 2-D Gaussian that is about 1.5 per-axis sigmas.
ACC_PER_SIGMA = 1.5


@dataclass(frozen=True, slots=True)
class NoiseParams:
    """Probabilities are per fix; ranges are drawn uniformly. `clean()` and `urban()` are the presets."""

    gps_sigma_m: tuple[float, float] = (5.0, 30.0)  # per device, per axis
    multipath_p: float = 0.0
    multipath_m: tuple[float, float] = (50.0, 300.0)
    indoor_nofix_p: float = 0.0  # indoors, the fix is a heartbeat instead
    indoor_poor_p: float = 0.0  # indoors, a fix with a large acc
    indoor_acc_m: tuple[float, float] = (30.0, 150.0)
    lbs_p: float = 0.0
    lbs_acc_m: tuple[float, float] = (500.0, 2_000.0)
    phone_wifi_p: float = 0.2
    phone_wifi_acc_m: tuple[float, float] = (20.0, 40.0)
    clock_skew_s: float = 5.0  # device clocks are off by up to this, either way
    gap_per_h: float = 0.25  # coverage gaps: fixes are buffered and sent late
    gap_s: tuple[float, float] = (60.0, 360.0)
    flush_spacing_ms: int = 1_000  # buffered fixes go out one per this, between live ones
    ankle_drain_pct_per_h: tuple[float, float] = (1.5, 3.0)
    phone_drain_pct_per_h: tuple[float, float] = (3.0, 6.0)
    battery_low_pct: float = 20.0
    charge_after_s: tuple[float, float] = (20 * 60, 90 * 60)
    charge_pct_per_h: float = 40.0

    @classmethod
    def clean(cls) -> NoiseParams:
        """Open-sky GPS only (plus gaps, skew and battery): zone decisions are clear-cut."""
        return cls()

    @classmethod
    def urban(cls) -> NoiseParams:
        """Everything: multipath, indoor fixes and heartbeats, LBS fallback."""
        return replace(cls(), multipath_p=0.01, indoor_nofix_p=0.15, indoor_poor_p=0.4, lbs_p=0.02)

    @classmethod
    def named(cls, name: str) -> NoiseParams:
        if name not in NOISE_PROFILES:
            raise ValueError(f"unknown noise profile {name!r}; choose from {', '.join(NOISE_PROFILES)}")
        return cls.clean() if name == "clean" else cls.urban()


NOISE_PROFILES = ("clean", "urban")


@dataclass(frozen=True, slots=True)
class Measurement:
    """Error and self-reported quality of n fixes; `has_fix` False means no position at all."""

    dx: FloatArray
    dy: FloatArray
    acc: FloatArray
    src: IntArray
    has_fix: BoolArray


def measure(
    rng: np.random.Generator, p: NoiseParams, sigma: FloatArray, is_phone: BoolArray, indoors: BoolArray
) -> Measurement:
    """Draw the error of one fix per row, for devices with per-axis GPS `sigma` in metres."""
    n = sigma.size
    u = rng.random(n)
    lbs = u < p.lbs_p
    nofix = ~lbs & indoors & ~is_phone & (u < p.lbs_p + p.indoor_nofix_p)
    poor = ~lbs & ~nofix & indoors & (u < p.lbs_p + p.indoor_nofix_p + p.indoor_poor_p)
    wifi = ~lbs & is_phone & (rng.random(n) < p.phone_wifi_p)
    gps_acc = sigma * ACC_PER_SIGMA * rng.uniform(0.8, 1.25, n)
    acc = np.select(
        [lbs, wifi, poor],
        [rng.uniform(*p.lbs_acc_m, n), rng.uniform(*p.phone_wifi_acc_m, n), rng.uniform(*p.indoor_acc_m, n)],
        gps_acc,
    )
    axis_sigma = np.where(lbs | wifi | poor, acc / ACC_PER_SIGMA, sigma)
    dx, dy = rng.normal(0.0, 1.0, n) * axis_sigma, rng.normal(0.0, 1.0, n) * axis_sigma
    multipath = ~lbs & ~wifi & (rng.random(n) < p.multipath_p)
    bearing = rng.uniform(0, 2 * np.pi, n)
    extra = np.where(multipath, rng.uniform(*p.multipath_m, n), 0.0)
    src = np.select([lbs, wifi], [LBS, WIFI], GPS).astype(np.int64)
    return Measurement(
        dx=dx + extra * np.cos(bearing),
        dy=dy + extra * np.sin(bearing),
        acc=np.round(acc, 1),
        src=src,
        has_fix=~nofix,
    )
