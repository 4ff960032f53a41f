"""Zones as columns: what a registry and its ZoneIndex keep of each zone, one array or list per field.

A `Zone` object per stored row cost 12 s of a 700k-subject startup (1.75M zones); the database load
fills these columns instead, and `Registry.build` / `ZoneIndex.build` work on them either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import shapely
from numpy.typing import NDArray

from emwatch.geo.zones import Zone, ZoneKind


@dataclass(frozen=True, slots=True, eq=False)
class ZoneColumns(Sequence[Zone]):
    """Zone i's fields at position i of each column. As a sequence, item i is a `Zone` rebuilt on access
    (without its name, which a registry does not keep)."""

    ids: list[str]
    is_inclusion: NDArray[np.bool_]
    geometry: NDArray[np.object_]  # Polygon/MultiPolygon, or the centre Point of a circle
    radius_m: NDArray[np.float64]  # NaN: not a circle
    subject_id: list[str | None]  # exactly one of the three scopes is set per zone
    group_id: list[str | None]
    jurisdiction_id: list[str | None]
    schedule: list[dict[str, Any] | None]
    properties: list[dict[str, Any] | None]  # None: no properties ({})
    # True when every geometry is known to be valid (checked as it was loaded, or as its WKB was written):
    # the index need not ask GEOS again.
    known_valid: bool = False

    @classmethod
    def from_zones(cls, zones: Sequence[Zone]) -> ZoneColumns:
        """The columns of `zones`, in order (the same object when it already is columns)."""
        if isinstance(zones, ZoneColumns):
            return zones
        geometry = np.empty(len(zones), dtype=object)
        geometry[:] = [z.geometry for z in zones]
        return cls(
            ids=[z.id for z in zones],
            is_inclusion=np.array([z.kind == "inclusion" for z in zones], dtype=bool),
            geometry=geometry,
            radius_m=np.array([np.nan if z.radius_m is None else z.radius_m for z in zones], np.float64),
            subject_id=[z.subject_id for z in zones],
            group_id=[z.group_id for z in zones],
            jurisdiction_id=[z.jurisdiction_id for z in zones],
            schedule=[z.schedule for z in zones],
            properties=[z.properties or None for z in zones],
        )

    @property
    def is_circle(self) -> NDArray[np.bool_]:
        return ~np.isnan(self.radius_m)

    @property
    def buffer_m(self) -> NDArray[np.float64]:
        """Each zone's `Zone.buffer_m`, NaN where it has none."""
        out = np.full(len(self.ids), np.nan)
        for i in (i for i, p in enumerate(self.properties) if p):  # most zones have no properties
            out[i] = self[i].buffer_m or np.nan
        return out

    def property_values(self, key: str) -> list[Any]:
        """properties[key] of each zone (None where absent)."""
        return [p.get(key) if p else None for p in self.properties]

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Zone: ...
    @overload
    def __getitem__(self, i: slice) -> list[Zone]: ...
    def __getitem__(self, i: int | slice) -> Zone | list[Zone]:
        if isinstance(i, slice):
            return [self[k] for k in range(len(self))[i]]
        radius = float(self.radius_m[i])
        kind: ZoneKind = "inclusion" if self.is_inclusion[i] else "exclusion"
        geometry: shapely.Geometry = self.geometry[i]
        return Zone(
            self.ids[i], kind, geometry, None if np.isnan(radius) else radius,
            subject_id=self.subject_id[i], group_id=self.group_id[i], jurisdiction_id=self.jurisdiction_id[i],
            schedule=self.schedule[i], properties=dict(self.properties[i] or {}),
        )
