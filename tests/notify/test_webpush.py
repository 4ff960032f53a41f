"""Web Push end to end against a local push service that verifies VAPID and decrypts aes128gcm."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from emwatch.notify.sender import RetryPolicy, Sender
from emwatch.notify.webpush import WebPushChannel, load_vapid
from tests.notify.conftest import (
    LOOPBACK,
    OFFICER,
    Clock,
    PushService,
    add_subscription,
    alert,
    commit_alert,
    statuses,
)


@pytest.fixture(autouse=True)
async def webpush_only(pool: asyncpg.Pool) -> None:
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{webpush}')", OFFICER)


def webpush_sender(pool: asyncpg.Pool, clock: Clock) -> Sender:
    channel = WebPushChannel(pool, load_vapid(None), "mailto:ops@example.test", guard=LOOPBACK)
    return Sender(pool, {"webpush": channel}, clock, RetryPolicy(base_s=2.0, lease_s=60.0))


async def test_officer_receives_the_decrypted_alert(pool: asyncpg.Pool, push_service: PushService, clock: Clock) -> None:
    browser, endpoint = push_service.browser()
    await add_subscription(pool, endpoint, browser.keys())
    committed = await commit_alert(pool, alert("critical"))
    sender = webpush_sender(pool, clock)
    try:
        await sender.deliver_due()
        await sender.deliver_due()  # nothing left: a delivered notification is never sent again
    finally:
        await sender.channels["webpush"].aclose()
    assert push_service.accepted == [(browser.token, committed.to_message())]
    assert await statuses(pool, "webpush") == [("delivered", 1)]


async def test_expired_subscription_is_removed(pool: asyncpg.Pool, push_service: PushService, clock: Clock) -> None:
    browser, endpoint = push_service.browser()
    push_service.gone.add(browser.token)
    await add_subscription(pool, endpoint, browser.keys())
    await commit_alert(pool, alert())
    sender = webpush_sender(pool, clock)
    try:
        await sender.deliver_due()
    finally:
        await sender.channels["webpush"].aclose()
    assert await statuses(pool, "webpush") == [("failed", 1)]
    assert await pool.fetchval("SELECT count(*) FROM push_subscriptions") == 0
    assert push_service.accepted == []


async def test_restarted_sender_resumes_a_delivery_cut_off_mid_flight(
    pool: asyncpg.Pool, push_service: PushService, clock: Clock,
) -> None:
    browser, endpoint = push_service.browser()
    await add_subscription(pool, endpoint, browser.keys())
    committed = await commit_alert(pool, alert())
    push_service.hold = asyncio.Event()
    first = webpush_sender(pool, clock)
    round_ = asyncio.create_task(first.deliver_due())
    while push_service.requests == 0:  # the request is at the push service, unanswered
        await asyncio.sleep(0.01)
    round_.cancel()  # the service dies mid-delivery
    await asyncio.gather(round_, return_exceptions=True)
    await first.channels["webpush"].aclose()
    push_service.hold = None
    assert await statuses(pool, "webpush") == [("sent", 1)]

    second = webpush_sender(pool, clock)  # a fresh process: all it knows is the table
    try:
        assert await second.deliver_due() == 0  # the lease of the cut-off attempt still holds
        clock.advance(61)
        assert await second.deliver_due() == 1
        assert await second.deliver_due() == 0
    finally:
        await second.channels["webpush"].aclose()
    assert push_service.accepted == [(browser.token, committed.to_message())]
    assert await statuses(pool, "webpush") == [("delivered", 2)]
