"""Zones as stored rows: the columns a zone is written with, and every zone read back for a registry."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg
import numpy as np
import orjson
import shapely
from numpy.typing import NDArray

from emwatch.geo.geojson import ZoneError, zone_from_feature, zone_to_feature
from emwatch.geo.geojson_bulk import geometries_from_geojson, geometries_from_wkb
from emwatch.geo.zone_columns import ZoneColumns
from emwatch.geo.zones import Zone

log = logging.getLogger(__name__)

ZONE_COLUMNS_GEOMETRY_TEXT = (
    "id, name, kind, geometry::text AS geometry, radius_m, subject_id, group_id, jurisdiction_id, schedule,"
    " properties, version"
)
# What a registry needs of every zone, lean: the WKB (migration 013) where there is one, else the
# GeoJSON text; `plain` rows have nothing but their geometry and radius left to check (the table's
# own CHECKs cover kind and one scope), the others are checked one by one by zone_from_feature.
_REGISTRY_ZONES_SQL = (
    "SELECT id, kind, geometry_wkb, CASE WHEN geometry_wkb IS NULL THEN geometry::text END, radius_m,"
    " subject_id, group_id, jurisdiction_id, schedule, NULLIF(properties, '{}'::jsonb),"
    " (properties = '{}'::jsonb AND schedule IS NULL AND id <> ''"
    "  AND coalesce(subject_id, group_id, jurisdiction_id) <> '')"
    " FROM zones ORDER BY id"
)
_ID, _KIND, _WKB, _TEXT, _RADIUS, _SUBJECT, _GROUP, _JUR, _SCHEDULE, _PROPS, _PLAIN = range(11)


def zone_feature_from_row(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A stored zone row as the GeoJSON Feature it was loaded from."""
    props: dict[str, Any] = dict(row["properties"] or {})
    props.update(kind=row["kind"], name=row["name"])
    for key in ("radius_m", "subject_id", "group_id", "jurisdiction_id", "schedule"):
        if row[key] is not None:
            props[key] = row[key]
    props["version"] = row["version"]
    return {"type": "Feature", "id": row["id"], "geometry": row["geometry"], "properties": props}


def zone_row(zone: Zone) -> dict[str, Any]:
    """The column values a zone is stored with (its geometry as GeoJSON, and as WKB for fast loading)."""
    return {
        "id": zone.id, "name": zone.name, "kind": zone.kind, "geometry": zone_to_feature(zone)["geometry"],
        "geometry_wkb": shapely.to_wkb(zone.geometry), "radius_m": zone.radius_m,
        "subject_id": zone.subject_id, "group_id": zone.group_id, "jurisdiction_id": zone.jurisdiction_id,
        "schedule": zone.schedule, "properties": zone.properties,
    }


async def load_zones(conn: asyncpg.Connection | asyncpg.Pool) -> list[Zone]:
    """Every stored zone parsed from its GeoJSON, a `Zone` each (what `load_zone_columns` answers faster)."""
    rows = await conn.fetch(f"SELECT {ZONE_COLUMNS_GEOMETRY_TEXT} FROM zones ORDER BY id")
    geometries, ok = geometries_from_geojson([r["geometry"] for r in rows])
    zones = []
    for row, geometry, checked in zip(rows, geometries.tolist(), ok.tolist(), strict=True):
        feature = zone_feature_from_row(row)
        if checked:
            zones.append(zone_from_feature(feature, geometry))
        else:  # parsed on its own, a bad zone says what is wrong with it
            feature["geometry"] = orjson.loads(row["geometry"])
            zones.append(zone_from_feature(feature))
    return zones


async def load_zone_columns(conn: asyncpg.Connection) -> ZoneColumns:
    """Every stored zone, as columns, checked as `zone_from_feature` checks it (a bad row raises its
    ZoneError). Geometries are parsed in bulk from WKB, or from GeoJSON where a row has no WKB yet; a
    WKB's validity is the one checked when it was written (geometries_from_wkb)."""
    rows = await conn.fetch(_REGISTRY_ZONES_SQL)
    n = len(rows)
    cols: list[Sequence[Any]] = [[r[c] for r in rows] for c in range(11)]  # 3x faster than zip(*rows)
    geometry = np.empty(n, dtype=object)
    ok = np.zeros(n, dtype=bool)
    has_wkb = np.array([b is not None for b in cols[_WKB]], dtype=bool)
    parsers = ((has_wkb, geometries_from_wkb, _WKB), (~has_wkb, geometries_from_geojson, _TEXT))
    for where, parse, source in parsers:
        at = np.flatnonzero(where)
        if len(at):
            geometry[at], ok[at] = parse([cols[source][i] for i in at.tolist()])
    radius = np.array(cols[_RADIUS], dtype=np.float64).reshape(n)  # None: NaN
    is_point = shapely.get_type_id(geometry) == shapely.GeometryType.POINT
    fields_ok = np.where(is_point, np.isfinite(radius) & (radius > 0), np.isnan(radius))
    fields_ok &= np.array(cols[_PLAIN], dtype=bool).reshape(n)
    schedule, properties = list(cols[_SCHEDULE]), list(cols[_PROPS])
    bad = np.flatnonzero(~(ok & fields_ok))
    if len(bad):  # checked one by one: a bad zone's error says what is wrong with it
        await _check_one_by_one(conn, bad, ok, cols, geometry, radius, schedule, properties)
    return ZoneColumns(
        ids=list(cols[_ID]),
        is_inclusion=np.array([k == "inclusion" for k in cols[_KIND]], dtype=bool),
        geometry=geometry,
        radius_m=radius,
        subject_id=list(cols[_SUBJECT]),
        group_id=list(cols[_GROUP]),
        jurisdiction_id=list(cols[_JUR]),
        schedule=schedule,
        properties=properties,
        known_valid=True,
    )


async def _check_one_by_one(
    conn: asyncpg.Connection, rows: NDArray[np.intp], geometry_ok: NDArray[np.bool_],
    cols: list[Sequence[Any]], geometry: NDArray[np.object_], radius: NDArray[np.float64],
    schedule: list[Any], properties: list[Any],
) -> None:
    """Zones that did not pass the bulk checks, each through `zone_from_feature`; their columns are set
    from the Zone it makes. A geometry that failed is parsed again from the row's GeoJSON, the source of
    truth (a WKB that disagrees with it is not used)."""
    redo = [i for i in rows.tolist() if not geometry_ok[i]]
    wkb_ids = [cols[_ID][i] for i in redo if cols[_WKB][i] is not None]
    texts = {i: cols[_TEXT][i] for i in redo if cols[_WKB][i] is None}
    if wkb_ids:
        sql = "SELECT id, geometry::text FROM zones WHERE id = ANY($1::text[])"
        by_id = dict(await conn.fetch(sql, wkb_ids))
        texts.update((i, by_id[cols[_ID][i]]) for i in redo if cols[_WKB][i] is not None)
    parsed, parsed_ok = geometries_from_geojson(list(texts.values()))
    again = dict(zip(texts, zip(parsed.tolist(), parsed_ok.tolist(), strict=True), strict=True))
    stale_wkb = 0
    for i in rows.tolist():
        props: dict[str, Any] = dict(cols[_PROPS][i] or {})
        props.update(kind=cols[_KIND][i], name="")
        for key, col in (("radius_m", _RADIUS), ("subject_id", _SUBJECT), ("group_id", _GROUP),
                         ("jurisdiction_id", _JUR), ("schedule", _SCHEDULE)):
            if cols[col][i] is not None:
                props[key] = cols[col][i]
        feature = {"type": "Feature", "id": cols[_ID][i], "geometry": None, "properties": props}
        try:
            if geometry_ok[i]:
                zone = zone_from_feature(feature, geometry[i])
            else:
                geom, checked = again[i]
                if not checked:  # parsed on its own, a bad zone says what is wrong with it
                    feature["geometry"] = orjson.loads(texts[i])
                zone = zone_from_feature(feature, geom if checked else None)
                stale_wkb += cols[_WKB][i] is not None
        except ZoneError as e:
            raise ZoneError(f"stored zone {cols[_ID][i]!r}: {e}") from None
        geometry[i] = zone.geometry
        radius[i] = np.nan if zone.radius_m is None else zone.radius_m
        schedule[i], properties[i] = zone.schedule, zone.properties or None
    if stale_wkb:
        log.warning("%d zone(s) with a stored WKB that is no zone geometry: read from GeoJSON", stale_wkb)


async def backfill_zone_wkb(conn: asyncpg.Connection, chunk: int = 50_000) -> int:
    """Write the WKB of zones stored without one (before migration 013, or by a writer that only set the
    GeoJSON); returns how many. A row whose GeoJSON is no zone geometry keeps none. One transaction: a
    running service is told once (zones_changed), not once per chunk."""
    async with conn.transaction():
        return await _backfill(conn, chunk)


async def _backfill(conn: asyncpg.Connection, chunk: int) -> int:
    written, after = 0, ""
    while rows := await conn.fetch(
        "SELECT id, geometry::text FROM zones WHERE geometry_wkb IS NULL AND id > $1 ORDER BY id LIMIT $2",
        after, chunk,
    ):
        geoms, ok = geometries_from_geojson([r[1] for r in rows])
        ids = [r[0] for r, good in zip(rows, ok.tolist(), strict=True) if good]
        await conn.execute(
            "UPDATE zones SET geometry_wkb = u.wkb FROM unnest($1::text[], $2::bytea[]) AS u(id, wkb)"
            " WHERE zones.id = u.id AND zones.geometry_wkb IS NULL",
            ids, list(shapely.to_wkb(geoms[ok])),
        )
        written, after = written + len(ids), rows[-1][0]
    return written
