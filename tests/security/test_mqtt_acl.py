"""Device credentials on a real Mosquitto: each login publishes and reads only its own topics, strangers
cannot connect, and the TLS listener serves a certificate from a CA made for this test."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest

from emwatch.broker_auth import issue, render_acl
from emwatch.embedded import local_mosquitto
from emwatch.server_process import free_port
from tests.security.ca import make_test_ca

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@dataclass(frozen=True)
class Broker:
    port: int
    tls_port: int
    ca: Path
    passwords: dict[str, str]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    folder = tmp_path_factory.mktemp("mosquitto-auth")
    passwords = issue(folder, devices=["dev-a", "dev-b"], gateways=["gw-1"], officers=["off-1", "off-2"],
                      service_user="emwatch")
    ca, cert, key = make_test_ca(folder)
    tls_port = free_port()
    tls = [f"listener {tls_port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}"]
    with local_mosquitto(folder / "data", auth=(folder / "passwd", folder / "acl"), extra_config=tls) as url:
        yield Broker(int(url.rsplit(":", 1)[1]), tls_port, ca, passwords)


@asynccontextmanager
async def login(broker: Broker, user: str | None, password: str | None = None, *,
                tls: ssl.SSLContext | None = None) -> AsyncIterator[aiomqtt.Client]:
    if user is not None and password is None:
        password = broker.passwords[user]
    client = aiomqtt.Client("127.0.0.1", broker.tls_port if tls else broker.port, username=user, password=password,
                            identifier=f"t-{secrets.token_hex(4)}", tls_context=tls,
                            protocol=aiomqtt.ProtocolVersion.V311)
    async with client:
        yield client


async def delivered_before(observer: aiomqtt.Client, marker: str) -> list[str]:
    """Topics the observer receives up to and including `marker`."""
    topics: list[str] = []
    async with asyncio.timeout(10):
        async for message in observer.messages:
            topics.append(message.topic.value)
            if message.topic.value == marker:
                return topics
    raise AssertionError("unreachable")


MARKER = {"dev-a": "em/v1/devices/dev-a/marker", "gw-1": "em/v1/gateways/gw-1/marker", "emwatch": "em/v1/alerts/m/m"}


@pytest.mark.parametrize(("user", "topic", "allowed"), [
    ("dev-a", "em/v1/devices/dev-a/fix", True),
    ("dev-a", "em/v1/devices/dev-a/event", True),
    ("dev-a", "em/v1/devices/dev-b/fix", False),       # another device's topic
    ("dev-a", "em/v1/gateways/dev-a/batch", False),    # a device cannot pose as a gateway
    ("dev-a", "em/v1/alerts/j-1/s-1", False),
    ("gw-1", "em/v1/gateways/gw-1/batch", True),
    ("gw-1", "em/v1/gateways/gw-2/batch", False),
    ("emwatch", "em/v1/alerts/j-1/s-1", True),
    ("emwatch", "em/v1/devices/dev-a/fix", False),     # the service cannot forge fixes
])
async def test_publish_reaches_the_service_only_on_the_publishers_own_topics(
    broker: Broker, user: str, topic: str, allowed: bool
) -> None:
    async with login(broker, "emwatch") as service:
        await service.subscribe("em/v1/#", qos=1)
        async with login(broker, user) as publisher:
            await publisher.publish(topic, b'{"probe": 1}', qos=1)
            # One connection, QoS 1: the broker forwards in order, so the marker comes after the probe.
            await publisher.publish(MARKER[user], b"{}", qos=1)
        seen = await delivered_before(service, MARKER[user])
    assert (topic in seen) is allowed


async def test_officer_reads_only_their_own_notifications(broker: Broker) -> None:
    async with login(broker, "off-1") as officer, login(broker, "emwatch") as service:
        await officer.subscribe("em/v1/officers/off-1/#", qos=1)
        await officer.subscribe("em/v1/officers/off-2/#", qos=1)
        await service.publish("em/v1/officers/off-2/alerts", b"{}", qos=1)
        await service.publish("em/v1/officers/off-1/alerts", b"{}", qos=1)
        assert await delivered_before(officer, "em/v1/officers/off-1/alerts") == ["em/v1/officers/off-1/alerts"]


@pytest.mark.parametrize(("user", "password"), [
    ("nobody", "guess"),          # unknown user
    ("dev-a", "wrong-password"),  # known user, wrong password
    (None, None),                 # anonymous
])
async def test_unknown_or_wrong_login_cannot_connect(broker: Broker, user: str | None, password: str | None) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with login(broker, user, password):
            pass


async def test_tls_listener_serves_the_test_ca_certificate(broker: Broker) -> None:
    trusting = ssl.create_default_context(cafile=str(broker.ca))
    async with login(broker, "emwatch", tls=trusting) as service:
        await service.subscribe("em/v1/devices/+/fix", qos=1)
        async with login(broker, "dev-a", tls=trusting) as device:
            await device.publish("em/v1/devices/dev-a/fix", b'{"tls": true}', qos=1)
        assert await delivered_before(service, "em/v1/devices/dev-a/fix") == ["em/v1/devices/dev-a/fix"]


async def test_tls_listener_is_refused_by_a_client_that_does_not_trust_its_ca(broker: Broker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with login(broker, "dev-a", tls=ssl.create_default_context()):
            pass


def test_shipped_acl_is_what_the_generator_writes() -> None:
    assert (REPO / "deploy/mosquitto/acl").read_text() == render_acl("emwatch", [])


def test_issuing_again_keeps_earlier_users_and_gateways(tmp_path: Path) -> None:
    first = issue(tmp_path, devices=["dev-a"], gateways=["gw-1"], service_user="emwatch")
    issue(tmp_path, devices=["dev-b"])
    users = [line.split(":", 1)[0] for line in (tmp_path / "passwd").read_text().splitlines()]
    assert sorted(users) == ["dev-a", "dev-b", "emwatch", "gw-1"]
    assert first["dev-a"] not in (tmp_path / "passwd").read_text()  # hashed, never stored in clear
    assert (tmp_path / "acl").read_text() == render_acl("emwatch", ["gw-1"])


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"devices": ["x"], "officers": ["x"]}, "both device and officer"),
    ({"devices": ["a/b"]}, "cannot be an MQTT username"),
    ({"devices": ["+"]}, "cannot be an MQTT username"),
])
def test_ambiguous_or_unsafe_usernames_are_refused(tmp_path: Path, kwargs: dict[str, list[str]], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        issue(tmp_path, **kwargs)  # type: ignore[arg-type]


def test_cli_prints_each_new_password_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from emwatch import cli

    assert cli.main(["devices", "credentials", str(tmp_path), "--device", "dev-z", "--service-user", "emwatch"]) == 0
    rows = dict(line.split(",", 1) for line in capsys.readouterr().out.split())
    assert set(rows) == {"username", "dev-z", "emwatch"} and len(rows["dev-z"]) >= 32
