"""Regression found by benchmarks/chaos.py (seed 11): after a PostgreSQL restart the committer wrote a
backlog of batches in one transaction in which an episode cleared and the next one of the same subject,
rule and zone opened; the new alert was inserted before the old one was cleared, the open-episode index
refused it, and the pipeline stopped for good (every restart redelivered the same batches)."""

from __future__ import annotations

import asyncpg

from emwatch.model import AlertEvent, AlertEventType
from emwatch.store import writer


def event(kind: AlertEventType, seq: int, alert_id: int, ts: int) -> AlertEvent:
    return AlertEvent(kind, "zone_entry", "s", "j", "d", "z", ts, 30.3, 120.1, "critical", seq=seq, alert_id=alert_id)


async def test_an_episode_cleared_and_reopened_in_one_commit_is_stored_as_two_episodes(subject_db: asyncpg.Connection) -> None:
    conn = subject_db
    async with conn.transaction():
        await writer.write_sequenced_alerts(conn, [event("alert", 1, 101, 1_000)])
    async with conn.transaction():  # the backlog: 101 clears, 102 opens and clears, 103 opens
        await writer.write_sequenced_alerts(conn, [
            event("cleared", 2, 101, 2_000), event("alert", 3, 102, 3_000),
            event("cleared", 4, 102, 4_000), event("alert", 5, 103, 5_000),
        ])
    rows = await conn.fetch("SELECT id, status, cleared_at IS NOT NULL AS has_cleared_at FROM alerts ORDER BY id")
    assert [tuple(r) for r in rows] == [(101, "cleared", True), (102, "cleared", True), (103, "open", False)]
    assert await conn.fetchval("SELECT count(*) FROM alert_events") == 5
