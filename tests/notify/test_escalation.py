"""Unacknowledged past the limit, an alert reaches the office head; acknowledged, it stops for good."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from emwatch.notify.sender import RetryPolicy, Sender
from emwatch.notify.webhook import WebhookChannel
from emwatch.notify.webpush import WebPushChannel, load_vapid
from emwatch.store import lifecycle
from tests.notify.conftest import (
    JURISDICTION,
    LOOPBACK,
    OFFICER,
    Clock,
    PushService,
    WebhookReceiver,
    add_subscription,
    alert,
    commit_alert,
    settle_lifecycle_events,
)

HEAD = "head-zhao"  # supervisor of the office one level above the subject's
LIMIT = {"critical": timedelta(minutes=5)}


@pytest.fixture
async def office_head(pool: asyncpg.Pool, push_service: PushService) -> str:
    """HEAD, a supervisor of the parent office, with a push subscription; the officer has webpush off."""
    await pool.execute("INSERT INTO jurisdictions (id, name, kind) VALUES ('j-office', 'Office', 'office')")
    await pool.execute("UPDATE jurisdictions SET parent_id = 'j-office' WHERE id = $1", JURISDICTION)
    await pool.execute("INSERT INTO users (username, password_hash, role, jurisdiction_id)"
                       " VALUES ($1, 'x', 'supervisor', 'j-office')", HEAD)
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{}')", OFFICER)
    browser, endpoint = push_service.browser()
    await add_subscription(pool, endpoint, browser.keys(), user=HEAD)
    return browser.token


def push_sender(pool: asyncpg.Pool, clock: Clock) -> Sender:
    channel = WebPushChannel(pool, load_vapid(None), "mailto:ops@example.test", guard=LOOPBACK)
    return Sender(pool, {"webpush": channel}, clock, RetryPolicy(base_s=2.0))


def at(clock: Clock) -> datetime:
    return datetime.fromtimestamp(clock(), tz=UTC)


@pytest.mark.parametrize(("acknowledged", "minutes_later", "head_hears"), [
    (False, 4, False),   # not yet due
    (False, 6, True),    # 5 minutes unacknowledged: escalated to the office head
    (True, 6, False),    # acknowledged in time: no escalation
])
async def test_escalation_with_a_controlled_clock(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock, office_head: str,
    acknowledged: bool, minutes_later: int, head_hears: bool,
) -> None:
    committed = await commit_alert(pool, alert("critical", ts_ms=int(clock() * 1000)))
    if acknowledged:
        await lifecycle.acknowledge(pool, committed.alert_id, OFFICER, at(clock))
    clock.advance(minutes_later * 60)
    await lifecycle.escalate_due(pool, at(clock), LIMIT)
    await settle_lifecycle_events(pool)
    sender = push_sender(pool, clock)
    try:
        await sender.deliver_due()
        await sender.deliver_due()  # a second sweep adds nothing
    finally:
        await sender.channels["webpush"].aclose()
    heard = [(token, m["type"], m["id"], m["escalated_to"]) for token, m in push_service.accepted]
    assert heard == ([(office_head, "escalated", committed.alert_id, "j-office")] if head_hears else [])


async def test_acknowledging_marks_the_alerts_notifications_acknowledged(
    pool: asyncpg.Pool, push_service: PushService, webhook_receiver: WebhookReceiver, clock: Clock,
) -> None:
    browser, endpoint = push_service.browser()
    await add_subscription(pool, endpoint, browser.keys())
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", OFFICER)
    await pool.execute("INSERT INTO webhooks (url, secret) VALUES ($1, $2)", webhook_receiver.url, webhook_receiver.secret)
    committed = await commit_alert(pool, alert("critical"))
    sender = push_sender(pool, clock)
    try:
        assert await sender.deliver_due() == 2  # the push is delivered; the webhook has no channel yet
        clock.advance(30)
        ack_time = at(clock)
        assert await lifecycle.acknowledge(pool, committed.alert_id, OFFICER, ack_time)
        hook = WebhookChannel(pool, guard=LOOPBACK)
        sender.channels["webhook"] = hook  # another agency's copy is still owed after the acknowledgement
        clock.advance(3600)
        assert await sender.deliver_due() == 1
        await hook.aclose()
    finally:
        await sender.channels["webpush"].aclose()
    rows = await pool.fetch("SELECT channel, status, acknowledged_at, delivered_at IS NOT NULL AS reached"
                            " FROM notifications ORDER BY channel")
    assert [(r["channel"], r["status"], r["acknowledged_at"], r["reached"]) for r in rows] == [
        ("webhook", "delivered", None, True), ("webpush", "acknowledged", ack_time, True),
    ]
    assert len(push_service.accepted) == 1 and list(webhook_receiver.deliveries.values()) == [1]


async def test_acknowledging_withdraws_an_escalation_still_retrying(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock, office_head: str,
) -> None:
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", HEAD)
    committed = await commit_alert(pool, alert("critical", ts_ms=int(clock() * 1000)))
    clock.advance(6 * 60)
    [escalated] = await lifecycle.escalate_due(pool, at(clock), LIMIT)
    await settle_lifecycle_events(pool)
    push_service.fail_next = 1  # the office head's push service is down for the first try
    sender = push_sender(pool, clock)
    try:
        assert await sender.deliver_due() == 1
        assert await pool.fetchval("SELECT status FROM notifications WHERE username = $1", HEAD) == "pending"
        await lifecycle.acknowledge(pool, committed.alert_id, OFFICER, at(clock))
        clock.advance(3600)  # long past the retry, and past where level 2 would have been due
        assert await lifecycle.escalate_due(pool, at(clock), LIMIT) == []
        assert await sender.deliver_due() == 0
    finally:
        await sender.channels["webpush"].aclose()
    assert escalated["type"] == "escalated" and push_service.accepted == []
    row = await pool.fetchrow("SELECT status, delivered_at FROM notifications WHERE username = $1", HEAD)
    assert (row["status"], row["delivered_at"]) == ("acknowledged", None)


async def test_escalation_honours_the_heads_channels(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock, office_head: str,
) -> None:
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{mqtt}')", HEAD)
    await commit_alert(pool, alert("critical", ts_ms=int(clock() * 1000)))
    clock.advance(6 * 60)
    await lifecycle.escalate_due(pool, at(clock), LIMIT)
    await settle_lifecycle_events(pool)
    sender = push_sender(pool, clock)
    try:
        await sender.deliver_due()
    finally:
        await sender.channels["webpush"].aclose()
    rows = await pool.fetch("SELECT channel FROM notifications WHERE username = $1", HEAD)
    assert [r["channel"] for r in rows] == ["mqtt"]
