"""Registry, alert and position reads limited to a user's Scope: rows outside it are never fetched."""

from __future__ import annotations

from typing import Any

import asyncpg

from emwatch.store.repo import ALERT_COLUMNS, NotFound, subject_latest_fixes
from emwatch.store.users import Scope

# $1 everything, $2 jurisdictions, $3 subjects: see Scope.args().
VISIBLE = "($1::bool OR {s}.jurisdiction_id = ANY($2::text[]) OR {s}.id = ANY($3::text[]))"
_ZONE_VISIBLE = (
    "($1::bool OR z.jurisdiction_id = ANY($4::text[])"
    f" OR EXISTS (SELECT 1 FROM subjects s WHERE s.id = z.subject_id AND {VISIBLE.format(s='s')})"
    " OR (z.group_id IS NOT NULL AND EXISTS"
    f" (SELECT 1 FROM subjects s WHERE z.group_id = ANY(s.groups) AND {VISIBLE.format(s='s')})))"
)
LIFECYCLE_COLUMNS = (
    ", a.lifecycle, a.resolved_at, a.resolved_by, a.resolution_category, a.resolution_note,"
    " a.escalation_level, a.escalated_to, a.escalated_at"
)


def _zone_args(scope: Scope) -> tuple[bool, list[str], list[str], list[str]]:
    return (*scope.args(), sorted(scope.zone_jurisdictions))


async def list_jurisdictions(
    pool: asyncpg.Pool, scope: Scope, limit: int, offset: int
) -> list[dict[str, Any]]:
    """Jurisdictions the user works in, below it, and above it (the tree their zones come from)."""
    rows = await pool.fetch(
        "SELECT * FROM jurisdictions WHERE $1::bool OR id = ANY($2::text[]) ORDER BY id LIMIT $3 OFFSET $4",
        scope.everything, sorted(scope.zone_jurisdictions), limit, offset,
    )
    return [dict(r) for r in rows]


async def list_subjects(
    pool: asyncpg.Pool, scope: Scope, limit: int, offset: int,
    jurisdiction_id: str | None = None, risk_level: str | None = None,
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        f"SELECT * FROM subjects s WHERE {VISIBLE.format(s='s')}"
        " AND ($4::text IS NULL OR s.jurisdiction_id = $4) AND ($5::text IS NULL OR s.risk_level = $5)"
        " ORDER BY s.id LIMIT $6 OFFSET $7",
        *scope.args(), jurisdiction_id, risk_level, limit, offset,
    )
    return [dict(r) for r in rows]


async def get_subject(pool: asyncpg.Pool, scope: Scope, subject_id: str) -> dict[str, Any]:
    """The subject, or NotFound when it does not exist or is outside the scope (indistinguishably)."""
    row = await pool.fetchrow(
        f"SELECT * FROM subjects s WHERE s.id = $4 AND {VISIBLE.format(s='s')}", *scope.args(), subject_id
    )
    if row is None:
        raise NotFound(f"no subject {subject_id!r}")
    return dict(row)


async def list_devices(pool: asyncpg.Pool, scope: Scope, limit: int, offset: int) -> list[dict[str, Any]]:
    """Devices of visible subjects (unassigned devices only for an admin)."""
    rows = await pool.fetch(
        "SELECT d.* FROM devices d LEFT JOIN subjects s ON s.id = d.subject_id"
        f" WHERE $1::bool OR (s.id IS NOT NULL AND {VISIBLE.format(s='s')}) ORDER BY d.id LIMIT $4 OFFSET $5",
        *scope.args(), limit, offset,
    )
    return [dict(r) for r in rows]


async def get_device(pool: asyncpg.Pool, scope: Scope, device_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(
        "SELECT d.* FROM devices d LEFT JOIN subjects s ON s.id = d.subject_id"
        f" WHERE d.id = $4 AND ($1::bool OR (s.id IS NOT NULL AND {VISIBLE.format(s='s')}))",
        *scope.args(), device_id,
    )
    if row is None:
        raise NotFound(f"no device {device_id!r}")
    return dict(row)


# What a zone is shown as (zone_rows.zone_feature_from_row): not the WKB copy of its geometry (013).
_ZONE_COLUMNS = (
    "z.id, z.name, z.kind, z.geometry, z.radius_m, z.subject_id, z.group_id, z.jurisdiction_id, z.schedule,"
    " z.properties, z.version"
)


async def list_zones(pool: asyncpg.Pool, scope: Scope, limit: int, offset: int) -> list[dict[str, Any]]:
    """Zones that apply to visible subjects: their own, their groups', their jurisdictions' and above."""
    rows = await pool.fetch(
        f"SELECT {_ZONE_COLUMNS} FROM zones z WHERE {_ZONE_VISIBLE} ORDER BY z.id LIMIT $5 OFFSET $6",
        *_zone_args(scope), limit, offset,
    )
    return [dict(r) for r in rows]


async def get_zone(pool: asyncpg.Pool, scope: Scope, zone_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(f"SELECT {_ZONE_COLUMNS} FROM zones z WHERE z.id = $5 AND {_ZONE_VISIBLE}",
                              *_zone_args(scope), zone_id)
    if row is None:
        raise NotFound(f"no zone {zone_id!r}")
    return dict(row)


async def list_alerts(
    pool: asyncpg.Pool, scope: Scope, *, status: str | None = None, lifecycle: str | None = None,
    since: int | None = None, subject_id: str | None = None, jurisdiction_id: str | None = None,
    rule: str | None = None, severity: str | None = None, limit: int = 500,
) -> list[dict[str, Any]]:
    """Alerts of visible subjects, newest first; `since` keeps alerts with an event after that seq."""
    rows = await pool.fetch(
        f"SELECT {ALERT_COLUMNS}{LIFECYCLE_COLUMNS} FROM alerts a JOIN subjects s ON s.id = a.subject_id"
        f" WHERE {VISIBLE.format(s='s')}"
        " AND ($4::text IS NULL OR a.status = $4) AND ($5::text IS NULL OR a.lifecycle = $5)"
        " AND ($6::text IS NULL OR a.subject_id = $6) AND ($7::text IS NULL OR s.jurisdiction_id = $7)"
        " AND ($8::text IS NULL OR a.rule = $8) AND ($9::text IS NULL OR a.severity = $9)"
        " AND ($10::bigint IS NULL OR EXISTS"
        " (SELECT 1 FROM alert_events e WHERE e.alert_id = a.id AND e.seq > $10))"
        " ORDER BY a.id DESC LIMIT $11",
        *scope.args(), status, lifecycle, subject_id, jurisdiction_id, rule, severity, since, limit,
    )
    return [dict(r) for r in rows]


async def get_alert(pool: asyncpg.Pool, scope: Scope, alert_id: int) -> dict[str, Any]:
    """One visible alert with its lifecycle columns, or NotFound."""
    row = await pool.fetchrow(
        f"SELECT {ALERT_COLUMNS}{LIFECYCLE_COLUMNS}, a.created_at FROM alerts a"
        f" JOIN subjects s ON s.id = a.subject_id WHERE a.id = $4 AND {VISIBLE.format(s='s')}",
        *scope.args(), alert_id,
    )
    if row is None:
        raise NotFound(f"no alert {alert_id}")
    return dict(row)


async def latest_positions(pool: asyncpg.Pool, scope: Scope) -> list[dict[str, Any]]:
    """The last stored fix of every visible subject that has one, with its open-alert count."""
    rows = await pool.fetch(
        "SELECT s.id AS subject_id, s.name, s.jurisdiction_id, s.risk_level, s.status,"
        " f.device_id, (extract(epoch FROM f.ts) * 1000)::bigint AS ts, f.lat, f.lon, f.acc,"
        " (SELECT count(*) FROM alerts a WHERE a.subject_id = s.id AND a.cleared_at IS NULL) AS open_alerts"
        " FROM subjects s CROSS JOIN LATERAL (SELECT *"
        f" FROM {subject_latest_fixes('s.id')} ORDER BY ts DESC LIMIT 1) f"
        f" WHERE {VISIBLE.format(s='s')} ORDER BY s.id",
        *scope.args(),
    )
    return [dict(r) for r in rows]
