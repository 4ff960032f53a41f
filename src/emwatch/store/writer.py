"""Commit one evaluated batch: fixes (COPY), device events, dead letters and alert events, atomically."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import asyncpg
import orjson

from emwatch.ingest.decode import DeadLetter
from emwatch.model import NO_SEQ, AlertEvent
from emwatch.rules.engine import Evaluation
from emwatch.store import outbox

ALERT_SEQ_LOCK = 0x656D7762  # serializes seq assignment: feed readers never see N+1 before N commits

# Versioned name: pooled connections of a running older build keep their own temp table shape.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS fixes_in_v2 (
    device_id text, ts_ms bigint, lat float8, lon float8, acc real, src smallint,
    batt smallint, seq bigint, h3 bigint, suspect boolean
) ON COMMIT DELETE ROWS
"""
# subject_id by one primary-key probe per row, not a join: the temp table has no statistics, so a join
# hashes the whole devices table every batch (4.6 ms of a 25 ms merge at 20k devices, growing with
# the fleet); the probes cost ~2 µs each whatever the fleet size (benchmarks/bench_writer.py).
_MERGE = f"""
INSERT INTO fixes (device_id, ts, lat, lon, acc, src, batt, seq, h3, subject_id, suspect)
SELECT device_id, to_timestamp(ts_ms / 1000.0), lat, lon, nullif(acc, 'NaN'),
       (ARRAY['gps', 'wifi', 'lbs'])[src + 1], nullif(batt, -1), nullif(seq, {NO_SEQ}), h3,
       (SELECT d.subject_id FROM devices d WHERE d.id = fixes_in_v2.device_id), suspect
FROM fixes_in_v2
ON CONFLICT (device_id, ts) DO NOTHING
"""


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


async def commit_batch(
    conn: asyncpg.Connection, evaluation: Evaluation, alerts: list[AlertEvent]
) -> tuple[int, list[AlertEvent]]:
    """Write everything of one batch in one transaction; returns (fixes newly stored, alerts with seq/id)."""
    async with conn.transaction():
        stored = await _write_fixes(conn, evaluation)
        if evaluation.events:
            await conn.executemany(
                "INSERT INTO device_events (device_id, ts, type, payload) VALUES ($1, $2, $3, $4)"
                " ON CONFLICT DO NOTHING",
                [(d, ms_to_datetime(e.ts), e.type, orjson.loads(raw)) for d, e, raw in evaluation.events],
            )
        await write_dead_letters(conn, evaluation.dead)
        committed = await write_alert_events(conn, alerts) if alerts else []
    return stored, committed


async def _write_fixes(conn: asyncpg.Connection, evaluation: Evaluation) -> int:
    batch = evaluation.batch
    if len(batch) == 0:
        return 0
    f = batch.fixes
    records = zip(
        f.device_ids, f.ts.tolist(), f.lat.tolist(), f.lon.tolist(), f.acc.tolist(), f.src.tolist(),
        f.batt.tolist(), f.seq.tolist(), batch.cell.astype("int64").tolist(), batch.suspect.tolist(),
        strict=True,
    )
    await conn.execute(_STAGING)
    await conn.copy_records_to_table("fixes_in_v2", records=records)
    status = await conn.execute(_MERGE)
    return int(status.rsplit(" ", 1)[-1])


async def write_dead_letters(conn: asyncpg.Connection, dead: list[DeadLetter]) -> None:
    """Keep every rejected message with its reason."""
    if dead:
        await conn.copy_records_to_table(
            "dead_letters", columns=["topic", "payload", "reason"],
            records=[(d.topic, d.payload, d.reason) for d in dead],
        )


async def write_alert_events(conn: asyncpg.Connection, events: list[AlertEvent]) -> list[AlertEvent]:
    """Open/clear episodes and append their history; must run inside a transaction."""
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ALERT_SEQ_LOCK)
    seq = await conn.fetchval("SELECT coalesce(max(seq), 0) FROM alert_events")
    out: list[AlertEvent] = []
    skip_clear: set[tuple[str, str, str | None]] = set()
    for ev in events:
        at = ms_to_datetime(ev.ts)
        if ev.type == "alert" and ev.late and await _already_alerted(conn, ev):
            skip_clear.add((ev.subject_id, ev.rule, ev.zone_id))
            continue
        if ev.type == "cleared" and ev.late and (ev.subject_id, ev.rule, ev.zone_id) in skip_clear:
            continue
        if ev.type == "alert":
            alert_id = await conn.fetchval(
                "INSERT INTO alerts (rule, subject_id, device_id, zone_id, severity, opened_at, lat, lon,"
                " confidence, late, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                " ON CONFLICT DO NOTHING RETURNING id",
                ev.rule, ev.subject_id, ev.device_id, ev.zone_id, ev.severity, at, ev.lat, ev.lon,
                ev.confidence, ev.late, ev.data,
            )
            if alert_id is None:  # already open (state rebuilt late): the episode continues, no new event
                continue
        elif ev.type == "cleared":
            alert_id = await conn.fetchval(
                "UPDATE alerts SET status = 'cleared', cleared_at = $4"
                " WHERE subject_id = $1 AND rule = $2 AND coalesce(zone_id, '') = coalesce($3, '')"
                " AND cleared_at IS NULL RETURNING id",
                ev.subject_id, ev.rule, ev.zone_id, at,
            )
            if alert_id is None:
                continue
        elif ev.type == "confirmed":  # a possible alert upgraded in place, not a second alert
            alert_id = await conn.fetchval(
                "UPDATE alerts SET confidence = 'confirmed'"
                " WHERE subject_id = $1 AND rule = $2 AND coalesce(zone_id, '') = coalesce($3, '')"
                " AND cleared_at IS NULL RETURNING id",
                ev.subject_id, ev.rule, ev.zone_id,
            )
            if alert_id is None:
                continue
        else:
            alert_id = ev.alert_id
        seq += 1
        await conn.execute(
            "INSERT INTO alert_events (seq, alert_id, type, ts, lat, lon, actor)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            seq, alert_id, ev.type, at, ev.lat, ev.lon, None,
        )
        await outbox.enqueue(conn, ev, seq, alert_id, at)  # same transaction: no alert without its notices
        out.append(dataclasses.replace(ev, seq=seq, alert_id=alert_id))
    return out


async def _already_alerted(conn: asyncpg.Connection, ev: AlertEvent) -> bool:
    """Whether a late violation falls inside an episode already on record (e.g. redelivered fixes)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM alerts WHERE subject_id = $1 AND rule = $2"
        " AND coalesce(zone_id, '') = coalesce($3, '') AND opened_at <= $4"
        " AND (cleared_at IS NULL OR cleared_at >= $4))",
        ev.subject_id, ev.rule, ev.zone_id, ms_to_datetime(ev.ts),
    ))
