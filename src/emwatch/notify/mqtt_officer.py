"""MQTT per officer: each alert on `{prefix}/officers/{username}/alerts`, QoS 1, for the mobile terminal."""

from __future__ import annotations

import asyncio
import secrets

import aiomqtt
import orjson

from emwatch.ingest.mqtt import make_client, settle_disconnect
from emwatch.notify.channel import DeliveryError, Notification


def officer_topic(prefix: str, username: str) -> str:
    """The one topic an officer's terminal reads (the broker ACL grants each officer only their own)."""
    return f"{prefix}/officers/{username}/alerts"


class MqttOfficerChannel:
    """Publishes with QoS 1 and returns once the broker's PUBACK arrived; reconnects after a failure."""

    name = "mqtt"

    def __init__(self, url: str, prefix: str = "em/v1", timeout_s: float = 10.0) -> None:
        self.url, self.prefix, self.timeout_s = url, prefix, timeout_s
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()  # one connect at a time; publishes share the connection

    async def _connected(self) -> tuple[aiomqtt.Client, bool]:
        """The shared client, and whether it was connected just now (False: reused)."""
        async with self._lock:
            if self._client is None:
                client = make_client(self.url, f"emwatch-notify-{secrets.token_hex(4)}", persistent=False)
                await client.__aenter__()
                self._client = client
                return client, True
            return self._client, False

    async def deliver(self, notification: Notification) -> None:
        """Publish the alert to the officer's topic; a broker problem is retried by the sender."""
        if not notification.username:
            raise DeliveryError("mqtt notification without an officer", permanent=True)
        topic = officer_topic(self.prefix, notification.username)
        payload = orjson.dumps(notification.payload)
        for attempt in (1, 2):
            client: aiomqtt.Client | None = None
            fresh = False
            try:
                client, fresh = await self._connected()
                await client.publish(topic, payload, qos=1, timeout=self.timeout_s)
                return
            except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
                await self.aclose()  # start over with a fresh connection next time
                # A connection the broker dropped while it sat idle fails its next publish at once:
                # that says nothing of the broker now, so try once more on a new connection rather
                # than leave the officer waiting for the sender's backoff.
                stale = client is not None and not fresh and isinstance(exc, aiomqtt.MqttError)
                if attempt == 2 or not stale:
                    raise DeliveryError(f"mqtt publish failed: {exc!r}") from exc

    async def aclose(self) -> None:
        """Disconnect (idempotent)."""
        client, self._client = self._client, None
        if client is None:
            return
        settle_disconnect(client)
        try:
            await client.__aexit__(None, None, None)
        except (aiomqtt.MqttError, OSError):
            pass  # already gone
