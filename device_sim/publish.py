"""MQTT publishing (QoS 1) with aiomqtt, reconnecting and resending on broker loss."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from urllib.parse import unquote, urlsplit

import aiomqtt

from device_sim.protocol import Message

log = logging.getLogger(__name__)

# Messages awaited concurrently: enough to hide the PUBACK round trip, small enough that one
# reconnect resends little.
CONCURRENT_PUBLISHES = 256


@dataclass(frozen=True, slots=True)
class MqttTarget:
    """Where to connect, parsed from `mqtt://[user:pass@]host[:port]`."""

    hostname: str
    port: int = 1883
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> MqttTarget:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp") or not parts.hostname:
            raise ValueError(f"expected mqtt://host[:port], got {url!r}")
        return cls(
            hostname=parts.hostname,
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


class Publisher:
    """An MQTT connection that publishes lists of messages at QoS 1, waiting for every PUBACK."""

    def __init__(self, target: MqttTarget, identifier: str, retry_delay_s: float = 2.0) -> None:
        self._target = target
        self._identifier = identifier
        self._retry_delay_s = retry_delay_s
        self._client: aiomqtt.Client | None = None

    async def __aenter__(self) -> Publisher:
        await self._connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._disconnect()

    async def publish_all(self, messages: Sequence[Message]) -> None:
        """Publish every message; on a broker error reconnect and resend the unconfirmed chunk.

        Resending may duplicate a fix; the protocol stores a (device, ts) pair once, so that is safe,
        while giving up would silently lose fixes.
        """
        for start in range(0, len(messages), CONCURRENT_PUBLISHES):
            chunk = messages[start : start + CONCURRENT_PUBLISHES]
            while True:
                try:
                    client = self._client or await self._connect()
                    await asyncio.gather(*(client.publish(topic, payload, qos=1) for topic, payload in chunk))
                    break
                except aiomqtt.MqttError as exc:
                    log.warning("MQTT publish failed (%s); reconnecting in %.0f s", exc, self._retry_delay_s)
                    await self._disconnect()
                    await asyncio.sleep(self._retry_delay_s)

    async def _connect(self) -> aiomqtt.Client:
        t = self._target
        client = aiomqtt.Client(
            t.hostname,
            t.port,
            identifier=self._identifier,
            username=t.username,
            password=t.password,
            max_inflight_messages=CONCURRENT_PUBLISHES,
        )
        await client.__aenter__()
        self._client = client
        log.info("connected to mqtt://%s:%d as %s", t.hostname, t.port, self._identifier)
        return client

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # A connection the broker dropped keeps its error in a future only publish() reads (aiomqtt's
            # __aexit__ returns early): read it, or asyncio reports it as never retrieved.
            dropped = client._disconnected
            if dropped.done() and not dropped.cancelled():
                dropped.exception()
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass  # already gone; nothing left to close
