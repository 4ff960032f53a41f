"""Read the registry snapshot and the open episodes back from the database."""

from __future__ import annotations

from typing import Any

import asyncpg
import numpy as np

from emwatch.alerts.episodes import EpisodeKey
from emwatch.alerts.severity import SeverityOverrideRow
from emwatch.geo.geojson import zone_from_feature
from emwatch.ingest.protocol import SOURCE_CODES
from emwatch.registry import ContactBanRow, DeviceRow, JurisdictionRow, Registry, SubjectRow
from emwatch.rules.accuracy import accuracy_m
from emwatch.rules.permits import PermitRow
from emwatch.rules.zone_versions import ZoneVersionRow
from emwatch.store.zone_rows import load_zone_columns, load_zones, zone_feature_from_row, zone_row

__all__ = [  # zone rows live in zone_rows; their readers and writers import them from here too
    "load_registry", "load_zone_columns", "load_zones", "zone_feature_from_row", "zone_row",
]


async def load_registry(
    pool: asyncpg.Pool, h3_resolution: int, versions_within_s: float = 86_400
) -> Registry:
    """A fresh registry snapshot from the database (with the zone versions superseded lately)."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        jurisdictions = [
            JurisdictionRow(r["id"], r["parent_id"])
            for r in await conn.fetch("SELECT id, parent_id FROM jurisdictions")
        ]
        subjects = [
            SubjectRow(r["id"], r["jurisdiction_id"], r["risk_level"], tuple(r["groups"]), r["status"])
            for r in await conn.fetch("SELECT id, jurisdiction_id, risk_level, groups, status FROM subjects")
        ]
        devices = [
            DeviceRow(r["id"], r["kind"], r["subject_id"], r["protects_subject_id"])
            for r in await conn.fetch(
                "SELECT id, kind, subject_id, protects_subject_id FROM devices ORDER BY id"
            )
        ]
        zones = await load_zone_columns(conn)
        bans = [
            ContactBanRow(r["subject_a"], r["subject_b"], r["radius_m"], r["min_seconds"])
            for r in await conn.fetch(
                "SELECT subject_a, subject_b, radius_m, min_seconds FROM subject_contact_bans"
            )
        ]
        permits = await load_permits(conn)
        severity = await load_severity_overrides(conn)
        versions = await load_zone_versions(conn, versions_within_s)
    return Registry.build(
        jurisdictions, subjects, devices, zones, h3_resolution, bans, permits, severity, versions
    )


async def load_zone_versions(
    conn: asyncpg.Connection | asyncpg.Pool, within_s: float
) -> list[ZoneVersionRow]:
    """Versions of current zones superseded within the last `within_s` seconds, with their validity.

    Only the geometry, kind, radius and schedule are versioned; the rest is the zone's as it is now.
    """
    rows = await conn.fetch(
        "SELECT n.zone_id, v.kind, v.geometry, v.radius_m, v.schedule,"
        " (extract(epoch FROM v.valid_from) * 1000)::bigint AS from_ms,"
        " (extract(epoch FROM n.valid_from) * 1000)::bigint AS until_ms,"
        " z.name, z.subject_id, z.group_id, z.jurisdiction_id, z.properties, z.version"
        # From each version that superseded another lately (n) back to the one it superseded (v): going
        # forward from every version probed the index once per zone (2.5 s at 100k subjects, 250k zones).
        " FROM zone_versions n JOIN zones z ON z.id = n.zone_id"
        " JOIN LATERAL (SELECT w.kind, w.geometry, w.radius_m, w.schedule, w.valid_from"
        "  FROM zone_versions w WHERE w.zone_id = n.zone_id AND w.version < n.version"
        "  ORDER BY w.version DESC LIMIT 1) v ON true"
        " WHERE n.version > 1 AND n.valid_from > now() - make_interval(secs => $1)",
        float(within_s),
    )
    out = []
    for r in rows:
        # the current zone's feature (zone_feature_from_row), with the old version's fields
        props: dict[str, Any] = dict(r["properties"] or {})
        props.update(kind=r["kind"], name=r["name"], schedule=r["schedule"], version=r["version"])
        for key in ("radius_m", "subject_id", "group_id", "jurisdiction_id"):
            if r[key] is not None:
                props[key] = r[key]
        feature = {"type": "Feature", "id": r["zone_id"], "geometry": r["geometry"], "properties": props}
        out.append(ZoneVersionRow(r["zone_id"], r["from_ms"], r["until_ms"], zone_from_feature(feature)))
    return out


async def load_severity_overrides(conn: asyncpg.Connection | asyncpg.Pool) -> list[SeverityOverrideRow]:
    """Every per-jurisdiction severity override (migration 010)."""
    rows = await conn.fetch("SELECT jurisdiction_id, rule, risk_level, severity FROM severity_overrides")
    return [
        SeverityOverrideRow(r["jurisdiction_id"], r["rule"], r["risk_level"], r["severity"]) for r in rows
    ]


async def load_permits(conn: asyncpg.Connection | asyncpg.Pool) -> list[PermitRow]:
    """Approved permits that still matter: running, upcoming, or ended within the last week."""
    rows = await conn.fetch(
        "SELECT id, subject_id, (extract(epoch FROM starts_at) * 1000)::bigint AS starts_ms,"
        " (extract(epoch FROM ends_at) * 1000)::bigint AS ends_ms, grace_s, zone_ids FROM permits"
        " WHERE status = 'approved' AND ends_at > now() - interval '7 days'"
    )
    return [
        PermitRow(
            r["id"], r["subject_id"], r["starts_ms"], r["ends_ms"], r["grace_s"] * 1000, tuple(r["zone_ids"])
        )
        for r in rows
    ]


async def load_open_episodes(pool: asyncpg.Pool) -> list[EpisodeKey]:
    """Episodes still open, so a restart neither duplicates nor forgets them."""
    rows = await pool.fetch("SELECT subject_id, rule, zone_id FROM alerts WHERE cleared_at IS NULL")
    return [EpisodeKey(r["subject_id"], r["rule"], r["zone_id"] or "") for r in rows]


async def known_device_ids(pool: asyncpg.Pool, ids: set[str]) -> set[str]:
    """Which of these device ids exist in the database now."""
    rows = await pool.fetch("SELECT id FROM devices WHERE id = ANY($1::text[])", list(ids))
    return {r["id"] for r in rows}


async def load_device_positions(
    pool: asyncpg.Pool, days: int = 2
) -> list[tuple[str, int, float, float, float]]:
    """Each device's newest stored fix (device, ts ms, lat, lon, error radius m), so a restart keeps
    watermarks, silence timers and the movement baseline (with its accuracy) instead of starting blind."""
    # The last fix of each device's newest minute (device_minutes, migration 015): one probe per device.
    rows = await pool.fetch(
        "SELECT f.device_id, (extract(epoch FROM f.ts) * 1000)::bigint AS ts, f.lat, f.lon, f.acc, f.src"
        " FROM (SELECT device_id, max(minute) AS minute FROM device_minutes GROUP BY device_id) m"
        " CROSS JOIN LATERAL (SELECT * FROM fixes WHERE minute = m.minute AND device_id = m.device_id"
        " ORDER BY ts DESC LIMIT 1) f"
        " WHERE m.minute >= emwatch_minute(now() - make_interval(days => $1))"
        " AND f.ts > now() - make_interval(days => $1)",
        days,
    )
    # The same radius a live fix gets: its own `acc`, else its source's default (a cell-tower fix is wide).
    radius = accuracy_m(
        np.array([np.nan if r["acc"] is None else r["acc"] for r in rows], dtype=np.float32),
        np.array([SOURCE_CODES.get(r["src"], 0) for r in rows], dtype=np.int8),
    )
    return [
        (r["device_id"], r["ts"], r["lat"], r["lon"], float(m)) for r, m in zip(rows, radius, strict=True)
    ]
