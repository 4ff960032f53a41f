"""Queries behind the HTTP API: registry CRUD, alerts, alert history, tracks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from emwatch.store.writer import ALERT_SEQ_LOCK


class Conflict(Exception):
    """The row exists already."""


class NotFound(Exception):
    """No such row."""


async def insert_row(pool: asyncpg.Pool, table: str, values: dict[str, Any]) -> dict[str, Any]:
    """Insert one registry row (table name from our own code, never from a request)."""
    cols = list(values)
    sql = (f"INSERT INTO {table} ({', '.join(cols)})"
           f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})"
           " RETURNING *")
    try:
        row = await pool.fetchrow(sql, *values.values())
    except asyncpg.UniqueViolationError as exc:
        raise Conflict(f"{table[:-1]} {values.get('id')!r} exists already") from exc
    except asyncpg.ForeignKeyViolationError as exc:
        raise NotFound(exc.detail or str(exc)) from exc
    assert row is not None
    return dict(row)


async def list_rows(pool: asyncpg.Pool, table: str, limit: int, offset: int) -> list[dict[str, Any]]:
    rows = await pool.fetch(f"SELECT * FROM {table} ORDER BY id LIMIT $1 OFFSET $2", limit, offset)
    return [dict(r) for r in rows]


async def get_row(pool: asyncpg.Pool, table: str, row_id: str) -> dict[str, Any]:
    row = await pool.fetchrow(f"SELECT * FROM {table} WHERE id = $1", row_id)
    if row is None:
        raise NotFound(f"no {table[:-1]} {row_id!r}")
    return dict(row)


async def insert_zones(pool: asyncpg.Pool, rows: list[dict[str, Any]]) -> None:
    """Insert several zones atomically."""
    async with pool.acquire() as conn, conn.transaction():
        for values in rows:
            cols = list(values)
            sql = (f"INSERT INTO zones ({', '.join(cols)})"
                   f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})")
            try:
                await conn.execute(sql, *values.values())
            except asyncpg.UniqueViolationError as exc:
                raise Conflict(f"zone {values['id']!r} exists already") from exc
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound(exc.detail or str(exc)) from exc


ALERT_COLUMNS = (
    "a.id, a.rule, a.subject_id, s.jurisdiction_id, a.device_id, a.zone_id, a.severity, a.status,"
    " a.opened_at, a.cleared_at, a.acknowledged_at, a.acknowledged_by, a.lat, a.lon"
)


async def list_alerts(
    pool: asyncpg.Pool, status: str | None, since: int | None, subject_id: str | None, limit: int
) -> list[dict[str, Any]]:
    """Alerts, newest first; `since` keeps alerts with an event after that seq."""
    sql = f"SELECT {ALERT_COLUMNS} FROM alerts a JOIN subjects s ON s.id = a.subject_id WHERE true"
    args: list[Any] = []
    if status is not None:
        args.append(status)
        sql += f" AND a.status = ${len(args)}"
    if subject_id is not None:
        args.append(subject_id)
        sql += f" AND a.subject_id = ${len(args)}"
    if since is not None:
        args.append(since)
        sql += f" AND EXISTS (SELECT 1 FROM alert_events e WHERE e.alert_id = a.id AND e.seq > ${len(args)})"
    args.append(limit)
    sql += f" ORDER BY a.id DESC LIMIT ${len(args)}"
    return [dict(r) for r in await pool.fetch(sql, *args)]


async def alert_events_since(pool: asyncpg.Pool, since: int, limit: int = 10_000) -> list[dict[str, Any]]:
    """Committed alert events after `since`, in seq order, in the feed's wire shape."""
    rows = await pool.fetch(
        "SELECT e.seq, e.alert_id AS id, e.type, a.rule, a.subject_id, s.jurisdiction_id, a.device_id,"
        " a.zone_id, (extract(epoch FROM e.ts) * 1000)::bigint AS ts, e.lat, e.lon, a.severity, a.confidence,"
        " a.late, coalesce(e.data, a.data) AS data"
        " FROM alert_events e JOIN alerts a ON a.id = e.alert_id JOIN subjects s ON s.id = a.subject_id"
        " WHERE e.seq > $1 ORDER BY e.seq LIMIT $2",
        since, limit,
    )
    return [_without_empty_data(dict(r)) for r in rows]


def _without_empty_data(message: dict[str, Any]) -> dict[str, Any]:
    """Live feed messages carry `data` only when a rule attached evidence; replay matches that."""
    if message.get("data") is None:
        message.pop("data", None)
    return message


async def acknowledge_alert(pool: asyncpg.Pool, alert_id: int, actor: str) -> dict[str, Any]:
    """Record who acknowledged an alert; returns its feed event (an already-acked alert is unchanged)."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ALERT_SEQ_LOCK)
        row = await conn.fetchrow(
            "UPDATE alerts SET acknowledged_at = now(), acknowledged_by = $2"
            " WHERE id = $1 AND acknowledged_at IS NULL RETURNING id",
            alert_id, actor,
        )
        if row is None:
            if await conn.fetchval("SELECT 1 FROM alerts WHERE id = $1", alert_id) is None:
                raise NotFound(f"no alert {alert_id}")
            return {}
        seq = await conn.fetchval("SELECT coalesce(max(seq), 0) + 1 FROM alert_events")
        await conn.execute(
            "INSERT INTO alert_events (seq, alert_id, type, ts, actor)"
            " VALUES ($1, $2, 'acknowledged', now(), $3)",
            seq, alert_id, actor,
        )
    events = await alert_events_since(pool, seq - 1, limit=1)
    return events[0]


def subject_fixes(subject: str, start: str, end: str, limit: str, *, end_inclusive: bool = False) -> str:
    """A FROM item named `fixes`: the fixes of `subject` from `start` to `end` (SQL expressions), oldest
    first and at most `limit` per device, read per device that carried the subject (device_minutes,
    migration 015) minute by minute on the fixes key, over the minutes that pair has fixes in. The caller
    orders and limits the union again."""
    before = "<=" if end_inclusive else "<"
    return (
        "(SELECT f.* FROM device_minutes m CROSS JOIN LATERAL (SELECT * FROM fixes"
        " WHERE minute = ANY(emwatch_minutes(greatest(m.first_minute, emwatch_minute("
        f"{start})), least(m.minute, emwatch_minute({end}))))"
        f" AND device_id = m.device_id AND subject_id = m.subject_id AND ts >= {start} AND ts {before} {end}"
        f" ORDER BY minute, ts LIMIT {limit}) f WHERE m.subject_id = {subject}) AS fixes"
    )


def subject_latest_fixes(subject: str) -> str:
    """A FROM item named `fixes`: the newest fix of each device that carried `subject` (an SQL
    expression), the last of that pair's newest minute (device_minutes); the caller takes the newest."""
    return (
        "(SELECT f.* FROM device_minutes m CROSS JOIN LATERAL (SELECT * FROM fixes"
        " WHERE minute = m.minute AND device_id = m.device_id AND subject_id = m.subject_id"
        f" ORDER BY ts DESC LIMIT 1) f WHERE m.subject_id = {subject}) AS fixes"
    )


async def track(
    pool: asyncpg.Pool, subject_id: str, start: datetime, end: datetime, limit: int
) -> list[dict[str, Any]]:
    """A subject's fixes in [start, end), oldest first."""
    rows = await pool.fetch(
        "SELECT device_id, (extract(epoch FROM ts) * 1000)::bigint AS ts, lat, lon, acc, src, batt, h3"
        f" FROM {subject_fixes('$1', '$2', '$3', '$4')} ORDER BY ts LIMIT $4",
        subject_id, start, end, limit,
    )
    return [dict(r) for r in rows]


async def upsert_zones(pool: asyncpg.Pool, rows: list[dict[str, Any]]) -> int:
    """Insert zones, replacing same-id zones with a new version; returns how many were written."""
    async with pool.acquire() as conn, conn.transaction():
        for values in rows:
            cols = list(values)
            updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != "id")
            await conn.execute(
                f"INSERT INTO zones ({', '.join(cols)})"
                f" VALUES ({', '.join(f'${i + 1}' for i in range(len(cols)))})"
                f" ON CONFLICT (id) DO UPDATE SET {updates}, version = zones.version + 1",
                *values.values(),
            )
    return len(rows)
