"""The ingest interface (ingest/source.py), the same for every MQTT client: messages in arrival order,
PUBACK only when the pipeline acknowledges (so what was not acknowledged comes again after a crash),
reconnect with resubscription when the broker dropped the session, TLS with a login. Real Mosquitto."""

from __future__ import annotations

import asyncio
import secrets
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import pytest

from emwatch.ingest.mqtt import AiomqttLink, make_client
from emwatch.ingest.source import BrokerLink, Receipt, consume_forever
from emwatch.settings import Settings
from tests.e2e.standalone import wait_for
from tests.security.test_mqtt_acl import Broker, broker  # noqa: F401  (the fixture)

CLIENTS = ["aiomqtt", "gmqtt"]


@dataclass
class Received:
    """What a running source delivered: messages with the index of the link they came by."""

    auto_ack: bool = False
    links: list[BrokerLink | None] = field(default_factory=list)
    messages: list[tuple[str, bytes, Receipt, int]] = field(default_factory=list)

    @property
    def link(self) -> BrokerLink | None:
        return self.links[-1] if self.links else None

    @property
    def payloads(self) -> list[bytes]:
        return [payload for _, payload, _, _ in self.messages]

    def on_link(self, link: BrokerLink | None) -> None:
        self.links.append(link)

    async def on_message(self, topic: str, payload: bytes, receipt: Receipt) -> None:
        self.messages.append((topic, payload, receipt, len(self.links) - 1))
        if self.auto_ack and self.link is not None:
            self.link.acknowledge([receipt])

    def acknowledge(self, payloads: set[bytes]) -> None:
        assert self.link is not None
        self.link.acknowledge([r for _, p, r, _ in self.messages if p in payloads])


@asynccontextmanager
async def running_source(client: str, url: str, client_id: str, prefix: str, auto_ack: bool = False
                         ) -> AsyncIterator[Received]:
    """consume_forever with `client` until the block ends (a crash, as far as the broker knows)."""
    settings = Settings(mqtt_url=url, mqtt_client=client, mqtt_client_id=client_id, topic_prefix=prefix)
    received = Received(auto_ack=auto_ack)
    task = asyncio.create_task(consume_forever(settings, received.on_message, received.on_link))
    try:
        await wait_for(lambda: received.link is not None or task.done())
        assert not task.done(), task
        yield received
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def fresh_prefix() -> str:
    """Topics of this test alone: other tests share the broker."""
    return f"t{secrets.token_hex(4)}/em/v1"


async def publish(url: str, topic: str, payloads: list[bytes]) -> None:
    async with make_client(url, f"pub-{secrets.token_hex(4)}", persistent=False) as publisher:
        for payload in payloads:
            await publisher.publish(topic, payload, qos=1)


async def through_the_link(received: Received, prefix: str, payload: bytes) -> None:
    """Publish on the source's own link and wait until it comes back: everything the link wrote before
    (PUBACKs) has reached the broker."""
    assert received.link is not None
    await received.link.publish(f"{prefix}/devices/marker/event", payload)
    await wait_for(lambda: payload in received.payloads)


@pytest.mark.parametrize("client", CLIENTS)
async def test_only_acknowledged_messages_are_not_delivered_again_after_a_crash(client: str, mqtt_url: str) -> None:
    prefix, client_id = fresh_prefix(), f"src-{secrets.token_hex(4)}"
    async with running_source(client, mqtt_url, client_id, prefix) as first:
        await publish(mqtt_url, f"{prefix}/devices/d/fix", [b"m1", b"m2"])
        await wait_for(lambda: first.payloads == [b"m1", b"m2"])
        first.acknowledge({b"m1"})  # m1 committed; m2 still in the write buffer when the service dies
        await through_the_link(first, prefix, b"marker-1")
    async with running_source(client, mqtt_url, client_id, prefix) as second:
        await wait_for(lambda: len(second.payloads) >= 2)
        assert second.payloads == [b"m2", b"marker-1"]
        second.acknowledge({b"m2", b"marker-1"})
        await through_the_link(second, prefix, b"marker-2")
    async with running_source(client, mqtt_url, client_id, prefix) as third:
        await wait_for(lambda: len(third.payloads) >= 1)
        third.acknowledge({b"marker-2"})
        await through_the_link(third, prefix, b"marker-3")
        assert third.payloads == [b"marker-2", b"marker-3"]


@pytest.mark.parametrize("client", CLIENTS)
async def test_messages_arrive_in_the_order_they_were_published(client: str, mqtt_url: str) -> None:
    prefix = fresh_prefix()
    sent = [str(i).encode() for i in range(300)]
    async with running_source(client, mqtt_url, f"src-{secrets.token_hex(4)}", prefix, auto_ack=True) as got:
        await publish(mqtt_url, f"{prefix}/devices/d/fix", sent)
        await wait_for(lambda: len(got.messages) >= len(sent))
        assert got.payloads == sent
        assert {topic for topic, _, _, _ in got.messages} == {f"{prefix}/devices/d/fix"}
        assert {receipt[1] for _, _, receipt, _ in got.messages} == {1}


@pytest.mark.parametrize("client", CLIENTS)
async def test_source_reconnects_and_subscribes_again_when_the_broker_dropped_its_session(
    client: str, mqtt_url: str
) -> None:
    prefix, client_id = fresh_prefix(), f"src-{secrets.token_hex(4)}"
    async with running_source(client, mqtt_url, client_id, prefix, auto_ack=True) as got:
        # The same client id with a clean session takes the connection over and discards the session,
        # subscriptions included: what a broker restart without persistence does.
        async with make_client(mqtt_url, client_id, persistent=False):
            pass
        await wait_for(lambda: len(got.links) >= 3)
        assert got.links[1] is None and got.links[2] is not None
        await publish(mqtt_url, f"{prefix}/devices/d/fix", [b"after"])
        await wait_for(lambda: b"after" in got.payloads)
        assert got.messages[-1][3] == 2  # received on the new connection


async def test_a_source_stopped_after_the_broker_dropped_it_leaves_no_error_unread(mqtt_url: str) -> None:
    """aiomqtt keeps a dropped connection's error in a future its __aexit__ does not read; unread, asyncio
    reports "Future exception was never retrieved" whenever the client is collected (after a shutdown
    while the pipeline was busy with a batch, say). `_log_traceback` is asyncio's own flag for that."""
    prefix, client_id = fresh_prefix(), f"src-{secrets.token_hex(4)}"
    settings = Settings(mqtt_url=mqtt_url, mqtt_client="aiomqtt", mqtt_client_id=client_id, topic_prefix=prefix)
    links: list[BrokerLink | None] = []
    busy = asyncio.Event()

    async def on_message(topic: str, payload: bytes, receipt: Receipt) -> None:
        busy.set()
        await asyncio.sleep(3600)  # the pipeline busy with this batch

    task = asyncio.create_task(consume_forever(settings, on_message, links.append))
    await wait_for(lambda: bool(links))
    link = links[0]
    assert isinstance(link, AiomqttLink)
    await publish(mqtt_url, f"{prefix}/devices/d/fix", [b"m"])
    await busy.wait()
    async with make_client(mqtt_url, client_id, persistent=False):  # takes the connection over
        pass
    dropped = link.client._disconnected
    await wait_for(dropped.done)
    assert dropped._log_traceback  # an error nobody has read yet
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not dropped._log_traceback


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
@pytest.mark.parametrize("client", CLIENTS)
async def test_source_logs_in_over_tls_and_receives_a_devices_fix(client: str, broker: Broker) -> None:  # noqa: F811
    password = broker.passwords["emwatch"]
    url = f"mqtts://emwatch:{password}@127.0.0.1:{broker.tls_port}?cafile={broker.ca}"
    async with running_source(client, url, f"emwatch-{secrets.token_hex(4)}", "em/v1", auto_ack=True) as got:
        device = f"mqtt://dev-a:{broker.passwords['dev-a']}@127.0.0.1:{broker.port}"
        await publish(device, "em/v1/devices/dev-a/fix", [b'{"ts": 1}'])
        await wait_for(lambda: len(got.messages) >= 1)
        assert got.messages[0][:2] == ("em/v1/devices/dev-a/fix", b'{"ts": 1}')
