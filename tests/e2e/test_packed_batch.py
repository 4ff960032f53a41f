"""A packed (binary) gateway batch through Mosquitto: its fixes are stored and alert like a JSON batch's."""

from __future__ import annotations

import numpy as np

from emwatch.ingest.packed import encode_batch
from tests.e2e.conftest import INSIDE, OUTSIDE, Service, feed, now_ms
from tests.e2e.test_bad_input import dead_letters, stored_fixes


async def test_packed_batch_is_stored_and_alerts_like_json(service: Service) -> None:
    subject_a, device_a = await service.add_subject()
    subject_b, device_b = await service.add_subject()
    t0 = now_ms()
    # a breaches its county; b stays inside; the third row (lat 300) is dead-lettered on its own
    payload = encode_batch([device_a, device_b, device_a], [t0, t0, t0 + 1],
                           [OUTSIDE[1], INSIDE[1], 300.0], [OUTSIDE[0], INSIDE[0], OUTSIDE[0]],
                           acc=np.array([8.5, np.nan, 1.0]), batt=[87, 255, 50])
    topic = "em/v1/gateways/gw-packed/batch"
    async with feed(service, None) as client:
        await service.publish_raw(topic, payload)
        alert = await client.next()
        while alert["subject_id"] not in (subject_a, subject_b):
            alert = await client.next()
        assert (alert["type"], alert["rule"], alert["subject_id"], alert["device_id"], alert["ts"]) == (
            "alert", "zone_exit", subject_a, device_a, t0)
        assert (alert["lon"], alert["lat"]) == OUTSIDE
    await service.drain()
    assert await stored_fixes(service, device_a) == [OUTSIDE]
    assert await stored_fixes(service, device_b) == [INSIDE]
    reasons = await dead_letters(service, topic)
    assert len(reasons) == 1 and "invalid fix at index 2" in reasons[0] and "lat 300.0" in reasons[0], reasons
    r = await service.http.get("/api/alerts", params={"subject_id": subject_b})
    assert r.json() == []


async def test_garbled_packed_batch_is_one_dead_letter(service: Service) -> None:
    _, device = await service.add_subject()
    payload = encode_batch([device], [now_ms()], [INSIDE[1]], [INSIDE[0]])
    topic = "em/v1/gateways/gw-garbled/batch"
    await service.publish_raw(topic, payload[:-3])  # truncated in transit
    await service.drain()
    reasons = await dead_letters(service, topic)
    assert len(reasons) == 1 and "invalid gateway batch" in reasons[0], reasons
    assert await stored_fixes(service, device) == []
