"""The MQTT side: a persistent-session aiomqtt client subscribed to the wire-protocol topics."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import aiomqtt


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where the broker is and how to log in, parsed from `mqtt://user:pass@host:port`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"unsupported MQTT URL scheme {parts.scheme!r} (use mqtt://host:port)")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 1883,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )


def subscription_topics(prefix: str) -> list[str]:
    """Topic filters of wire protocol v1."""
    return [f"{prefix}/devices/+/fix", f"{prefix}/devices/+/event", f"{prefix}/gateways/+/batch"]


def make_client(
    url: str, identifier: str | None, persistent: bool = True, manual_ack: bool = False
) -> aiomqtt.Client:
    """A client for the broker at `url`. MQTT 3.1.1 so it works with Mosquitto and amqtt alike.

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
    return client


def acknowledge(client: aiomqtt.Client, receipts: list[tuple[int, int]]) -> None:
    """Send the PUBACKs for (mid, qos) receipts, in the order the messages arrived (MQTT 4.6)."""
    paho = client._client
    for mid, qos in receipts:
        if qos > 0:
            paho.ack(mid, qos)
