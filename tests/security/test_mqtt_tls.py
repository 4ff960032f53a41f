"""mqtts:// for the service: it consumes and stores a fix over TLS from a broker whose certificate a CA
made in this test signed; clients that do not trust that CA, expect another host name, or (on a listener
that requires one) lack a client certificate are refused."""

from __future__ import annotations

import asyncio
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import asyncpg
import orjson
import pytest

from emwatch.embedded import local_mosquitto
from emwatch.feed.hub import AlertFeed
from emwatch.ingest.mqtt import BrokerAddress, BrokerConfigError, make_client
from emwatch.pipeline import Pipeline
from emwatch.server_process import free_port
from emwatch.settings import Settings
from emwatch.store.db import connect_pool, migrate
from tests.e2e.standalone import seed_one_subject, wait_for
from tests.security.ca import make_client_cert, make_test_ca

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")


@dataclass(frozen=True)
class TlsBroker:
    tls_port: int  # server certificate only
    mutual_port: int  # also requires a client certificate from the same CA
    ca: Path
    other_ca: Path  # a CA that signed nothing the broker shows
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    folder, stranger = tmp_path_factory.mktemp("mosquitto-tls"), tmp_path_factory.mktemp("other-ca")
    ca, cert, key = make_test_ca(folder)
    client_cert, client_key = make_client_cert(folder, "emwatch-ingest")
    other_ca, _, _ = make_test_ca(stranger)
    tls_port, mutual_port = free_port(), free_port()
    listeners = [
        f"listener {tls_port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}",
        f"listener {mutual_port} 127.0.0.1", f"certfile {cert}", f"keyfile {key}", f"cafile {ca}",
        "require_certificate true",
    ]
    with local_mosquitto(folder / "data", extra_config=listeners, persist=False):
        yield TlsBroker(tls_port, mutual_port, ca, other_ca, client_cert, client_key)


async def connects(url: str) -> bool:
    """Whether a client for `url` completes the MQTT (and TLS) handshake."""
    try:
        async with make_client(url, f"probe-{secrets.token_hex(4)}", persistent=False):
            return True
    except aiomqtt.MqttError:
        return False


async def test_service_consumes_and_stores_a_fix_over_mqtts(tls_broker: TlsBroker, fresh_database_url: str) -> None:
    await migrate(fresh_database_url)
    await seed_one_subject(fresh_database_url)
    settings = Settings(  # the CA comes from the settings, as EMWATCH_MQTT_TLS_CA_FILE would give it
        database_url=fresh_database_url, mqtt_url=f"mqtts://127.0.0.1:{tls_broker.tls_port}",
        mqtt_tls_ca_file=tls_broker.ca, batch_max_ms=20, mqtt_client_id=f"emwatch-tls-{secrets.token_hex(4)}",
    )
    assert BrokerAddress.parse(settings.mqtt_url or "").ca_file == str(tls_broker.ca)
    async with connect_pool(fresh_database_url) as pool:
        pipeline = Pipeline(settings, pool, AlertFeed())
        running = asyncio.create_task(pipeline.run())
        try:
            await wait_for(lambda: pipeline.mqtt_connected)
            async with make_client(settings.mqtt_url or "", f"dev-{secrets.token_hex(4)}", persistent=False) as device:
                fix = {"ts": int(time.time() * 1000), "lat": 30.3, "lon": 120.1}
                await device.publish("em/v1/devices/d/fix", orjson.dumps(fix), qos=1)
            await wait_for(lambda: pipeline.batches_done >= 1 and pipeline.idle)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM fixes WHERE device_id = 'd'") == 1
    finally:
        await conn.close()


async def test_a_client_that_does_not_trust_the_brokers_ca_is_refused(tls_broker: TlsBroker) -> None:
    base = f"mqtts://127.0.0.1:{tls_broker.tls_port}"
    assert await connects(f"{base}?cafile={tls_broker.ca}")
    assert not await connects(f"{base}?cafile={tls_broker.other_ca}")
    assert not await connects(base)  # the system's CAs do not know the test CA either
    # The chain is verified even with the host name check off.
    assert not await connects(f"{base}?cafile={tls_broker.other_ca}&verify_hostname=false")


async def test_host_name_must_match_the_certificate_unless_told_otherwise(tls_broker: TlsBroker) -> None:
    by_name = f"mqtts://localhost:{tls_broker.tls_port}?cafile={tls_broker.ca}"  # certificate says 127.0.0.1
    assert not await connects(by_name)
    assert await connects(by_name + "&verify_hostname=false")


async def test_listener_requiring_a_client_certificate_admits_only_one_from_its_ca(tls_broker: TlsBroker) -> None:
    base = f"mqtts://127.0.0.1:{tls_broker.mutual_port}?cafile={tls_broker.ca}"
    assert not await connects(base)
    settings = Settings(mqtt_url=base, mqtt_tls_cert_file=tls_broker.client_cert,
                        mqtt_tls_key_file=tls_broker.client_key)
    assert await connects(settings.mqtt_url or "")


@pytest.mark.parametrize(("url", "error"), [
    ("mqtt://h:1883?cafile=/ca.pem", "need an mqtts:// URL"),
    ("mqtts://h?ca=/ca.pem", "unknown MQTT URL option"),
    ("mqtts://h?verify_hostname=maybe", "verify_hostname must be true or false"),
    ("mqtts://h?keyfile=/k.pem", "keyfile without certfile"),
    ("http://h", "unsupported MQTT URL scheme"),
])
def test_bad_broker_urls_are_refused_with_a_reason(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        BrokerAddress.parse(url)


def test_mqtts_defaults_to_port_8883_and_verifies_host_names() -> None:
    address = BrokerAddress.parse("mqtts://user:p%40ss@broker.example")
    assert (address.port, address.tls, address.verify_hostname, address.password) == (8883, True, True, "p@ss")
    assert BrokerAddress.parse("mqtt://broker.example").tls_context() is None


@pytest.mark.parametrize(("settings", "error"), [
    ({"mqtt_url": None, "mqtt_tls_ca_file": "/ca.pem"}, "need EMWATCH_MQTT_URL"),
    ({"mqtt_url": "mqtt://emwatch:s3cret@h:1883", "mqtt_tls_ca_file": "/ca.pem"}, "need an mqtts:// URL"),
    ({"mqtt_url": "mqtts://emwatch:s3cret@h:8883", "mqtt_tls_ca_file": "/no/such/ca.pem"}, "No such file"),
    ({"mqtt_url": "mqtts://emwatch:s3cret@h:8883?cafile=/no/such/ca.pem"}, "No such file"),
])
def test_bad_tls_settings_stop_the_start_without_echoing_secrets(settings: dict[str, str | None], error: str) -> None:
    with pytest.raises(BrokerConfigError, match=error) as raised:
        Settings(**settings, jwt_secret="jwt-s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in str(raised.value)
