"""One end-to-end check per rule family, through real MQTT into the service and out on the WebSocket."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson

from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms


async def permit_loaded(service: Service, permit_id: int, loaded: bool) -> None:
    """Wait until the pipeline's registry has (or no longer has) the permit: NOTIFY is asynchronous."""
    for _ in range(500):
        engine = service.pipeline.engine
        if engine is not None and (permit_id in engine.registry.permits.ids.tolist()) == loaded:
            return
        await asyncio.sleep(0.02)
    raise TimeoutError(f"permit {permit_id} never {'loaded' if loaded else 'unloaded'}")


async def test_strap_cut_alerts_and_closing_it_clears(service: Service) -> None:
    subject, device = await service.add_subject()
    async with feed(service, subject) as client:
        t0 = now_ms()
        await service.publish_raw(f"em/v1/devices/{device}/event", orjson.dumps({"ts": t0, "type": "strap_open"}))
        alert = await client.next()
        assert (alert["type"], alert["rule"], alert["severity"], alert["device_id"]) == (
            "alert", "strap_tamper", "critical", device)
        await service.publish_raw(f"em/v1/devices/{device}/event", orjson.dumps({"ts": t0 + 1, "type": "strap_closed"}))
        cleared = await client.next()
        assert (cleared["type"], cleared["id"]) == ("cleared", alert["id"])


async def test_silent_bracelet_raises_signal_lost_on_the_clock(service: Service) -> None:
    subject, device = await service.add_subject()
    async with feed(service, subject) as client:
        # Last heard from 20 minutes ago: past the medium-risk limit (15 min); the timer notices.
        await service.publish_fix(device, *INSIDE, ts=now_ms() - 20 * 60_000)
        alert = await client.next(timeout=15)
        assert (alert["type"], alert["rule"]) == ("alert", "signal_lost")
        await service.publish_fix(device, *INSIDE)
        cleared = await client.next()
        assert (cleared["type"], cleared["rule"]) == ("cleared", "signal_lost")


async def test_approved_permit_allows_the_trip_and_revoking_it_restores_the_county(service: Service) -> None:
    subject, device = await service.add_subject()
    trip = {
        "type": "Feature", "id": f"trip-{subject}",
        "geometry": {"type": "Polygon", "coordinates": [[[120.15, 30.25], [120.25, 30.25], [120.25, 30.35],
                                                         [120.15, 30.35], [120.15, 30.25]]]},
        "properties": {"kind": "inclusion", "subject_id": subject, "role": "permit_destination"},
    }
    assert (await service.http.post("/api/zones", json=trip)).status_code == 201
    await service.settled([trip["id"]])
    now = datetime.now(UTC)
    r = await service.http.post("/api/permits", json={
        "subject_id": subject, "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(hours=1)).isoformat(), "zone_ids": [trip["id"]], "reason": "hospital visit",
    })
    assert r.status_code == 201, r.text
    permit = r.json()
    assert permit["status"] == "requested"
    r = await service.http.post(f"/api/permits/{permit['id']}/approve")
    assert r.status_code == 200 and r.json()["approved_by"], r.text
    await permit_loaded(service, permit["id"], True)

    async with feed(service, subject) as client:
        await service.publish_fix(device, *OUTSIDE)  # OUTSIDE lies in the trip's destination
        await service.drain()
        await client.expect_silence()

        r = await service.http.post(f"/api/permits/{permit['id']}/revoke")
        assert r.status_code == 200 and r.json()["status"] == "revoked"
        await permit_loaded(service, permit["id"], False)
        await service.publish_fix(device, OUTSIDE[0], OUTSIDE[1] + 1e-4)
        alert = await client.next()
        assert (alert["type"], alert["rule"], alert["zone_id"]) == ("alert", "zone_exit", f"z-{device[2:]}-county")


async def test_permit_with_an_ordinary_zone_as_destination_is_refused(service: Service) -> None:
    subject, device = await service.add_subject()
    now = datetime.now(UTC)
    r = await service.http.post("/api/permits", json={
        "subject_id": subject, "starts_at": now.isoformat(), "ends_at": (now + timedelta(hours=1)).isoformat(),
        "zone_ids": [f"z-{device[2:]}-county"],
    })
    assert r.status_code == 422 and "permit_destination" in r.text


async def test_curfew_catches_a_bracelet_that_sends_nothing(service: Service) -> None:
    subject, device = await service.add_subject()
    home = {
        "type": "Feature", "id": f"home-{subject}",
        "geometry": {"type": "Point", "coordinates": list(INSIDE)},
        # A window from 00:00 to 00:00 is in force around the clock: the curfew applies right now.
        "properties": {"kind": "inclusion", "radius_m": 100, "subject_id": subject,
                       "schedule": {"tz": "Asia/Shanghai", "windows": [{"start": "00:00", "end": "00:00"}]}},
    }
    async with feed(service, subject) as client:
        assert (await service.http.post("/api/zones", json=home)).status_code == 201
        alert = await client.next(timeout=15)  # the clock rule, not a fix, raises it
        assert (alert["type"], alert["rule"], alert["zone_id"], alert["confidence"]) == (
            "alert", "curfew_violation", home["id"], "possible")
        await service.publish_fix(device, *INSIDE)  # at home after all
        cleared = await client.next()
        assert (cleared["type"], cleared["rule"]) == ("cleared", "curfew_violation")


async def test_a_schedule_that_cannot_be_read_is_refused(service: Service) -> None:
    subject, _ = await service.add_subject()
    home = {
        "type": "Feature", "id": f"bad-{subject}", "geometry": {"type": "Point", "coordinates": list(INSIDE)},
        "properties": {"kind": "inclusion", "radius_m": 100, "subject_id": subject,
                       "schedule": {"windows": [{"start": "25:00", "end": "06:00"}]}},
    }
    r = await service.http.post("/api/zones", json=home)
    assert r.status_code == 422 and "25:00" in r.text
