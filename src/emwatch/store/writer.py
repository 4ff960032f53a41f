"""Commit one evaluated batch: fixes (COPY), device events, dead letters and alert events, atomically."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime

import asyncpg
import orjson

from emwatch.ingest.decode import DeadLetter
from emwatch.model import AlertEvent
from emwatch.rules.engine import Evaluation
from emwatch.store import fixes, outbox

ALERT_SEQ_LOCK = 0x656D7762  # serializes seq assignment: feed readers never see N+1 before N commits


def ms_to_datetime(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


async def commit_batch(
    conn: asyncpg.Connection, evaluation: Evaluation, alerts: list[AlertEvent]
) -> tuple[int, list[AlertEvent]]:
    """Write everything of one batch in one transaction; returns (fixes newly stored, alerts with seq/id)."""
    async with conn.transaction():
        stored = await _write_fixes(conn, evaluation)
        await write_device_events(conn, [evaluation])
        await write_dead_letters(conn, evaluation.dead)
        committed = await write_alert_events(conn, alerts) if alerts else []
    return stored, committed


async def _write_fixes(conn: asyncpg.Connection, evaluation: Evaluation) -> int:
    return await write_fixes(conn, [evaluation])


async def write_fixes(conn: asyncpg.Connection, evaluations: Sequence[Evaluation]) -> int:
    """The fixes of several batches (call once per transaction); returns how many were new (a
    redelivered fix is not). See store/fixes.py."""
    return await fixes.write_fixes(conn, [e.batch for e in evaluations])


async def write_device_events(conn: asyncpg.Connection, evaluations: Sequence[Evaluation]) -> None:
    """Tamper, battery and other device events of some batches (a redelivered one is stored once)."""
    rows = [(d, ms_to_datetime(e.ts), e.type, orjson.loads(raw))
            for evaluation in evaluations for d, e, raw in evaluation.events]
    if rows:
        await conn.executemany(
            "INSERT INTO device_events (device_id, ts, type, payload) VALUES ($1, $2, $3, $4)"
            " ON CONFLICT DO NOTHING",
            rows,
        )


async def write_sequenced_alerts(conn: asyncpg.Connection, events: list[AlertEvent]) -> None:
    """Store events whose seq and alert id were assigned in memory (feed/ledger.py, feed/hub.py).

    Idempotent, so a commit retried after a lost COMMIT reply neither fails nor doubles anything;
    runs inside the caller's transaction, with the notification outbox of each event. A handful of
    statements whatever the number of events: each round trip waits behind rule evaluation.
    """
    if not events:
        return
    at = [ms_to_datetime(ev.ts) for ev in events]
    cleared_at = {ev.alert_id: t for ev, t in zip(events, at, strict=True) if ev.type == "cleared"}
    # One commit may clear an episode and open the next one of the same subject, rule and zone (several
    # batches per transaction, a backlog after an outage): clear first, and insert an episode cleared
    # in this same commit as cleared, or the open-episode index (alerts_one_open_episode) refuses it.
    # Arrays, one statement each: a burst of thousands of alerts cost 60 µs an alert row by row.
    if cleared_at:
        await conn.execute(
            "UPDATE alerts a SET status = 'cleared', cleared_at = x.at FROM unnest($1::bigint[],"
            " $2::timestamptz[]) AS x (id, at) WHERE a.id = x.id AND a.cleared_at IS NULL",
            list(cleared_at), list(cleared_at.values()),
        )
    opened = [(ev, t) for ev, t in zip(events, at, strict=True) if ev.type == "alert"]
    if opened:
        await conn.execute(_INSERT_OPENED, *_opened_columns(opened, cleared_at))
    if confirmed := [ev.alert_id for ev in events if ev.type == "confirmed"]:
        await conn.execute(
            "UPDATE alerts SET confidence = 'confirmed' WHERE id = ANY ($1::bigint[])", confirmed
        )
    await _revise(conn, [ev for ev in events if ev.type == "revised"])
    columns = ([ev.seq for ev in events], [ev.alert_id for ev in events], [ev.type for ev in events], at,
               [ev.lat for ev in events], [ev.lon for ev in events],
               [orjson.dumps(ev.data).decode() if ev.type == "revised" else None for ev in events])
    status = await conn.execute(
        "INSERT INTO alert_events (seq, alert_id, type, ts, lat, lon, data)"
        " SELECT seq, alert_id, type, ts, lat, lon, data::jsonb FROM unnest($1::bigint[], $2::bigint[],"
        " $3::text[], $4::timestamptz[], $5::float8[], $6::float8[], $7::text[])"
        " AS x (seq, alert_id, type, ts, lat, lon, data) ON CONFLICT (seq) DO NOTHING",
        *columns,
    )
    if int(status.rsplit(" ", 1)[-1]) < len(events) and await conn.fetchval(
        "SELECT count(*) FROM alert_events e JOIN unnest($1::bigint[], $2::bigint[], $3::text[])"
        " AS x (seq, alert_id, type) ON e.seq = x.seq WHERE e.alert_id <> x.alert_id OR e.type <> x.type",
        *columns[:3],
    ):  # not a retry of our own commit: someone else wrote these seqs
        raise RuntimeError("alert seqs taken by another writer: one pipeline per database")
    # same transaction: no alert without its notices
    await outbox.enqueue_many(conn, [(ev, ev.seq, ev.alert_id, t) for ev, t in zip(events, at, strict=True)])


_INSERT_OPENED = (
    "INSERT INTO alerts (id, rule, subject_id, device_id, zone_id, severity, opened_at, lat, lon, confidence,"
    " late, data, cleared_at, status)"
    " SELECT id, rule, subject_id, device_id, zone_id, severity, opened_at, lat, lon, confidence, late,"
    " data::jsonb, cleared_at, CASE WHEN cleared_at IS NULL THEN 'open' ELSE 'cleared' END"
    " FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],"
    " $7::timestamptz[], $8::float8[], $9::float8[], $10::text[], $11::bool[], $12::text[],"
    " $13::timestamptz[])"
    " AS x (id, rule, subject_id, device_id, zone_id, severity, opened_at, lat, lon, confidence, late, data,"
    " cleared_at)"
    " ON CONFLICT (id) DO NOTHING"
)


def _opened_columns(
    opened: list[tuple[AlertEvent, datetime]], cleared_at: dict[int, datetime]
) -> list[list[object]]:
    """The `alerts` rows of the opening events, as columns for _INSERT_OPENED."""
    evs = [ev for ev, _ in opened]
    return [
        [ev.alert_id for ev in evs], [ev.rule for ev in evs], [ev.subject_id for ev in evs],
        [ev.device_id for ev in evs], [ev.zone_id for ev in evs], [ev.severity for ev in evs],
        [t for _, t in opened], [ev.lat for ev in evs], [ev.lon for ev in evs], [ev.confidence for ev in evs],
        [ev.late for ev in evs], [None if ev.data is None else orjson.dumps(ev.data).decode() for ev in evs],
        [cleared_at.get(ev.alert_id) for ev in evs],
    ]


async def _revise(conn: asyncpg.Connection, revised: list[AlertEvent]) -> None:
    """Move alerts' event-time bounds, in seq order (the last revision of an alert wins). Runs after the
    commit's opens and clears: a revision never opens nor closes an alert, it only moves a clear."""
    rows = [(ev.alert_id, ms_to_datetime(ev.data["opened_at"]),
             None if ev.data.get("cleared_at") is None else ms_to_datetime(ev.data["cleared_at"]))
            for ev in revised if ev.data is not None]
    if rows:
        await conn.executemany(
            "UPDATE alerts SET opened_at = $2,"
            " cleared_at = CASE WHEN cleared_at IS NULL THEN NULL ELSE coalesce($3, cleared_at) END"
            " WHERE id = $1",
            rows,
        )


async def renumber_event(conn: asyncpg.Connection, provisional: int, final: int) -> None:
    """Give a lifecycle event its final feed seq (idempotent: a retried renumber finds nothing to do)."""
    await renumber_events(conn, [(provisional, final)])


async def renumber_events(conn: asyncpg.Connection, pairs: list[tuple[int, int]]) -> None:
    """`renumber_event` for several (provisional, final) pairs."""
    if pairs:
        await conn.executemany("UPDATE alert_events SET seq = $2 WHERE seq = $1", pairs)


async def reserve_alert_ids(conn: asyncpg.Connection, count: int) -> list[int]:
    """Take `count` ids from the alerts.id sequence for the in-memory ledger."""
    rows = await conn.fetch(
        "SELECT nextval(pg_get_serial_sequence('alerts', 'id')) AS id FROM generate_series(1, $1)", count
    )
    return [int(r["id"]) for r in rows]


async def write_dead_letters(conn: asyncpg.Connection, dead: list[DeadLetter]) -> None:
    """Keep every rejected message with its reason."""
    if dead:
        await conn.copy_records_to_table(
            "dead_letters", columns=["topic", "payload", "reason"],
            records=[(d.topic, d.payload, d.reason) for d in dead],
        )


async def write_alert_events(conn: asyncpg.Connection, events: list[AlertEvent]) -> list[AlertEvent]:
    """Open/clear episodes and append their history, seqs taken from the database; must run inside a
    transaction. For tools and tests without a running pipeline: the pipeline assigns seqs in memory
    and uses `write_sequenced_alerts`."""
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


async def already_alerted(conn: asyncpg.Connection, events: list[AlertEvent]) -> set[tuple[str, str, str]]:
    """Episode keys of late `alert` events that fall inside an episode already on record."""
    return {
        (ev.subject_id, ev.rule, ev.zone_id or "") for ev in events
        if ev.type == "alert" and ev.late and await _already_alerted(conn, ev)
    }


async def adopt_provisional(conn: asyncpg.Connection) -> int:
    """Number the lifecycle events a crash left with a provisional seq, after every stored seq, in the
    order they were made; returns the highest seq stored. Run before the feed's allocator starts."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ALERT_SEQ_LOCK)
        top = int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM alert_events"))
        for row in await conn.fetch("SELECT seq FROM alert_events WHERE seq < 0 ORDER BY seq DESC"):
            top += 1
            await renumber_event(conn, row["seq"], top)
    return top
