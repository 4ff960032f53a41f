"""Zones: what a subject must stay inside (inclusion) or out of (exclusion)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import shapely

ZoneKind = Literal["inclusion", "exclusion"]


@dataclass(frozen=True, slots=True)
class Zone:
    """One geofence. `geometry` is a Polygon/MultiPolygon, or the centre Point of a circle."""

    id: str
    kind: ZoneKind
    geometry: shapely.Geometry
    radius_m: float | None = None  # set exactly when the zone is a circle
    name: str = ""
    subject_id: str | None = None  # exactly one of subject_id / group_id / jurisdiction_id is set
    group_id: str | None = None
    jurisdiction_id: str | None = None
    schedule: dict[str, Any] | None = None  # placeholder for the schedules issue
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def is_circle(self) -> bool:
        return self.radius_m is not None

    @property
    def buffer_m(self) -> float | None:
        """Width of the warning ring around an exclusion zone (`approach` alerts), if it has one."""
        value = self.properties.get("buffer_m")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class ZoneError(ValueError):
    """A zone definition that cannot be accepted; the message is a reason a person can act on."""
