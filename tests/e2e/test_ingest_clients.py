"""The pipeline's delivery contract holds with the other MQTT client too (EMWATCH_MQTT_CLIENT): the
end-to-end tests of that contract, which run with the default client in their own modules, run here again
with the other one (ack after commit, redelivery after a crash, back-pressure, TLS), plus a bad payload
that must become a dead letter without holding up the good fix after it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import get_args

import pytest

import tests.e2e.test_database_outage as outage
import tests.e2e.test_durability as durability
import tests.security.test_mqtt_tls as mqtts
from emwatch.settings import Settings
from tests.e2e.conftest import OUTSIDE, feed, now_ms, running_service
from tests.e2e.test_bad_input import dead_letters, stored_fixes
from tests.security.test_mqtt_tls import TlsBroker, tls_broker  # noqa: F401  (the fixture)

FIELD = Settings.model_fields["mqtt_client"]
OTHER_CLIENT = next(c for c in get_args(FIELD.annotation) if c != FIELD.default)


@pytest.fixture(autouse=True)
def other_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMWATCH_MQTT_CLIENT", OTHER_CLIENT)
    assert Settings().mqtt_client == OTHER_CLIENT


async def test_fix_in_flight_when_the_service_dies_is_redelivered_and_stored_once(
    fresh_database_url: str, mqtt_url: str
) -> None:
    await durability.test_fix_in_flight_when_the_service_dies_is_redelivered_and_stored_once(
        fresh_database_url, mqtt_url)


async def test_nothing_is_acknowledged_before_it_is_stored(tmp_path: Path, mqtt_url: str) -> None:
    await outage.test_nothing_is_acknowledged_before_it_is_stored(tmp_path, mqtt_url)


async def test_full_write_buffer_stops_reading_from_the_broker_and_drops_nothing(
    tmp_path: Path, mqtt_url: str
) -> None:
    await outage.test_full_write_buffer_stops_reading_from_the_broker_and_drops_nothing(tmp_path, mqtt_url)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_service_consumes_and_stores_a_fix_over_mqtts(
    tls_broker: TlsBroker, fresh_database_url: str  # noqa: F811
) -> None:
    await mqtts.test_service_consumes_and_stores_a_fix_over_mqtts(tls_broker, fresh_database_url)


async def test_bad_payload_is_dead_lettered_and_the_good_fix_after_it_alerts(
    fresh_database_url: str, mqtt_url: str
) -> None:
    # A database of its own: the session's shared service must not see a second service writing to its own.
    async with running_service(fresh_database_url, mqtt_url) as (service, _):
        assert service.pipeline.settings.mqtt_client == OTHER_CLIENT
        subject, device = await service.add_subject()
        topic = f"em/v1/devices/{device}/fix"
        async with feed(service, subject) as client:
            await service.publish_raw(topic, b'{"ts": %d, "lat": 91.5, "lon": 120.1}' % now_ms())
            await service.publish_fix(device, *OUTSIDE)
            assert (await client.next())["type"] == "alert"
        await service.drain()
        reasons = await dead_letters(service, topic)
        assert len(reasons) == 1 and "<= 90" in reasons[0], reasons
        assert await stored_fixes(service, device) == [OUTSIDE]
