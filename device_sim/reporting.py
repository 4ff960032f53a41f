"""What devices send: fixes on schedule (noisy, skewed, buffered through coverage gaps) and events."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_sim.geo import FloatArray
from device_sim.kinds import BATTERY, CASE, SILENT, STRAP
from device_sim.noise import SOURCES, NoiseParams, measure
from device_sim.scripts import Plan
from device_sim.world import BoolArray, IntArray, World

__all__ = ["EVENT_TYPES", "SOURCES", "Events", "Fixes", "NoiseParams", "Report", "Reporter"]

EVENT_TYPES = (
    "strap_open", "strap_closed", "case_open", "battery_low", "charging", "heartbeat", "companion_lost",
    "companion_ok",
)  # fmt: skip
STRAP_OPEN, STRAP_CLOSED, CASE_OPEN, BATTERY_LOW, CHARGING, HEARTBEAT, COMPANION_LOST, COMPANION_OK = range(8)
BLUETOOTH_RANGE_M = 50.0  # the bracelet loses its phone beyond this


@dataclass(frozen=True, slots=True)
class Fixes:
    """Fixes to publish now, a struct of arrays indexed by fix (buffered ones first, then live)."""

    device_index: IntArray  # into World.devices
    ts: IntArray  # epoch milliseconds, by the device's (skewed) clock
    lon: FloatArray
    lat: FloatArray
    acc: FloatArray  # metres, the device's own accuracy estimate
    src: IntArray  # index into SOURCES
    batt: IntArray  # percent
    seq: IntArray  # per-device counter, from 1

    def __len__(self) -> int:
        return int(self.device_index.size)

    def take(self, index: IntArray | BoolArray) -> Fixes:
        """The rows at `index` (indices or a mask), in that order."""
        return Fixes(*(getattr(self, f)[index] for f in Fixes.__slots__))

    @staticmethod
    def concat(parts: list[Fixes]) -> Fixes:
        return Fixes(*(np.concatenate([getattr(p, f) for p in parts]) for f in Fixes.__slots__))


@dataclass(frozen=True, slots=True)
class Events:
    """Device events to publish now, indexed by event."""

    device_index: IntArray
    ts: IntArray
    type: IntArray  # index into EVENT_TYPES
    batt: IntArray

    def __len__(self) -> int:
        return int(self.device_index.size)


@dataclass(frozen=True, slots=True)
class Report:
    """Everything the devices publish in one step."""

    fixes: Fixes
    events: Events


class Reporter:
    """Turns true device positions into messages at each device's reporting interval."""

    def __init__(
        self, world: World, rng: np.random.Generator, start_ms: int, params: NoiseParams, plan: Plan
    ) -> None:
        d, p, n = world.devices, params, len(world.devices)
        self._world, self._rng, self._p, self._plan = world, rng, params, plan
        self._interval_ms = d.interval_s * 1000
        # Whole-second phases: with 1 s steps every fix lands exactly on its schedule.
        self._phase_ms = rng.integers(0, d.interval_s) * 1000
        self._last_ms = start_ms  # a slot exactly at start_ms belongs to before the run
        self._seq = np.zeros(n, dtype=np.int64)
        self.is_phone = np.array([k == "phone" for k in d.kinds], dtype=bool)
        self._sigma = rng.uniform(*p.gps_sigma_m, n)
        self._skew_ms = np.round(rng.uniform(-p.clock_skew_s, p.clock_skew_s, n) * 1000).astype(np.int64)
        self._gap_until = np.zeros(n)
        self._gap_clock = start_ms
        self._buffered = np.zeros(n, dtype=np.int64)
        self._pending: list[tuple[FloatArray, Fixes]] = []
        kind = plan.kind[d.subject_index]
        ankle_kind = np.where(self.is_phone, -1, kind)
        self.battery = rng.uniform(40.0, 100.0, n)
        self._drain = np.where(
            self.is_phone, rng.uniform(*p.phone_drain_pct_per_h, n), rng.uniform(*p.ankle_drain_pct_per_h, n)
        )
        # A scripted low battery crosses the warning level at the planned start.
        cross_h = (plan.start_ms[d.subject_index] - start_ms) / 3_600_000
        scripted = ankle_kind == BATTERY
        self.battery[scripted] = p.battery_low_pct + self._drain[scripted] * cross_h[scripted]
        self.battery_low = self.battery < p.battery_low_pct
        self.charging = np.zeros(n, dtype=bool)
        self._charge_at = np.full(n, np.inf)
        effect = np.isin(ankle_kind, (STRAP, CASE, SILENT))
        self._effect_start = np.where(effect, plan.start_ms[d.subject_index], np.nan)
        self._effect_end = plan.end_ms[d.subject_index]
        self._effect_kind = ankle_kind
        self.strap_open = np.zeros(n, dtype=bool)
        self.case_opened = np.zeros(n, dtype=bool)  # in the latest step
        self.separated = np.zeros(n, dtype=bool)  # bracelet out of Bluetooth range of its phone
        phone_of = np.full(len(world.subjects), -1, dtype=np.int64)
        phone_of[d.subject_index[self.is_phone]] = np.flatnonzero(self.is_phone)
        self._phone_of_device = np.where(self.is_phone, -1, phone_of[d.subject_index])

    def silent(self, t_ms: int) -> BoolArray:
        """Bracelets switched off by a `silent` script at t_ms."""
        return np.asarray(
            (self._effect_kind == SILENT) & (self._effect_start <= t_ms) & (t_ms < self._effect_end)
        )

    def due(self, t_ms: int) -> IntArray:
        """Devices with a scheduled report in (previous step, t_ms]."""
        now = (t_ms - self._phase_ms) // self._interval_ms
        before = (self._last_ms - self._phase_ms) // self._interval_ms
        return np.flatnonzero(now > before).astype(np.int64)

    def report(self, t_ms: int, x: FloatArray, y: FloatArray, indoors: BoolArray) -> Report:
        """Messages due at t_ms, given each device's true position in local metres and whether indoors."""
        events = self._events(t_ms, x, y)
        idx = self.due(t_ms)
        idx = idx[~self.silent(t_ms)[idx]]
        self._last_ms = t_ms
        m = measure(self._rng, self._p, self._sigma[idx], self.is_phone[idx], indoors[idx])
        events.append(self._event_rows(idx[~m.has_fix], t_ms, HEARTBEAT))
        idx = idx[m.has_fix]
        lon, lat = self._world.geography.frame.to_lonlat(x[idx] + m.dx[m.has_fix], y[idx] + m.dy[m.has_fix])
        self._seq[idx] += 1
        fixes = Fixes(
            device_index=idx,
            ts=t_ms + self._skew_ms[idx],
            lon=lon,
            lat=lat,
            acc=m.acc[m.has_fix],
            src=m.src[m.has_fix],
            batt=np.round(self.battery[idx]).astype(np.int64),
            seq=self._seq[idx].copy(),
        )
        return Report(self._through_coverage(t_ms, fixes), _concat_events(events))

    def _through_coverage(self, t_ms: int, fixes: Fixes) -> Fixes:
        """Live fixes of devices in a coverage gap wait in the device; due buffered ones go out first."""
        p, rng, n = self._p, self._rng, len(self._world.devices)
        dt_h = (t_ms - self._gap_clock) / 3_600_000
        self._gap_clock = t_ms
        starts = (self._gap_until < t_ms) & (rng.random(n) < p.gap_per_h * dt_h)
        self._gap_until = np.where(starts, t_ms + rng.uniform(*p.gap_s, n) * 1000, self._gap_until)
        self._buffered[starts] = 0
        in_gap = self._gap_until[fixes.device_index] > t_ms
        held = fixes.take(in_gap)
        if len(held):
            dev = held.device_index
            # Flushed oldest first, one per flush_spacing_ms after the gap, so live fixes interleave.
            release = self._gap_until[dev] + (self._buffered[dev] + 1) * p.flush_spacing_ms
            self._buffered[dev] += 1
            self._pending.append((release, held))
        out: list[Fixes] = []
        keep: list[tuple[FloatArray, Fixes]] = []
        for release, chunk in self._pending:
            due = release <= t_ms
            if due.any():
                out.append(chunk.take(due))
            if not due.all():
                keep.append((release[~due], chunk.take(~due)))
        self._pending = keep
        out.append(fixes.take(~in_gap))
        return Fixes.concat(out)

    def _events(self, t_ms: int, x: FloatArray, y: FloatArray) -> list[Events]:
        """Tamper, battery and Bluetooth companion events that happen in (previous step, t_ms]."""
        p, last = self._p, self._last_ms
        out: list[Events] = []
        began = (self._effect_start > last) & (self._effect_start <= t_ms)
        ended = (self._effect_end > last) & (self._effect_end <= t_ms)
        strap, case = self._effect_kind == STRAP, self._effect_kind == CASE
        out.append(self._event_rows(np.flatnonzero(began & strap), t_ms, STRAP_OPEN))
        out.append(self._event_rows(np.flatnonzero(ended & strap), t_ms, STRAP_CLOSED))
        out.append(self._event_rows(np.flatnonzero(began & case), t_ms, CASE_OPEN))
        self.strap_open = (self.strap_open | (began & strap)) & ~(ended & strap)
        self.case_opened = began & case
        # Battery: drains, warns once below the threshold, is put on the charger some time later.
        dt_h = (t_ms - last) / 3_600_000
        rate = np.where(self.charging, p.charge_pct_per_h, -self._drain)
        self.battery = np.clip(self.battery + rate * dt_h, 0.0, 100.0)
        crossed = ~self.battery_low & ~self.charging & (self.battery < p.battery_low_pct)
        self.battery_low |= crossed
        self._charge_at[crossed] = t_ms + self._rng.uniform(*p.charge_after_s, int(crossed.sum())) * 1000
        plugged = ~self.charging & (self._charge_at <= t_ms)
        full = self.charging & (self.battery >= 100.0)
        self.charging = (self.charging | plugged) & ~full
        self.battery_low &= ~plugged
        self._charge_at[plugged] = np.inf
        on = ~self.silent(t_ms)
        out.append(self._event_rows(np.flatnonzero(crossed & on), t_ms, BATTERY_LOW))
        out.append(self._event_rows(np.flatnonzero(plugged & on), t_ms, CHARGING))
        # Bluetooth link between a bracelet and its subject's phone.
        phone = self._phone_of_device
        paired = np.flatnonzero(phone >= 0)
        apart = np.zeros_like(self.separated)
        gap_m = np.hypot(x[paired] - x[phone[paired]], y[paired] - y[phone[paired]])
        apart[paired] = gap_m > BLUETOOTH_RANGE_M
        out.append(self._event_rows(np.flatnonzero(apart & ~self.separated & on), t_ms, COMPANION_LOST))
        out.append(self._event_rows(np.flatnonzero(~apart & self.separated & on), t_ms, COMPANION_OK))
        self.separated = apart
        return out

    def _event_rows(self, idx: IntArray, t_ms: int, kind: int) -> Events:
        return Events(
            device_index=idx.astype(np.int64),
            ts=t_ms + self._skew_ms[idx],
            type=np.full(idx.size, kind, dtype=np.int64),
            batt=np.round(self.battery[idx]).astype(np.int64),
        )


def _concat_events(parts: list[Events]) -> Events:
    return Events(*(np.concatenate([getattr(e, f) for e in parts]) for f in Events.__slots__))
