"""Retention: purge fixes older than their jurisdiction's period, keep what a legal hold needs, audit it.

A fix's period comes from its subject's jurisdiction, or the nearest ancestor that sets
`retention_days`, else the service default. A fix of a subject with an alert under legal hold is kept
while it lies within `hold_margin` of that alert's episode (opened_at .. cleared_at, or now if open).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from emwatch.store.audit import AuditEntry, record

# Fixes past their cutoff: the subject's jurisdiction's period, else the default (fixes without subject).
# $1/$2: jurisdiction ids and their effective days; $3 default days; $4 now; $5 hold margin.
_EXPIRED = """
WITH policy AS (SELECT * FROM unnest($1::text[], $2::int[]) AS p(jurisdiction_id, days)),
expired AS (
    SELECT f.minute, f.device_id, f.ts, f.subject_id FROM fixes f
    WHERE f.ts < $4::timestamptz - make_interval(days => coalesce(
        (SELECT p.days FROM subjects s JOIN policy p ON p.jurisdiction_id = s.jurisdiction_id
         WHERE s.id = f.subject_id), $3::int))
)
"""
_HELD = """EXISTS (SELECT 1 FROM alerts a WHERE a.legal_hold AND a.subject_id = e.subject_id
        AND e.ts BETWEEN a.opened_at - $5::interval
                     AND coalesce(a.cleared_at, $4::timestamptz) + $5::interval)"""
_COUNT = _EXPIRED + f"""
SELECT count(*) FILTER (WHERE NOT {_HELD}) AS purgeable, count(*) FILTER (WHERE {_HELD}) AS held
FROM expired e
"""
_DELETE = _EXPIRED + f"""
DELETE FROM fixes USING expired e
WHERE fixes.minute = e.minute AND fixes.device_id = e.device_id AND fixes.ts = e.ts AND NOT {_HELD}
"""


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What one purge did (or, dry, would do)."""

    purged: int
    held: int  # past their period but kept for a legal hold
    default_days: int
    overrides: dict[str, int]  # jurisdiction -> effective days, where it differs from the default
    audit_id: int | None


def effective_retention(
    jurisdictions: Mapping[str, tuple[str | None, int | None]], default_days: int
) -> dict[str, int]:
    """Days per jurisdiction: its own `retention_days`, else the nearest ancestor's, else the default.

    `jurisdictions` maps id -> (parent_id, retention_days).
    """
    out: dict[str, int] = {}
    for start in jurisdictions:
        node: str | None = start
        seen: set[str] = set()
        days = default_days
        while node is not None and node in jurisdictions and node not in seen:  # seen: a cycle ends the walk
            seen.add(node)
            parent, own = jurisdictions[node]
            if own is not None:
                days = own
                break
            node = parent
        out[start] = days
    return out


async def purge_fixes(
    pool: asyncpg.Pool, *, default_days: int, hold_margin: timedelta, now: datetime, actor: str = "retention",
    dry_run: bool = False,
) -> PurgeResult:
    """Delete expired, unheld fixes and append the purge to audit_log, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch("SELECT id, parent_id, retention_days FROM jurisdictions")
        tree = {r["id"]: (r["parent_id"], r["retention_days"]) for r in rows}
        days = effective_retention(tree, default_days)
        args = (list(days), list(days.values()), default_days, now, hold_margin)
        counts = await conn.fetchrow(_COUNT, *args)
        purged, held = int(counts["purgeable"]), int(counts["held"])
        overrides = {j: d for j, d in days.items() if d != default_days}
        if dry_run:
            return PurgeResult(purged, held, default_days, overrides, None)
        status = await conn.execute(_DELETE, *args)
        purged = int(status.rsplit(" ", 1)[-1])
        audit_id = await record(conn, AuditEntry(
            actor=actor, action="fixes.purge", target_type="fixes",
            detail={"purged": purged, "held": held, "default_days": default_days, "overrides": overrides,
                    "hold_margin_s": hold_margin.total_seconds(), "now": now.isoformat()},
        ))
    return PurgeResult(purged, held, default_days, overrides, audit_id)
