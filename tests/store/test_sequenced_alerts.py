"""A burst of alert events is stored in a few array statements: every field of every alert as the event
had it, clears and confirmations applied by id, and a retried commit changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import orjson

from emwatch.model import AlertEvent
from emwatch.store import writer

T0 = 1_790_000_000_000


def opened(i: int) -> AlertEvent:
    return AlertEvent(
        "alert", "zone_exit" if i % 2 else "zone_entry", "s", "j", f"d{i % 3}", f"z{i}", T0 + i,
        None if i % 5 == 0 else 30.0 + i / 1e4, None if i % 5 == 0 else 120.0 + i / 1e4,
        "critical" if i % 3 else "warning", seq=i + 1, alert_id=1000 + i,
        confidence="possible" if i % 4 == 0 else "confirmed", late=i % 7 == 0,
        data={"score": i, "why": "测试"} if i % 6 == 0 else None,
    )


async def test_a_burst_of_alerts_is_stored_field_for_field(subject_db: asyncpg.Connection) -> None:
    conn = subject_db
    burst = [opened(i) for i in range(300)]
    async with conn.transaction():
        await writer.write_sequenced_alerts(conn, burst)
    rows = {r["id"]: r for r in await conn.fetch(
        "SELECT id, rule, subject_id, device_id, zone_id, severity, opened_at, lat, lon, confidence, late,"
        " data::text AS data, cleared_at, status FROM alerts")}
    assert len(rows) == 300
    for ev in burst:
        r = rows[ev.alert_id]
        assert (r["rule"], r["subject_id"], r["device_id"], r["zone_id"], r["severity"]) == (
            ev.rule, ev.subject_id, ev.device_id, ev.zone_id, ev.severity)
        assert r["opened_at"] == datetime.fromtimestamp(ev.ts / 1000, UTC)
        assert (r["lat"], r["lon"], r["confidence"], r["late"]) == (ev.lat, ev.lon, ev.confidence, ev.late)
        assert (r["data"] is None) == (ev.data is None)
        if ev.data is not None:
            assert orjson.loads(r["data"]) == ev.data
        assert (r["status"], r["cleared_at"]) == ("open", None)
    assert await conn.fetchval("SELECT count(*) FROM alert_events") == 300


async def test_clears_and_confirmations_of_a_burst_apply_by_id_and_a_retry_changes_nothing(
    subject_db: asyncpg.Connection,
) -> None:
    conn = subject_db
    burst = [opened(i) for i in range(200)]
    async with conn.transaction():
        await writer.write_sequenced_alerts(conn, burst)
    seq = 201
    follow: list[AlertEvent] = []
    for ev in burst:
        if ev.alert_id % 2 == 0:
            follow.append(AlertEvent("cleared", ev.rule, "s", "j", ev.device_id, ev.zone_id, ev.ts + 60_000, 30.0,
                                     120.0, ev.severity, seq=seq, alert_id=ev.alert_id))
        elif ev.confidence == "possible" or ev.alert_id % 3 == 0:
            follow.append(AlertEvent("confirmed", ev.rule, "s", "j", ev.device_id, ev.zone_id, ev.ts + 1, 30.0,
                                     120.0, ev.severity, seq=seq, alert_id=ev.alert_id))
        else:
            continue
        seq += 1
    for _ in range(2):  # the second time: a commit retried after its COMMIT reply was lost
        async with conn.transaction():
            await writer.write_sequenced_alerts(conn, follow)
    rows = {r["id"]: r for r in await conn.fetch("SELECT id, status, cleared_at, confidence FROM alerts")}
    by_id = {ev.alert_id: ev for ev in follow}
    for ev in burst:
        r, later = rows[ev.alert_id], by_id.get(ev.alert_id)
        if later is not None and later.type == "cleared":
            assert (r["status"], r["cleared_at"]) == ("cleared", datetime.fromtimestamp(later.ts / 1000, UTC))
        else:
            assert (r["status"], r["cleared_at"]) == ("open", None)
        confirmed = later is not None and later.type == "confirmed"
        assert r["confidence"] == ("confirmed" if confirmed else ev.confidence)
    assert await conn.fetchval("SELECT count(*) FROM alert_events") == 200 + len(follow)
