"""`revised` events move an alert's stored bounds in seq order, never opening or closing it."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import orjson

from emwatch.model import AlertEvent, AlertEventType
from emwatch.store import writer


def event(kind: AlertEventType, seq: int, alert_id: int, ts: int,
          bounds: tuple[int, int | None] | None = None) -> AlertEvent:
    data = None if bounds is None else {"opened_at": bounds[0], "cleared_at": bounds[1],
                                        "was_opened_at": None, "was_cleared_at": None}
    return AlertEvent(kind, "zone_exit", "s", "j", "d", f"z{alert_id}", ts, None, None, "critical",
                      seq=seq, alert_id=alert_id, data=data)


def ms(value: datetime | None) -> int | None:
    return None if value is None else round(value.timestamp() * 1000)


async def test_revisions_apply_in_seq_order_and_keep_open_alerts_open(subject_db: asyncpg.Connection) -> None:
    conn = subject_db
    async with conn.transaction():
        await writer.write_sequenced_alerts(conn, [
            event("alert", 1, 101, 100_000), event("cleared", 2, 101, 200_000),
            event("alert", 3, 102, 300_000),
        ])
    async with conn.transaction():  # one commit, several revisions: the last of each alert wins
        await writer.write_sequenced_alerts(conn, [
            event("revised", 4, 101, 90_000, (90_000, 250_000)),
            event("revised", 5, 102, 280_000, (280_000, None)),
            event("revised", 6, 101, 80_000, (80_000, 260_000)),
            event("revised", 7, 102, 270_000, (270_000, 400_000)),  # an open alert is not closed
        ])
    rows = await conn.fetch("SELECT id, status, opened_at, cleared_at FROM alerts ORDER BY id")
    assert [(r["id"], r["status"], ms(r["opened_at"]), ms(r["cleared_at"])) for r in rows] == [
        (101, "cleared", 80_000, 260_000), (102, "open", 270_000, None),
    ]
    stored = await conn.fetchrow("SELECT type, ts, data FROM alert_events WHERE seq = 6")
    assert (stored["type"], stored["ts"]) == ("revised", datetime.fromtimestamp(80, tz=UTC))
    assert orjson.loads(stored["data"])["opened_at"] == 80_000  # a plain connection: jsonb as text
    assert await conn.fetchval("SELECT count(*) FROM alert_events WHERE data IS NOT NULL") == 4
