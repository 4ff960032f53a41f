"""Retries with backoff until the far end acknowledges, exactly once; MQTT to the officer's own topic."""

from __future__ import annotations

import asyncio
import gc
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiomqtt
import asyncpg
import orjson
import pytest_asyncio

from emwatch.embedded import local_mosquitto
from emwatch.ingest.mqtt import make_client
from emwatch.metrics import NOTIFICATIONS
from emwatch.notify.mqtt_officer import MqttOfficerChannel, officer_topic
from emwatch.notify.sender import RetryPolicy, Sender
from emwatch.notify.webhook import WebhookChannel
from emwatch.server_process import free_port
from tests.notify.conftest import LOOPBACK, OFFICER, Clock, WebhookReceiver, alert, commit_alert, statuses


async def test_webhook_failing_three_times_is_delivered_exactly_once(
    pool: asyncpg.Pool, webhook_receiver: WebhookReceiver, clock: Clock,
) -> None:
    await pool.execute("INSERT INTO webhooks (url, secret) VALUES ($1, $2)", webhook_receiver.url, webhook_receiver.secret)
    await pool.execute("INSERT INTO notify_preferences (username, channels) VALUES ($1, '{}')", OFFICER)  # webhook only
    committed = await commit_alert(pool, alert("serious"))
    webhook_receiver.fail_next = 3
    channel = WebhookChannel(pool, guard=LOOPBACK)
    sender = Sender(pool, {"webhook": channel}, clock, RetryPolicy(base_s=2.0, max_s=600.0))
    retried_before = NOTIFICATIONS.labels("webhook", "retried")._value.get()
    try:
        for backoff in (2, 4, 8):  # exponential: each retry waits twice as long as the one before
            assert await sender.deliver_due() == 1
            assert await sender.deliver_due() == 0  # not due again before its backoff ran out
            clock.advance(backoff)
        assert await sender.deliver_due() == 1
        clock.advance(3600)
        assert await sender.deliver_due() == 0
    finally:
        await channel.aclose()
    assert list(webhook_receiver.deliveries.values()) == [1]
    assert webhook_receiver.bodies == [committed.to_message()]
    assert await statuses(pool, "webhook") == [("delivered", 4)]
    assert NOTIFICATIONS.labels("webhook", "retried")._value.get() - retried_before == 3


async def test_webhook_rejecting_for_good_is_not_retried(
    pool: asyncpg.Pool, webhook_receiver: WebhookReceiver, clock: Clock,
) -> None:
    await pool.execute("INSERT INTO webhooks (url, secret) VALUES ($1, 'wrong-secret')", webhook_receiver.url)
    await commit_alert(pool, alert())
    channel = WebhookChannel(pool, guard=LOOPBACK)
    try:
        await Sender(pool, {"webhook": channel}, clock).deliver_due()  # the receiver answers 401
    finally:
        await channel.aclose()
    assert await statuses(pool, "webhook") == [("failed", 1)]


async def delivered_at_once(
    pool: asyncpg.Pool, url: str, channel: MqttOfficerChannel, clock: Clock
) -> aiomqtt.Message:
    """What the officer's terminal receives when the sender's first round delivers the due alert."""
    async with make_client(url, f"terminal-{secrets.token_hex(4)}", persistent=False) as terminal:
        await terminal.subscribe(officer_topic("em/v1", OFFICER), qos=1)
        try:
            assert await Sender(pool, {"mqtt": channel}, clock).deliver_due() == 1
        finally:
            await channel.aclose()
        message: aiomqtt.Message = await anext(terminal.messages)
    return message


async def test_officer_terminal_gets_the_alert_on_its_mqtt_topic(pool: asyncpg.Pool, mqtt_url: str, clock: Clock) -> None:
    committed = await commit_alert(pool, alert("warning"))
    message = await delivered_at_once(pool, mqtt_url, MqttOfficerChannel(mqtt_url, "em/v1"), clock)
    assert str(message.topic) == f"em/v1/officers/{OFFICER}/alerts" and message.qos == 1
    assert isinstance(message.payload, bytes) and orjson.loads(message.payload) == committed.to_message()
    assert await statuses(pool, "mqtt") == [("delivered", 1)]


@pytest_asyncio.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What the event loop's exception handler is given during the test (asyncio's own reports)."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(previous)


async def test_officer_channel_reconnects_at_once_after_the_broker_dropped_it_while_idle(
    pool: asyncpg.Pool, tmp_path: Path, clock: Clock, loop_errors: list[dict[str, Any]],
) -> None:
    port = free_port()
    channel = MqttOfficerChannel("", "em/v1")
    with local_mosquitto(tmp_path / "mqtt", port, persist=False) as url:
        channel.url = url
        await channel._connected()  # connected by an earlier delivery, then idle
    await asyncio.sleep(0.5)  # the broker is gone; the client notices
    with local_mosquitto(tmp_path / "mqtt", port, persist=False) as url:  # the broker is back
        committed = await commit_alert(pool, alert("warning"))
        message = await delivered_at_once(pool, url, channel, clock)  # not after the sender's backoff
    assert isinstance(message.payload, bytes) and orjson.loads(message.payload) == committed.to_message()
    assert await statuses(pool, "mqtt") == [("delivered", 1)]
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_officer_channel_closed_after_the_broker_dropped_it_leaves_no_unretrieved_error(
    tmp_path: Path, loop_errors: list[dict[str, Any]],
) -> None:
    with local_mosquitto(tmp_path / "mqtt", persist=False) as url:
        channel = MqttOfficerChannel(url, "em/v1")
        await channel._connected()
    await asyncio.sleep(0.5)  # the broker is gone; the client notices
    await channel.aclose()
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []
