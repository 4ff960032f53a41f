"""A bracelet's fix published over MQTT becomes an operator's WebSocket alert, and its clearance."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms


async def test_fix_outside_inclusion_zone_alerts_once_then_clears(service: Service) -> None:
    subject, device = await service.add_subject()
    async with feed(service, subject) as client:
        t0 = now_ms()
        await service.publish_fix(device, *INSIDE, ts=t0)
        await service.publish_fix(device, *OUTSIDE, ts=t0 + 1000)
        alert = await client.next()
        assert alert["type"] == "alert"
        assert alert["rule"] == "zone_exit"
        assert (alert["device_id"], alert["zone_id"], alert["ts"]) == (device, f"z-{device[2:]}-county", t0 + 1000)
        assert (alert["lon"], alert["lat"]) == OUTSIDE
        assert alert["severity"] == "critical"

        await service.publish_fix(device, *INSIDE, ts=t0 + 2000)
        cleared = await client.next()
        assert cleared["type"] == "cleared"
        assert cleared["id"] == alert["id"]
        assert cleared["seq"] > alert["seq"]
        await client.expect_silence()


async def test_ten_breaching_fixes_make_one_alert(service: Service) -> None:
    subject, device = await service.add_subject()
    async with feed(service, subject) as client:
        t0 = now_ms()
        for i in range(10):
            await service.publish_fix(device, OUTSIDE[0], OUTSIDE[1] + i * 1e-4, ts=t0 + i * 1000)
        assert (await client.next())["type"] == "alert"
        await service.drain()
        await client.expect_silence()
    r = await service.http.get("/api/alerts", params={"subject_id": subject})
    assert [a["status"] for a in r.json()] == ["open"]


async def test_exclusion_zone_entry_alerts(service: Service) -> None:
    victim_home = [[120.099, 30.299], [120.101, 30.299], [120.101, 30.301], [120.099, 30.301], [120.099, 30.299]]
    subject, device = await service.add_subject(exclusion=victim_home)
    async with feed(service, subject) as client:
        t0 = now_ms()
        await service.publish_fix(device, 120.095, 30.295, ts=t0)  # in the county, away from the victim
        await service.publish_fix(device, 120.100, 30.300, ts=t0 + 1000)  # at the victim's home
        alert = await client.next()
        assert (alert["type"], alert["rule"], alert["zone_id"]) == ("alert", "zone_entry", f"z-{device[2:]}-victim")


@pytest.mark.skipif(shutil.which("mosquitto_pub") is None, reason="mosquitto_pub (Debian mosquitto-clients) missing")
async def test_fix_from_mosquitto_pub_alerts(service: Service) -> None:
    subject, device = await service.add_subject()
    host_port = service.mqtt_url.removeprefix("mqtt://")
    host, port = host_port.rsplit(":", 1)
    async with feed(service, subject) as client:
        payload = f'{{"ts": {now_ms()}, "lat": {OUTSIDE[1]}, "lon": {OUTSIDE[0]}, "acc": 12}}'
        proc = await asyncio.create_subprocess_exec(
            "mosquitto_pub", "-h", host, "-p", port, "-q", "1", "-t", f"em/v1/devices/{device}/fix", "-m", payload,
        )
        assert await proc.wait() == 0
        alert = await client.next()
        assert (alert["type"], alert["device_id"]) == ("alert", device)


async def test_gateway_batch_is_evaluated_per_device(service: Service) -> None:
    subject_a, device_a = await service.add_subject()
    subject_b, device_b = await service.add_subject()
    t0 = now_ms()
    import orjson

    batch = [
        {"dev": device_a, "ts": t0, "lat": OUTSIDE[1], "lon": OUTSIDE[0]},
        {"dev": device_b, "ts": t0, "lat": INSIDE[1], "lon": INSIDE[0]},
    ]
    async with feed(service, None) as client:
        await service.publish_raw("em/v1/gateways/gw-1/batch", orjson.dumps(batch))
        alert = await client.next()
        while alert["subject_id"] not in (subject_a, subject_b):
            alert = await client.next()
        assert alert["subject_id"] == subject_a
    await service.drain()
    r = await service.http.get("/api/alerts", params={"subject_id": subject_b})
    assert r.json() == []
