"""Zones to and from GeoJSON Features ([lon, lat] WGS84), rejecting anything malformed."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import shapely
import shapely.geometry

from emwatch.geo.zones import Zone, ZoneError, ZoneKind

__all__ = ["ZoneError", "zone_from_feature", "zone_to_feature", "zones_from_geojson"]

SCOPE_KEYS = ("subject_id", "group_id", "jurisdiction_id")
_RESERVED = {"kind", "name", "radius_m", "schedule", *SCOPE_KEYS}
_GEOMETRY_TYPES = ("Polygon", "MultiPolygon", "Point")


def zones_from_geojson(obj: Mapping[str, Any]) -> list[Zone]:
    """Zones of a Feature or FeatureCollection; a bad feature's error names its position."""
    if not isinstance(obj, Mapping):
        raise ZoneError("expected a GeoJSON object")
    if obj.get("type") == "Feature":
        return [zone_from_feature(obj)]
    if obj.get("type") != "FeatureCollection":
        raise ZoneError(f"expected type Feature or FeatureCollection, got {obj.get('type')!r}")
    features = obj.get("features")
    if not isinstance(features, list):
        raise ZoneError("FeatureCollection needs a 'features' list")
    zones = []
    for i, feature in enumerate(features):
        try:
            zones.append(zone_from_feature(feature))
        except ZoneError as e:
            raise ZoneError(f"features[{i}]: {e}") from None
    ids = [z.id for z in zones]
    if len(set(ids)) != len(ids):
        raise ZoneError(f"duplicate zone id {next(i for i in ids if ids.count(i) > 1)!r}")
    return zones


def zone_from_feature(feature: Mapping[str, Any], geometry: shapely.Geometry | None = None) -> Zone:
    """Parse one GeoJSON Feature into a Zone, or raise ZoneError saying what is wrong.

    `geometry`, when given, is the feature's geometry already parsed and checked in bulk
    (geojson_bulk.geometries_from_geojson) and is used instead of parsing feature["geometry"].
    """
    if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
        raise ZoneError("expected a GeoJSON object with type 'Feature'")
    props = feature.get("properties")
    if not isinstance(props, Mapping):
        raise ZoneError("'properties' must be an object")
    zone_id = _zone_id(feature, props)
    kind = props.get("kind")
    if kind not in ("inclusion", "exclusion"):
        raise ZoneError(f"kind must be 'inclusion' or 'exclusion', got {kind!r}")
    name = props.get("name", "")
    if not isinstance(name, str):
        raise ZoneError("name must be a string")
    if geometry is None:
        geometry = _geometry(feature.get("geometry"))
    radius_m = _radius(props.get("radius_m"), is_point=isinstance(geometry, shapely.Point))
    scope = {k: props[k] for k in SCOPE_KEYS if props.get(k) is not None}
    if len(scope) != 1:
        found = ", ".join(scope) or "none"
        raise ZoneError(f"exactly one of subject_id, group_id, jurisdiction_id must be set (found {found})")
    ((scope_key, scope_value),) = scope.items()
    if not isinstance(scope_value, str) or not scope_value:
        raise ZoneError(f"{scope_key} must be a non-empty string")
    schedule = props.get("schedule")
    if schedule is not None and not isinstance(schedule, Mapping):
        raise ZoneError("schedule must be an object or null")
    buffer_m = props.get("buffer_m")
    if buffer_m is not None and (
        kind != "exclusion" or isinstance(buffer_m, bool) or not isinstance(buffer_m, int | float)
        or not 0 < buffer_m <= 50_000
    ):
        raise ZoneError("buffer_m must be a number of metres in (0, 50000], on exclusion zones only")
    used = _RESERVED | ({"id"} if "id" not in feature else set())
    return Zone(
        id=zone_id,
        kind=cast(ZoneKind, kind),
        geometry=geometry,
        radius_m=radius_m,
        name=name,
        schedule=dict(schedule) if schedule is not None else None,
        properties={k: v for k, v in props.items() if k not in used},
        **{scope_key: scope_value},
    )


def zone_to_feature(zone: Zone) -> dict[str, Any]:
    """The GeoJSON Feature that zone_from_feature turns back into an equal Zone."""
    props: dict[str, Any] = dict(zone.properties)
    props.update(kind=zone.kind, name=zone.name, schedule=zone.schedule)
    for key in SCOPE_KEYS:
        if getattr(zone, key) is not None:
            props[key] = getattr(zone, key)
    if zone.radius_m is not None:
        props["radius_m"] = zone.radius_m
    geometry = _listify(shapely.geometry.mapping(zone.geometry))
    return {"type": "Feature", "id": zone.id, "geometry": geometry, "properties": props}


def _zone_id(feature: Mapping[str, Any], props: Mapping[str, Any]) -> str:
    raw = feature.get("id", props.get("id"))
    if isinstance(raw, bool) or not isinstance(raw, str | int) or raw == "":
        raise ZoneError("zone needs an id (Feature 'id' or properties.id): a non-empty string or integer")
    return str(raw)


def _geometry(obj: Any) -> shapely.Geometry:
    if not isinstance(obj, Mapping):
        raise ZoneError("geometry is missing")
    if obj.get("type") not in _GEOMETRY_TYPES:
        raise ZoneError(f"geometry type must be Polygon, MultiPolygon or Point, got {obj.get('type')!r}")
    try:
        geom = shapely.force_2d(shapely.geometry.shape(obj))
    except Exception as e:  # shapely raises a zoo of types for malformed coordinate nesting
        raise ZoneError(f"malformed {obj['type']} coordinates: {e}") from None
    if geom.is_empty:
        raise ZoneError("geometry is empty")
    xy = shapely.get_coordinates(geom)
    if not np.isfinite(xy).all():
        raise ZoneError("coordinates must be finite numbers")
    if (np.abs(xy[:, 0]) > 180).any() or (np.abs(xy[:, 1]) > 90).any():
        raise ZoneError("coordinates must be [lon, lat] with lon in [-180, 180] and lat in [-90, 90]")
    if not shapely.is_valid(geom):
        raise ZoneError(f"invalid geometry: {shapely.is_valid_reason(geom)}")
    return geom


def _radius(raw: Any, *, is_point: bool) -> float | None:
    if not is_point:
        if raw is not None:
            raise ZoneError("radius_m is only allowed with a Point geometry")
        return None
    if raw is None:
        raise ZoneError("a Point zone (circle) needs radius_m")
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
        raise ZoneError(f"radius_m must be a positive number of metres, got {raw!r}")
    return float(raw)


def _listify(obj: Any) -> Any:
    """mapping() nests tuples; JSON (and equality with parsed input) wants lists."""
    if isinstance(obj, tuple | list):
        return [_listify(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: _listify(v) for k, v in obj.items()}
    return obj
