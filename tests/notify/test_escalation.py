"""Unacknowledged past the limit, an alert reaches the office head; acknowledged in time, it does not."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from emwatch.notify.sender import Sender
from emwatch.notify.webpush import WebPushChannel, load_vapid
from emwatch.store import lifecycle
from tests.notify.conftest import (
    JURISDICTION,
    OFFICER,
    Clock,
    PushService,
    add_subscription,
    alert,
    commit_alert,
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


@pytest.mark.parametrize(("acknowledged", "minutes_later", "head_hears"), [
    (False, 4, False),   # not yet due
    (False, 6, True),    # 5 minutes unacknowledged: escalated to the office head
    (True, 6, False),    # acknowledged in time: no escalation
])
async def test_escalation_with_a_controlled_clock(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock, office_head: str,
    acknowledged: bool, minutes_later: int, head_hears: bool,
) -> None:
    opened = datetime.fromtimestamp(clock(), tz=UTC)
    committed = await commit_alert(pool, alert("critical", ts_ms=int(clock() * 1000)))
    if acknowledged:
        await pool.execute("UPDATE alerts SET lifecycle = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3"
                           " WHERE id = $1", committed.alert_id, opened, OFFICER)
    clock.advance(minutes_later * 60)
    await lifecycle.escalate_due(pool, datetime.fromtimestamp(clock(), tz=UTC), LIMIT)
    channel = WebPushChannel(pool, load_vapid(None), "mailto:ops@example.test")
    sender = Sender(pool, {"webpush": channel}, clock)
    try:
        await sender.deliver_due()
        await sender.deliver_due()  # a second sweep adds nothing
    finally:
        await channel.aclose()
    heard = [(token, m["type"], m["id"], m["escalated_to"]) for token, m in push_service.accepted]
    assert heard == ([(office_head, "escalated", committed.alert_id, "j-office")] if head_hears else [])
