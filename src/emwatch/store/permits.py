"""Leave permits (外出请假): request, approve, revoke, list — with who did it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from emwatch.rules.permits import PERMIT_DESTINATION
from emwatch.store.repo import Conflict, NotFound

COLUMNS = (
    "id, subject_id, starts_at, ends_at, grace_s, zone_ids, reason, status, requested_by, approved_by,"
    " approved_at, revoked_by, revoked_at, created_at"
)


async def create(
    pool: asyncpg.Pool, subject_id: str, starts_at: datetime, ends_at: datetime, grace_s: int,
    zone_ids: list[str], reason: str, requested_by: str,
) -> dict[str, Any]:
    """Record a requested permit; destination zones must exist and be permit destinations."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            "SELECT id, kind, properties->>'role' AS role FROM zones WHERE id = ANY($1::text[])", zone_ids
        )
        found = {r["id"]: r for r in rows}
        for zone_id in zone_ids:
            zone = found.get(zone_id)
            if zone is None:
                raise NotFound(f"no zone {zone_id!r}")
            if zone["kind"] != "inclusion" or zone["role"] != PERMIT_DESTINATION:
                raise Conflict(
                    f"zone {zone_id!r} is not an inclusion zone with role {PERMIT_DESTINATION!r}"
                )
        try:
            row = await conn.fetchrow(
                "INSERT INTO permits (subject_id, starts_at, ends_at, grace_s, zone_ids, reason,"
                f" requested_by) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {COLUMNS}",
                subject_id, starts_at, ends_at, grace_s, zone_ids, reason, requested_by,
            )
        except asyncpg.ForeignKeyViolationError as exc:
            raise NotFound(f"no subject {subject_id!r}") from exc
    assert row is not None
    return dict(row)


async def get(pool: asyncpg.Pool, permit_id: int) -> dict[str, Any]:
    row = await pool.fetchrow(f"SELECT {COLUMNS} FROM permits WHERE id = $1", permit_id)
    if row is None:
        raise NotFound(f"no permit {permit_id}")
    return dict(row)


async def decide(pool: asyncpg.Pool, permit_id: int, action: str, actor: str) -> dict[str, Any]:
    """Approve a requested permit, or revoke a requested/approved one; who and when are kept."""
    if action == "approve":
        sql = ("UPDATE permits SET status = 'approved', approved_by = $2, approved_at = now()"
               f" WHERE id = $1 AND status = 'requested' RETURNING {COLUMNS}")
    else:
        sql = ("UPDATE permits SET status = 'revoked', revoked_by = $2, revoked_at = now()"
               f" WHERE id = $1 AND status IN ('requested', 'approved') RETURNING {COLUMNS}")
    row = await pool.fetchrow(sql, permit_id, actor)
    if row is None:
        current = await get(pool, permit_id)  # raises NotFound
        raise Conflict(f"permit {permit_id} is {current['status']}; cannot {action} it")
    return dict(row)


async def list_for(pool: asyncpg.Pool, subject_ids: list[str] | None, limit: int) -> list[dict[str, Any]]:
    """Permits, newest first; `subject_ids` None means all."""
    if subject_ids is None:
        rows = await pool.fetch(f"SELECT {COLUMNS} FROM permits ORDER BY id DESC LIMIT $1", limit)
    else:
        rows = await pool.fetch(
            f"SELECT {COLUMNS} FROM permits WHERE subject_id = ANY($1::text[]) ORDER BY id DESC LIMIT $2",
            subject_ids, limit,
        )
    return [dict(r) for r in rows]
