"""Bad input is dead-lettered with a reason and never blocks the good fixes around it."""

from __future__ import annotations

import asyncpg
import orjson
import pytest

from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms


async def dead_letters(service: Service, topic: str) -> list[str]:
    conn = await asyncpg.connect(service.pipeline.settings.database_url)
    try:
        rows = await conn.fetch("SELECT reason FROM dead_letters WHERE topic = $1 ORDER BY id", topic)
    finally:
        await conn.close()
    return [r["reason"] for r in rows]


async def stored_fixes(service: Service, device: str) -> list[tuple[float, float]]:
    conn = await asyncpg.connect(service.pipeline.settings.database_url)
    try:
        rows = await conn.fetch("SELECT lon, lat FROM fixes WHERE device_id = $1 ORDER BY ts", device)
    finally:
        await conn.close()
    return [(r["lon"], r["lat"]) for r in rows]


@pytest.mark.parametrize(("payload", "reason"), [
    (b"{not json", "malformed"),
    (b'{"ts": %d, "lat": NaN, "lon": 120.1}', "malformed"),
    (b'{"ts": %d, "lat": 91.5, "lon": 120.1}', "<= 90"),
    (b'{"ts": %d, "lat": 30.1, "lon": 1e999}', "out of range"),
    (b'{"ts": "yesterday", "lat": 30.1, "lon": 120.1}', "Expected `int`, got `str`"),
    (b'{"ts": %d, "lat": 30.1, "lon": 120.1, "acc": -3}', ">= 0.0"),
    (b'{"ts": 1000, "lat": 30.1, "lon": 120.1}', "older than"),
    (b'[1, 2]', "Expected `object`"),
])
async def test_bad_single_fix_is_dead_lettered_and_good_fix_after_it_alerts(
    service: Service, payload: bytes, reason: str
) -> None:
    subject, device = await service.add_subject()
    topic = f"em/v1/devices/{device}/fix"
    async with feed(service, subject) as client:
        await service.publish_raw(topic, payload.replace(b"%d", str(now_ms()).encode()))
        await service.publish_fix(device, *OUTSIDE)
        assert (await client.next())["type"] == "alert"
    await service.drain()
    reasons = await dead_letters(service, topic)
    assert len(reasons) == 1 and reason in reasons[0], reasons
    assert await stored_fixes(service, device) == [OUTSIDE]


async def test_unknown_device_is_dead_lettered(service: Service) -> None:
    topic = "em/v1/devices/nobody-knows-me/fix"
    await service.publish_raw(topic, orjson.dumps({"ts": now_ms(), "lat": 30.3, "lon": 120.1}))
    await service.drain()
    assert await dead_letters(service, topic) == ["unknown device"]


async def test_gateway_batch_keeps_good_elements_and_dead_letters_bad_ones(service: Service) -> None:
    subject, device = await service.add_subject()
    t0 = now_ms()
    batch = (b'[{"dev": "%s", "ts": %d, "lat": 30.3, "lon": 120.1},'
             b' {"dev": "%s", "ts": %d, "lat": 300, "lon": 120.1},'
             b' {"ts": %d, "lat": 30.3, "lon": 120.1},'
             b' {"dev": "%s", "ts": %d, "lat": %f, "lon": %f}]') % (
        device.encode(), t0, device.encode(), t0 + 1, t0 + 2, device.encode(), t0 + 3, OUTSIDE[1], OUTSIDE[0])
    topic = "em/v1/gateways/gw-bad/batch"
    async with feed(service, subject) as client:
        await service.publish_raw(topic, batch)
        alert = await client.next()
        assert (alert["type"], alert["ts"]) == ("alert", t0 + 3)
    await service.drain()
    reasons = await dead_letters(service, topic)
    assert len(reasons) == 2
    assert "index 1" in reasons[0] and "<= 90" in reasons[0]
    assert "index 2" in reasons[1] and "dev" in reasons[1]
    assert await stored_fixes(service, device) == [(120.1, 30.3), OUTSIDE]


async def test_oversized_payload_is_rejected_unparsed(service: Service) -> None:
    topic = "em/v1/gateways/gw-huge/batch"
    await service.publish_raw(topic, b"[" + b" " * (service.pipeline.settings.max_payload_bytes + 1) + b"]")
    await service.drain()
    reasons = await dead_letters(service, topic)
    assert len(reasons) == 1 and "over limit" in reasons[0]


async def test_same_qos1_fix_delivered_twice_is_stored_once(service: Service) -> None:
    _, device = await service.add_subject()
    ts = now_ms()
    for _ in range(2):  # what a broker redelivery after a lost PUBACK looks like to us
        await service.publish_fix(device, *INSIDE, ts=ts)
        await service.drain()
    assert await stored_fixes(service, device) == [INSIDE]
