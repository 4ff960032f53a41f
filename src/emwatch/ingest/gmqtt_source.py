"""The gmqtt source (`EMWATCH_MQTT_CLIENT=gmqtt`): the ingest interface of ingest/source.py over gmqtt.
Draining queued QoS 1 messages it spent ~8 µs of CPU per message where the aiomqtt source spent ~30.

gmqtt's public way to withhold a PUBACK (`optimistic_acknowledgement=False` and an async `on_message`)
runs one task per message and is no cheaper than aiomqtt, so QoS 1 publishes are taken, with their
packet id, from its packet handler instead, and the PUBACKs of a committed batch go out as one write.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections import deque
from typing import Any

import gmqtt
from gmqtt.mqtt.constants import MQTTv311
from gmqtt.mqtt.handler import MQTTConnectError

from emwatch.ingest.mqtt import BrokerAddress, subscription_topics
from emwatch.ingest.source import OnLink, OnMessage, Receipt
from emwatch.settings import Settings

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
HANDSHAKE_TIMEOUT_S = 30.0  # CONNACK and SUBACK: gmqtt itself waits for them forever
_PUBACK = struct.Struct("!BBH")  # MQTT 3.1.1 PUBACK: type 0x40, remaining length 2, packet id


class SubscriptionRefused(Exception):
    """The broker refused a wire-protocol topic filter."""


class _OneConnectionClient(gmqtt.Client):  # type: ignore[misc]  # gmqtt ships no type hints
    """A gmqtt client that never reconnects by itself: consume_forever makes a new one per connection,
    so each connection's packet ids and PUBACKs stay with that connection."""

    async def reconnect(self, delay: bool = False) -> None:
        return None


class GmqttLink:
    """One live gmqtt connection: its received messages, PUBACKs and alert copies."""

    def __init__(self, client: _OneConnectionClient) -> None:
        self.client = client
        self.inbox: deque[tuple[str, bytes, Receipt]] = deque()
        self.arrived = asyncio.Event()
        self.lost = asyncio.Event()
        self.granted: asyncio.Future[tuple[int, ...]] = asyncio.get_running_loop().create_future()
        self.granted.add_done_callback(_consumed)  # a loss before SUBACK may find nobody waiting
        handler = client._package_handler
        # The packet id is what a deferred PUBACK needs, and on_message is not given it. Bound by the
        # broker's in-flight window (Mosquitto's max_inflight_messages): nothing is acknowledged before
        # it is committed, so the inbox cannot outgrow it.
        handler._handle_qos_1_publish_packet = self._received_qos1
        client.on_message = self._received_qos0
        client.on_disconnect = self._disconnected
        client.on_subscribe = self._subscribed

    def _received_qos1(self, mid: int, payload: bytes, topic: str | bytes, properties: Any) -> None:
        self.inbox.append((_text(topic), payload, (mid, 1)))
        self.arrived.set()

    def _received_qos0(self, client: Any, topic: str | bytes, payload: bytes, qos: int, props: Any) -> None:
        self.inbox.append((_text(topic), payload, (0, 0)))
        self.arrived.set()

    def _subscribed(self, client: Any, mid: int, granted: tuple[int, ...], properties: Any) -> None:
        if not self.granted.done():
            self.granted.set_result(tuple(granted))

    def _disconnected(self, client: Any, packet: Any, exc: Any = None) -> None:
        if not self.granted.done():
            self.granted.set_exception(ConnectionResetError("connection lost before the SUBACK"))
        self.lost.set()
        self.arrived.set()

    def acknowledge(self, receipts: list[Receipt]) -> None:
        connection = self.client._connection
        if self.lost.is_set() or connection is None or connection.is_closing():
            return  # unacknowledged, so the broker redelivers them on the next connection
        acks = b"".join([_PUBACK.pack(0x40, 2, mid) for mid, qos in receipts if qos > 0])
        if acks:
            connection.send_package(acks)

    async def publish(self, topic: str, payload: bytes) -> None:
        if self.lost.is_set() or self.client._connection.is_closing():
            log.debug("MQTT publish to %s skipped: connection lost", topic)
            return
        self.client.publish(topic, payload, qos=1)


async def consume_forever(settings: Settings, on_message: OnMessage, on_link: OnLink) -> None:
    """Subscribe on a persistent session with deferred PUBACKs, hand every message to `on_message` in
    arrival order, reconnect (and resubscribe) with backoff forever."""
    assert settings.mqtt_url is not None
    address = BrokerAddress.parse(settings.mqtt_url)
    backoff = 0.5
    while True:
        client = _OneConnectionClient(settings.mqtt_client_id, clean_session=False,
                                      optimistic_acknowledgement=False)
        link = GmqttLink(client)
        if address.username is not None:
            client.set_auth_credentials(address.username, address.password)
        try:
            try:
                await asyncio.wait_for(_subscribe(client, link, address, settings.topic_prefix),
                                       HANDSHAKE_TIMEOUT_S)
            except (OSError, MQTTConnectError, SubscriptionRefused, TimeoutError) as exc:  # SSLError: OSError
                log.warning("MQTT connection failed (%r); retrying in %.1f s", exc, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 15.0)
                continue
            on_link(link)
            backoff = 0.5
            log.info("subscribed to %s:%d (gmqtt)", address.host, address.port)
            await _deliver(link, on_message, settings.batch_max_fixes)
            on_link(None)
            log.warning("MQTT connection lost; reconnecting in %.1f s", backoff)
            await asyncio.sleep(backoff)
        finally:
            await _close(client)


async def _subscribe(client: _OneConnectionClient, link: GmqttLink, address: BrokerAddress, prefix: str
                     ) -> None:
    """Connect and subscribe to the wire-protocol topics at QoS 1, waiting for the SUBACK."""
    await client.connect(address.host, address.port, ssl=address.tls_context() or False,
                         keepalive=KEEPALIVE_S, version=MQTTv311)
    topics = subscription_topics(prefix)
    client.subscribe([gmqtt.Subscription(topic, qos=1) for topic in topics])
    granted = await link.granted
    if refused := [t for t, qos in zip(topics, granted, strict=False) if qos >= 0x80]:
        raise SubscriptionRefused(f"subscription refused: {refused}")  # e.g. by the broker's ACL


async def _deliver(link: GmqttLink, on_message: OnMessage, burst: int) -> None:
    """Hand the inbox to `on_message` until the connection is lost; what is left then was never
    acknowledged and comes again on the next connection."""
    inbox = link.inbox
    while not link.lost.is_set():
        await link.arrived.wait()
        link.arrived.clear()
        taken = 0
        while inbox and not link.lost.is_set():
            topic, payload, receipt = inbox.popleft()
            await on_message(topic, payload, receipt)
            taken += 1
            if taken >= burst:  # a deep backlog still hands the loop back between batches' worth
                taken = 0
                await asyncio.sleep(0)


async def _close(client: _OneConnectionClient) -> None:
    connection = client._connection
    if connection is None:
        return
    try:
        if not connection.is_closing():
            await client.disconnect()
        else:
            await connection.close()
    except (OSError, RuntimeError) as exc:
        log.debug("MQTT close: %s", exc)


def _consumed(future: asyncio.Future[tuple[int, ...]]) -> None:
    if not future.cancelled():
        future.exception()


def _text(topic: str | bytes) -> str:
    # gmqtt passes a topic that is not UTF-8 as bytes; the decoder dead-letters it by its topic
    return topic if isinstance(topic, str) else topic.decode("utf-8", "replace")
