"""Who hears of an alert event, and that its notifications commit (or roll back) with it."""

from __future__ import annotations

from datetime import UTC, datetime, time

import asyncpg
import pytest

from emwatch.store import outbox, writer
from emwatch.store.outbox import Recipient
from tests.notify.conftest import JURISDICTION, OFFICER, SUBJECT, alert, commit_alert

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


async def test_events_of_one_commit_each_reach_their_own_subjects_people(pool: asyncpg.Pool) -> None:
    # A second district under a city: the city's webhook hears of both subjects, each district's
    # officer and webhook only of their own; the events are planned together in one round trip.
    await pool.execute("INSERT INTO jurisdictions (id, name, kind) VALUES ('j-city', 'City', 'city')")
    await pool.execute("UPDATE jurisdictions SET parent_id = 'j-city' WHERE id = $1", JURISDICTION)
    await pool.execute("INSERT INTO jurisdictions (id, name, kind, parent_id) VALUES ('j-other', 'O', 'district', 'j-city')")
    await pool.execute("INSERT INTO subjects (id, name, jurisdiction_id) VALUES ('s-other', 'Other', 'j-other')")
    await pool.execute("INSERT INTO users (username, password_hash, role, jurisdiction_id)"
                       " VALUES ('officer-wang', 'x', 'officer', 'j-other')")
    await pool.execute("INSERT INTO caseload (officer, subject_id, assigned_by) VALUES ('officer-wang', 's-other', 'admin')")
    hooks = {j: await pool.fetchval("INSERT INTO webhooks (url, secret, jurisdiction_id) VALUES ($1, 's', $2)"
                                    " RETURNING id::text", f"http://127.0.0.1:9/{j}", j)
             for j in ("j-city", JURISDICTION, "j-other")}
    events = [alert("serious", subject=SUBJECT), alert("serious", subject="s-other", jurisdiction="j-other"),
              alert("serious", subject=SUBJECT, rule="zone_entry")]
    async with pool.acquire() as conn, conn.transaction():
        committed = await writer.write_alert_events(conn, events)
        await conn.execute("DELETE FROM notifications")  # written one event at a time: plan them together
        added = await outbox.enqueue_many(conn, [(c, c.seq, c.alert_id, MORNING) for c in committed])
    rows = await pool.fetch("SELECT alert_seq, username, channel, target FROM notifications")
    got = {(r["alert_seq"], r["username"] or r["target"]) for r in rows if r["channel"] != "webpush"}
    mine, other, mine_again = (c.seq for c in committed)
    expected = {
        (seq, who) for seq in (mine, mine_again) for who in (OFFICER, hooks["j-city"], hooks[JURISDICTION])
    } | {(other, who) for who in ("officer-wang", hooks["j-city"], hooks["j-other"])}
    assert got == expected
    assert added == len(rows)
