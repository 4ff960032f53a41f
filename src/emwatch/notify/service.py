"""Wire the channels and the sender for a running service (the one place app.py calls)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg

from emwatch.notify.channel import Channel
from emwatch.notify.guard import DestinationPolicy
from emwatch.notify.mqtt_officer import MqttOfficerChannel
from emwatch.notify.sender import Sender, close_channels
from emwatch.notify.webhook import WebhookChannel
from emwatch.notify.webpush import WebPushChannel, application_server_key, load_vapid
from emwatch.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Notifier:
    """What routes need of the running notification service."""

    sender: Sender
    vapid_public_key: str  # applicationServerKey for browsers subscribing


def destination_policy(settings: Settings) -> DestinationPolicy:
    """Where push endpoints and webhooks may point, from the settings."""
    return DestinationPolicy.of(settings.notify_allow_http, settings.notify_allowed_networks)


@asynccontextmanager
async def running_notifier(
    settings: Settings, pool: asyncpg.Pool, clock: Callable[[], float]
) -> AsyncIterator[Notifier]:
    """Start the sender on every channel; stop it and close the channels on exit."""
    vapid = load_vapid(settings.vapid_private_key.get_secret_value() if settings.vapid_private_key else None)
    if settings.vapid_private_key is None:
        log.warning("EMWATCH_VAPID_PRIVATE_KEY unset: push subscriptions end with this process's key")
    assert settings.mqtt_url is not None
    guard = destination_policy(settings)
    channels: dict[str, Channel] = {
        "webpush": WebPushChannel(pool, vapid, settings.vapid_subject, guard=guard),
        "mqtt": MqttOfficerChannel(settings.mqtt_url, settings.topic_prefix),
        "webhook": WebhookChannel(pool, guard=guard),
    }
    sender = Sender(pool, channels, clock, poll_s=settings.notify_poll_s)
    task = asyncio.create_task(sender.run(), name="notify-sender")
    try:
        yield Notifier(sender, application_server_key(vapid))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await close_channels(channels)
