"""The ingest interface: what the pipeline needs from an MQTT client, whichever library implements it.

A source subscribes to the wire-protocol topics on a persistent session (QoS 1), hands every message to
`on_message` in arrival order, and reconnects forever. Each connection it makes is announced as a
`BrokerLink` (and its loss as None): PUBACKs for that connection's messages go through it, only once
their fixes are committed, so anything received but not yet stored is redelivered after a crash.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from emwatch.settings import Settings

Receipt = tuple[int, int]  # (packet id, QoS) of one received message, acknowledged once committed
OnMessage = Callable[[str, bytes, Receipt], Awaitable[None]]


class BrokerLink(Protocol):
    """One live broker connection, as the pipeline uses it."""

    def acknowledge(self, receipts: list[Receipt]) -> None:
        """Send the PUBACKs for these receipts of this connection, in arrival order (MQTT 4.6)."""

    async def publish(self, topic: str, payload: bytes) -> None:
        """Publish a copy at QoS 1, best effort: a connection error is logged, not raised."""


OnLink = Callable[[BrokerLink | None], None]


async def consume_forever(settings: Settings, on_message: OnMessage, on_link: OnLink) -> None:
    """Run the source chosen by `settings.mqtt_client` until cancelled."""
    assert settings.mqtt_url is not None
    if settings.mqtt_client == "gmqtt":
        from emwatch.ingest import gmqtt_source

        await gmqtt_source.consume_forever(settings, on_message, on_link)
    else:
        from emwatch.ingest import mqtt

        await mqtt.consume_forever(settings, on_message, on_link)
