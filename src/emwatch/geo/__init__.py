"""Pure geometry: zones, their H3 index, distances. No I/O, no asyncio."""

from emwatch.geo.cells import cells_for, compact_cell_key, haversine_m
from emwatch.geo.geojson import zone_from_feature, zone_to_feature, zones_from_geojson
from emwatch.geo.zone_build import is_shared_exclusion
from emwatch.geo.zone_index import ZoneIndex
from emwatch.geo.zones import Zone, ZoneError, ZoneKind

__all__ = [
    "Zone",
    "ZoneError",
    "ZoneIndex",
    "ZoneKind",
    "cells_for",
    "compact_cell_key",
    "haversine_m",
    "is_shared_exclusion",
    "zone_from_feature",
    "zone_to_feature",
    "zones_from_geojson",
]
