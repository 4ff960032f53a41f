"""Who hears of an alert event, and that its notifications commit (or roll back) with it."""

from __future__ import annotations

from datetime import UTC, datetime, time

import asyncpg
import pytest

from emwatch.store import outbox, writer
from emwatch.store.outbox import Recipient
from tests.notify.conftest import OFFICER, alert, commit_alert

# 02:00 UTC = 10:00 in Shanghai; 15:00 UTC = 23:00 in Shanghai.
MORNING = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
NIGHT = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
QUIET = (time(22, 0), time(7, 0), "Asia/Shanghai")  # wraps midnight
QUIET_ENDS = datetime(2026, 3, 2, 23, 0, tzinfo=UTC)  # 07:00 next morning in Shanghai
AT_ONCE, NOT_SENT = None, "not sent"


@pytest.mark.parametrize(("severity", "min_severity", "quiet", "at", "expected_due"), [
    ("warning", "warning", None, MORNING, AT_ONCE),       # no preferences: everything, at once
    ("warning", "serious", None, MORNING, NOT_SENT),      # below the officer's threshold
    ("serious", "serious", None, MORNING, AT_ONCE),
    ("critical", "critical", None, MORNING, AT_ONCE),
    ("serious", "warning", QUIET, MORNING, AT_ONCE),      # outside quiet hours
    ("serious", "warning", QUIET, NIGHT, QUIET_ENDS),     # quiet hours defer, never drop
    ("critical", "warning", QUIET, NIGHT, AT_ONCE),       # quiet hours never hold back critical
])
def test_routing_by_severity_and_quiet_hours(
    severity: str, min_severity: str, quiet: tuple[time, time, str] | None, at: datetime,
    expected_due: datetime | str | None,
) -> None:
    start, end, tz = quiet or (None, None, None)
    recipient = Recipient(OFFICER, "mqtt", "", min_severity, start, end, tz)
    planned = outbox.plan(alert(severity), at, [recipient])
    assert [due for _, due in planned] == ([] if expected_due == NOT_SENT else [expected_due])


async def test_alert_event_enqueues_for_caseload_officers_and_webhooks(pool: asyncpg.Pool) -> None:
    sub = await pool.fetchval("INSERT INTO push_subscriptions (username, endpoint, p256dh, auth)"
                              " VALUES ($1, 'http://127.0.0.1:9/p', 'k', 'a') RETURNING id", OFFICER)
    hook = await pool.fetchval("INSERT INTO webhooks (url, secret) VALUES ('http://127.0.0.1:9/h', 's') RETURNING id")
    committed = await commit_alert(pool, alert("serious"))
    rows = await pool.fetch("SELECT username, channel, target, status, alert_seq, payload FROM notifications ORDER BY channel")
    assert [(r["username"], r["channel"], r["target"], r["status"]) for r in rows] == [
        (OFFICER, "mqtt", "", "pending"), (None, "webhook", str(hook), "pending"), (OFFICER, "webpush", str(sub), "pending"),
    ]
    assert {r["alert_seq"] for r in rows} == {committed.seq}
    assert rows[0]["payload"]["id"] == committed.alert_id and rows[0]["payload"]["severity"] == "serious"


async def test_officer_channel_preferences_pick_channels(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", OFFICER)
    await commit_alert(pool, alert())
    assert await pool.fetch("SELECT 1 FROM notifications") == []  # webpush only, and no subscription


async def test_notifications_roll_back_with_their_alert(pool: asyncpg.Pool) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with pool.acquire() as conn, conn.transaction():
            await writer.write_alert_events(conn, [alert()])
            assert await conn.fetchval("SELECT count(*) FROM notifications") == 1
            raise Abort
    assert await pool.fetchval("SELECT count(*) FROM notifications") == 0
    assert await pool.fetchval("SELECT count(*) FROM alert_events") == 0
