"""The MQTT side: a persistent-session aiomqtt client subscribed to the wire-protocol topics."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import aiomqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

if TYPE_CHECKING:
    from emwatch.ingest.source import OnLink, OnMessage, Receipt
    from emwatch.settings import Settings

log = logging.getLogger(__name__)

PLAIN_SCHEMES = {"mqtt": 1883, "tcp": 1883}
TLS_SCHEMES = {"mqtts": 8883, "ssl": 8883}
TLS_OPTIONS = ("cafile", "certfile", "keyfile", "verify_hostname")
_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class BrokerConfigError(Exception):
    """Bad broker TLS configuration found while reading the settings. Deliberately not a ValueError:
    pydantic would wrap that and echo every setting, the broker password and JWT secret included."""


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in, parsed from `mqtt://user:pass@host:port` or
    `mqtts://user:pass@host:8883?cafile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&verify_hostname=true`.

    As in a libpq DSN, the TLS options travel in the URL so that every client of the broker (ingest,
    alert and officer publishers) gets the same ones: `cafile` (else the system's trusted CAs),
    `certfile`/`keyfile` for a client certificate, `verify_hostname` (default true).
    """

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in PLAIN_SCHEMES and parts.scheme not in TLS_SCHEMES:
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt://host:port or mqtts://)")
        tls = parts.scheme in TLS_SCHEMES
        options = dict(parse_qsl(parts.query, keep_blank_values=True))
        if unknown := sorted(options.keys() - set(TLS_OPTIONS)):
            raise ValueError(f"unknown MQTT URL option(s) {unknown} (known: {', '.join(TLS_OPTIONS)})")
        if options and not tls:
            raise ValueError(f"TLS options {sorted(options)} need an mqtts:// URL")
        verify = options.get("verify_hostname", "true").lower()
        if verify not in _BOOLS:
            raise ValueError(f"verify_hostname must be true or false, not {verify!r}")
        if "keyfile" in options and "certfile" not in options:
            raise ValueError("keyfile without certfile: a client key needs its certificate")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or (TLS_SCHEMES | PLAIN_SCHEMES)[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            tls=tls,
            ca_file=options.get("cafile") or None,
            cert_file=options.get("certfile") or None,
            key_file=options.get("keyfile") or None,
            verify_hostname=_BOOLS[verify],
        )

    def tls_context(self) -> ssl.SSLContext | None:
        """The client TLS context for an mqtts:// address (None for plain MQTT); fails early on bad files."""
        if not self.tls:
            return None
        # Verifies the broker's certificate always (CERT_REQUIRED); only the host name check is optional.
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = self.verify_hostname
        if self.cert_file is not None:
            context.load_cert_chain(self.cert_file, self.key_file)
        return context


def with_tls_options(
    url: str, *, ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None,
    verify_hostname: bool | None = None,
) -> str:
    """`url` with these TLS options added to its query (those already in the URL win); checked by parse()."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    given = {"cafile": ca_file, "certfile": cert_file, "keyfile": key_file,
             "verify_hostname": None if verify_hostname is None else str(verify_hostname).lower()}
    for key, value in given.items():
        if value is not None:
            options.setdefault(key, value)
    merged = urlunsplit(parts._replace(query=urlencode(options)))
    BrokerAddress.parse(merged)
    return merged


def subscription_topics(prefix: str) -> list[str]:
    """Topic filters of wire protocol v1."""
    return [f"{prefix}/devices/+/fix", f"{prefix}/devices/+/event", f"{prefix}/gateways/+/batch"]


def make_client(
    url: str, identifier: str | None, persistent: bool = True, manual_ack: bool = False
) -> aiomqtt.Client:
    """A client for the broker at `url` (mqtt:// or mqtts://, see BrokerAddress). MQTT 3.1.1 so it works
    with Mosquitto and amqtt alike.

    `persistent` keeps the session (and QoS 1 messages queued while we are away) at the broker.
    `manual_ack` withholds each QoS 1 PUBACK until `acknowledge()` is called for it.
    """
    address = BrokerAddress.parse(url)
    client = aiomqtt.Client(
        address.host,
        address.port,
        username=address.username,
        password=address.password,
        identifier=identifier,
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_context=address.tls_context(),
        clean_session=not persistent,
        keepalive=30,
        # 0 = unbounded: aiomqtt drops (with only a warning) what does not fit a bounded queue, and a
        # lost fix can be a missed violation. Back-pressure happens at our bounded batch queue instead.
        max_queued_incoming_messages=0,
        max_inflight_messages=1000,
    )
    if manual_ack:
        # aiomqtt 2.5 has no public manual-ack API (upstream issue empicano/aiomqtt#345); its paho
        # client does: PUBACK only once a fix is committed, so the broker redelivers anything we
        # received but lost in a crash. Must be set before connecting.
        client._client.manual_ack_set(True)
    _read_in_bursts(client._client)
    return client


READ_BURST = 256  # packets per readable event at most: drains the socket without starving the loop


def _read_in_bursts(paho: mqtt.Client) -> None:
    """Make paho's `loop_read` (which aiomqtt calls once per readable event) read every packet already
    received, up to READ_BURST, instead of one: paho 2.x reads a single packet per call unless it has QoS
    messages of its own in flight, so each incoming message otherwise costs a full event-loop wake-up."""

    def loop_read(max_packets: int = 1) -> MQTTErrorCode:
        for _ in range(READ_BURST):
            if paho._sock is None:
                return MQTTErrorCode.MQTT_ERR_NO_CONN
            rc = paho._packet_read()
            if rc == MQTTErrorCode.MQTT_ERR_AGAIN:
                break
            if rc > 0:
                return paho._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    paho.loop_read = loop_read  # type: ignore[method-assign]


def acknowledge(client: aiomqtt.Client, receipts: list[tuple[int, int]]) -> None:
    """Send the PUBACKs for (mid, qos) receipts, in the order the messages arrived (MQTT 4.6)."""
    paho = client._client
    for mid, qos in receipts:
        if qos > 0:
            paho.ack(mid, qos)


class AiomqttLink:
    """The ingest interface's BrokerLink (ingest/source.py) over one connected aiomqtt client."""

    def __init__(self, client: aiomqtt.Client) -> None:
        self.client = client

    def acknowledge(self, receipts: list[Receipt]) -> None:
        acknowledge(self.client, receipts)

    async def publish(self, topic: str, payload: bytes) -> None:
        try:
            await self.client.publish(topic, payload, qos=1)
        except aiomqtt.MqttError as exc:
            log.debug("MQTT publish to %s failed: %s", topic, exc)


async def consume_forever(settings: Settings, on_message: OnMessage, on_link: OnLink) -> None:
    """The aiomqtt source: subscribe on a persistent session with manual PUBACKs, hand every message to
    `on_message`, reconnect (and resubscribe) with backoff forever."""
    assert settings.mqtt_url is not None
    broker = BrokerAddress.parse(settings.mqtt_url)  # logged without the password
    backoff = 0.5
    while True:
        client = make_client(settings.mqtt_url, settings.mqtt_client_id, manual_ack=True)
        try:
            async with client:
                for topic in subscription_topics(settings.topic_prefix):
                    await client.subscribe(topic, qos=1)
                on_link(AiomqttLink(client))
                backoff = 0.5
                log.info("subscribed to %s:%d (aiomqtt)", broker.host, broker.port)
                queued = client._queue  # aiomqtt's own, filled by paho's burst reads (see above)
                async for message in client.messages:
                    await on_message(message.topic.value, _bytes(message.payload), (message.mid, message.qos))
                    # Take what a burst read already queued directly: the iterator costs a task and an
                    # asyncio.wait (several loop turns) per message, and falls behind the reads.
                    # Bounded, so a deep backlog still hands the loop back between batches' worth.
                    for _ in range(settings.batch_max_fixes):
                        if queued.empty():
                            break
                        m = queued.get_nowait()
                        await on_message(m.topic.value, _bytes(m.payload), (m.mid, m.qos))
        except aiomqtt.MqttError as exc:
            on_link(None)
            log.warning("MQTT connection lost (%s); reconnecting in %.1f s", exc, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 15.0)
        finally:
            settle_disconnect(client)  # also when cancelled with the connection already dropped


def settle_disconnect(client: aiomqtt.Client) -> None:
    """Mark the error of a connection the broker dropped as read. aiomqtt keeps it in a future that only
    publish() and the message iterator read (its __aexit__ returns early without), and asyncio reports
    "Future exception was never retrieved" when such a future is collected unread."""
    dropped = getattr(client, "_disconnected", None)
    if isinstance(dropped, asyncio.Future) and dropped.done() and not dropped.cancelled():
        dropped.exception()


def _bytes(payload: object) -> bytes:
    return payload if isinstance(payload, bytes) else str(payload).encode()
