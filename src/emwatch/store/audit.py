"""The append-only audit trail: write one entry, read entries back (the table refuses UPDATE/DELETE)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did (or read) what, to which target, from where, and how it ended."""

    actor: str
    action: str  # e.g. login, subject.track.read, alert.acknowledge
    role: str | None = None
    jurisdiction_id: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    outcome: str = "ok"  # ok | denied | failed
    detail: dict[str, Any] = field(default_factory=dict)
    remote_addr: str | None = None
    user_agent: str | None = None


async def record(conn: asyncpg.Pool | asyncpg.Connection, entry: AuditEntry) -> int:
    """Append one entry; returns its id."""
    audit_id = await conn.fetchval(
        "INSERT INTO audit_log (actor, role, jurisdiction_id, action, target_type, target_id, outcome,"
        " detail, remote_addr, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        entry.actor, entry.role, entry.jurisdiction_id, entry.action, entry.target_type, entry.target_id,
        entry.outcome, entry.detail, entry.remote_addr, entry.user_agent,
    )
    return int(audit_id)


async def entries(
    pool: asyncpg.Pool,
    *,
    jurisdictions: list[str] | None,
    actor: str | None = None,
    action: str | None = None,
    target_type: str | None = None,
    target_id: str | None = None,
    since: datetime | None = None,
    before_id: int | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Entries newest first; `jurisdictions` (None: all) keeps those by actors working there."""
    rows = await pool.fetch(
        "SELECT * FROM audit_log WHERE ($1::text[] IS NULL OR jurisdiction_id = ANY($1::text[]))"
        " AND ($2::text IS NULL OR actor = $2) AND ($3::text IS NULL OR action = $3)"
        " AND ($4::text IS NULL OR target_type = $4) AND ($5::text IS NULL OR target_id = $5)"
        " AND ($6::timestamptz IS NULL OR ts >= $6) AND ($7::bigint IS NULL OR id < $7)"
        " ORDER BY id DESC LIMIT $8",
        jurisdictions, actor, action, target_type, target_id, since, before_id, limit,
    )
    return [dict(r) for r in rows]
