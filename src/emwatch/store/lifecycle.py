"""The operator's side of an alert: acknowledge, resolve, escalate; and the evidence behind an alert.

Every lifecycle change appends its alert_event in the same transaction as the change, under a
*provisional* seq (negative, unique, outside the feed). The feed's seqs are allocated in memory by
the one running service (feed/hub.py: single writer): when the caller publishes the event, the hub
gives it the next seq at once and the pipeline's committer renumbers the row in seq order. So the
change and its event are atomic, a failed transaction burns no feed seq, and the feed stays gap-free
and ordered; a provisional row left by a crash is numbered when the pipeline starts next.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from emwatch.store import outbox
from emwatch.store.repo import NotFound, subject_fixes
from emwatch.store.writer import ALERT_SEQ_LOCK

CATEGORIES = ("true_violation", "false_alarm", "technical_fault")


async def _append_event(conn: asyncpg.Connection, alert_id: int, type_: str, at: datetime, actor: str) -> int:
    # Provisional seq, below every other; callers hold ALERT_SEQ_LOCK, so two never pick the same one.
    seq = int(await conn.fetchval("SELECT least(coalesce(min(seq), 0), 0) - 1 FROM alert_events"))
    await conn.execute(
        "INSERT INTO alert_events (seq, alert_id, type, ts, actor) VALUES ($1, $2, $3, $4, $5)",
        seq, alert_id, type_, at, actor,
    )
    return seq


async def _events(pool: asyncpg.Pool, seqs: list[int]) -> list[dict[str, Any]]:
    """Feed messages of these (provisional) seqs, in the order given."""
    if not seqs:
        return []
    rows = await pool.fetch(
        "SELECT e.seq, e.alert_id AS id, e.type, a.rule, a.subject_id, s.jurisdiction_id, a.device_id,"
        " a.zone_id, (extract(epoch FROM e.ts) * 1000)::bigint AS ts, e.lat, e.lon, a.severity, a.confidence,"
        " a.late, a.data"
        " FROM alert_events e JOIN alerts a ON a.id = e.alert_id JOIN subjects s ON s.id = a.subject_id"
        " WHERE e.seq = ANY($1::bigint[])",
        seqs,
    )
    by_seq = {r["seq"]: dict(r) for r in rows}
    for message in by_seq.values():
        if message["data"] is None:  # like the live feed: `data` only when a rule attached evidence
            del message["data"]
    return [by_seq[s] for s in seqs if s in by_seq]


async def acknowledge(pool: asyncpg.Pool, alert_id: int, actor: str, now: datetime) -> dict[str, Any]:
    """open → acknowledged; returns the feed event, or {} if the alert was past `open` already."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ALERT_SEQ_LOCK)
        row = await conn.fetchrow(
            "UPDATE alerts SET lifecycle = 'acknowledged', acknowledged_at = $3, acknowledged_by = $2"
            " WHERE id = $1 AND lifecycle = 'open' RETURNING id",
            alert_id, actor, now,
        )
        if row is None:
            await _must_exist(conn, alert_id)
            return {}
        seq = await _append_event(conn, alert_id, "acknowledged", now, actor)
        await outbox.acknowledge(conn, alert_id, now)  # no more pushes or escalations for it
    return (await _events(pool, [seq]))[0]


async def resolve(
    pool: asyncpg.Pool, alert_id: int, actor: str, category: str, note: str, now: datetime
) -> dict[str, Any]:
    """open/acknowledged → resolved with a category and a note; {} if it was resolved already."""
    if category not in CATEGORIES or not note.strip():
        raise ValueError("a resolution needs a category and a non-empty note")
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ALERT_SEQ_LOCK)
        row = await conn.fetchrow(
            "UPDATE alerts SET lifecycle = 'resolved', resolved_at = $3, resolved_by = $2,"
            " resolution_category = $4, resolution_note = $5,"
            # Resolving an alert nobody acknowledged also acknowledges it: someone has looked at it.
            " acknowledged_at = coalesce(acknowledged_at, $3),"
            " acknowledged_by = coalesce(acknowledged_by, $2)"
            " WHERE id = $1 AND lifecycle <> 'resolved' RETURNING id",
            alert_id, actor, now, category, note.strip(),
        )
        if row is None:
            await _must_exist(conn, alert_id)
            return {}
        seq = await _append_event(conn, alert_id, "resolved", now, actor)
        await outbox.acknowledge(conn, alert_id, now)  # resolving acknowledges too (see above)
    return (await _events(pool, [seq]))[0]


async def _must_exist(conn: asyncpg.Connection, alert_id: int) -> None:
    if await conn.fetchval("SELECT 1 FROM alerts WHERE id = $1", alert_id) is None:
        raise NotFound(f"no alert {alert_id}")


async def escalate_due(
    pool: asyncpg.Pool, now: datetime, after: dict[str, timedelta]
) -> list[dict[str, Any]]:
    """Escalate every alert still `open` (unacknowledged) whose wait exceeds its level's limit.

    Level k is reached after k × after[severity] since the alert opened and notifies the jurisdiction k
    steps above the subject's own; at the root it stays. Returns the `escalated` feed events.
    """
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ALERT_SEQ_LOCK)
        tree = await conn.fetch("SELECT id, parent_id FROM jurisdictions")
        parents = {r["id"]: r["parent_id"] for r in tree}
        rows = await conn.fetch(
            "SELECT a.id, a.severity, a.opened_at, a.escalation_level, s.jurisdiction_id"
            " FROM alerts a JOIN subjects s ON s.id = a.subject_id WHERE a.lifecycle = 'open'"
            " ORDER BY a.id FOR UPDATE OF a"
        )
        seqs: list[int] = []
        for r in rows:
            wait = after.get(r["severity"])
            if wait is None or wait <= timedelta(0):
                continue
            chain = _ancestors(r["jurisdiction_id"], parents)
            due_level = min(int((now - r["opened_at"]) / wait), len(chain))
            if due_level <= r["escalation_level"]:
                continue
            await conn.execute(
                "UPDATE alerts SET escalation_level = $2, escalated_to = $3, escalated_at = $4 WHERE id = $1",
                r["id"], due_level, chain[due_level - 1], now,
            )
            seqs.append(await _append_event(conn, r["id"], "escalated", now, "system"))
    return await _events(pool, seqs)


def _ancestors(jurisdiction_id: str, parents: dict[str, str | None]) -> list[str]:
    """Parent, grandparent, ... of a jurisdiction (cycle-safe)."""
    chain: list[str] = []
    current = parents.get(jurisdiction_id)
    while current is not None and current not in chain and current != jurisdiction_id:
        chain.append(current)
        current = parents.get(current)
    return chain


async def history(pool: asyncpg.Pool, alert_id: int) -> list[dict[str, Any]]:
    """Every event of one alert, oldest first, with who caused it."""
    rows = await pool.fetch(
        "SELECT seq, type, ts, lat, lon, actor FROM alert_events WHERE alert_id = $1 ORDER BY seq", alert_id
    )
    return [dict(r) for r in rows]


async def evidence_fixes(
    pool: asyncpg.Pool, subject_id: str, start: datetime, end: datetime, limit: int = 5_000
) -> list[dict[str, Any]]:
    """The subject's fixes in [start, end] with their accuracy and how they were received."""
    rows = await pool.fetch(
        "SELECT device_id, ts, lat, lon, acc, src, batt, seq, received_at"
        f" FROM {subject_fixes('$1', '$2', '$3', '$4', end_inclusive=True)} ORDER BY ts LIMIT $4",
        subject_id, start, end, limit,
    )
    return [dict(r) for r in rows]


async def zone_version_at(pool: asyncpg.Pool, zone_id: str, at: datetime) -> dict[str, Any] | None:
    """The zone as it was at `at` (the version valid then), or its first version if none was yet."""
    row = await pool.fetchrow(
        "SELECT * FROM zone_versions WHERE zone_id = $1"
        " ORDER BY (valid_from <= $2) DESC, CASE WHEN valid_from <= $2 THEN version ELSE -version END DESC"
        " LIMIT 1",
        zone_id, at,
    )
    return dict(row) if row else None
