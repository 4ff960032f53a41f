"""Zone schedules: weekly time windows in a local time zone, evaluated for many (zone, instant) at once.

A zone's `schedule` (GeoJSON property) looks like
`{"tz": "Asia/Shanghai", "windows": [{"days": ["MO", "TU"], "start": "22:00", "end": "06:00"}]}`:
the zone is active inside any window. A window whose end is not after its start runs past midnight
into the next day (a curfew). `days` name the day the window starts on; omitted, every day.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from emwatch.rules.runs import expand_runs

log = logging.getLogger(__name__)

DAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
DEFAULT_TZ = "Asia/Shanghai"
MINUTES_PER_DAY = 1440
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY


class ScheduleError(ValueError):
    """A schedule that cannot be understood; the message says why."""


@dataclass(frozen=True, slots=True)
class Window:
    """One weekly window: starts on `day` (0 = Monday) at `start` minutes, lasts `length` minutes."""

    day: int
    start: int
    length: int


def _minutes(text: Any, what: str) -> int:
    if not isinstance(text, str) or len(text) != 5 or text[2] != ":":
        raise ScheduleError(f"{what} must look like HH:MM, got {text!r}")
    hours, minutes = int(text[:2]), int(text[3:])
    if not (0 <= hours <= 24 and 0 <= minutes < 60 and hours * 60 + minutes <= MINUTES_PER_DAY):
        raise ScheduleError(f"{what} {text!r} is not a time of day")
    return hours * 60 + minutes


def parse_schedule(schedule: Mapping[str, Any]) -> tuple[str, list[Window]]:
    """(time zone, windows) of a schedule object; raises ScheduleError with a reason."""
    tz = schedule.get("tz", DEFAULT_TZ)
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {tz!r}") from exc
    raw = schedule.get("windows")
    if not isinstance(raw, list) or not raw:
        raise ScheduleError("schedule needs a non-empty list of windows")
    windows = []
    for item in raw:
        if not isinstance(item, Mapping):
            raise ScheduleError("each window must be an object")
        start, end = _minutes(item.get("start"), "start"), _minutes(item.get("end"), "end")
        length = end - start if end > start else end + MINUTES_PER_DAY - start
        days = item.get("days", list(DAYS))
        if not isinstance(days, list) or not days or any(d not in DAYS for d in days):
            raise ScheduleError(f"days must be a list of {', '.join(DAYS)}")
        windows += [Window(DAYS.index(d), start, length) for d in days]
    return str(tz), windows


@dataclass(frozen=True, slots=True)
class ScheduleTable:
    """All windows of all scheduled zones as flat arrays (zones without a schedule are always active)."""

    scheduled: NDArray[np.bool_]  # per zone
    window_zone: NDArray[np.int32]
    window_start: NDArray[np.int32]  # minute of the week (0 = Monday 00:00 local)
    window_length: NDArray[np.int32]
    window_tz: NDArray[np.int16]  # index into tz_names
    tz_names: tuple[str, ...]

    @classmethod
    def build(cls, schedules: Sequence[Mapping[str, Any] | None]) -> ScheduleTable:
        zones, starts, lengths, tzs = [], [], [], []
        tz_names: list[str] = []
        usable: list[bool] = []
        for z, schedule in enumerate(schedules):
            usable.append(schedule is not None)
            if schedule is None:
                continue
            try:
                tz, windows = parse_schedule(schedule)
            except ScheduleError as exc:
                # The API refuses bad schedules; one that got in another way keeps its zone in force
                # around the clock: a false alarm is better than a missed curfew breach.
                log.error("zone #%d has an unusable schedule (%s); treating it as always in force", z, exc)
                usable[-1] = False
                continue
            if tz not in tz_names:
                tz_names.append(tz)
            for w in windows:
                zones.append(z)
                starts.append(w.day * MINUTES_PER_DAY + w.start)
                lengths.append(w.length)
                tzs.append(tz_names.index(tz))
        scheduled = np.array(usable, dtype=bool)
        return cls(
            scheduled, np.array(zones, np.int32), np.array(starts, np.int32), np.array(lengths, np.int32),
            np.array(tzs, np.int16), tuple(tz_names),
        )

    def active(self, zone: NDArray[np.int32], ts_ms: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each zone is active at each instant (pairs, not a cross product)."""
        out = ~self.scheduled[zone]
        rows = np.flatnonzero(self.scheduled[zone])
        if len(rows) == 0 or len(self.window_zone) == 0:
            return out
        order = np.argsort(self.window_zone, kind="stable")
        wz = self.window_zone[order]
        lo = np.searchsorted(wz, zone[rows], side="left")
        hi = np.searchsorted(wz, zone[rows], side="right")
        run, at = expand_runs(lo, hi - lo)
        owner = rows[run]
        window = order[at]
        minute = self._minute_of_week(ts_ms[owner], self.window_tz[window])
        # Minutes since the window's start, wrapping around the week (Sunday night → Monday morning).
        inside = (minute - self.window_start[window]) % MINUTES_PER_WEEK < self.window_length[window]
        hit = np.zeros(len(zone), dtype=bool)
        np.logical_or.at(hit, owner[inside], True)
        out[rows] = hit[rows]
        return out

    def _minute_of_week(self, ts_ms: NDArray[np.int64], tz: NDArray[np.int16]) -> NDArray[np.int64]:
        """Local minute of the week; the UTC offset is looked up once per distinct (tz, hour)."""
        minute = np.empty(len(ts_ms), dtype=np.int64)
        hours = ts_ms // 3_600_000
        for t in np.unique(tz).tolist():
            sel = np.flatnonzero(tz == t)
            zone = ZoneInfo(self.tz_names[t])
            uniq, inverse = np.unique(hours[sel], return_inverse=True)
            # Offsets only change on whole hours or half hours in practice; per-hour lookup is exact
            # enough for curfew windows and keeps the lookup count tiny.
            offsets = np.array([
                datetime.fromtimestamp(h * 3600, tz=UTC).astimezone(zone).utcoffset().total_seconds()  # type: ignore[union-attr]
                for h in uniq.tolist()
            ], dtype=np.int64)
            local_s = ts_ms[sel] // 1000 + offsets[inverse]
            # 1970-01-01 was a Thursday: shift so that minute 0 is Monday 00:00.
            minute[sel] = ((local_s // 60) + 3 * MINUTES_PER_DAY) % MINUTES_PER_WEEK
        return minute
