"""Where a supervised person is, is not for the logs: a fix through the whole pipeline (stored, alerting,
and a rejected one) leaves no coordinate in any record at INFO or above."""

from __future__ import annotations

import logging

import orjson
import pytest

from tests.e2e.conftest import Service, feed, now_ms

# Distinctive coordinates: inside the test county, outside it, and out of range (dead-lettered).
INSIDE = (120.0987654, 30.3012345)
OUTSIDE = (120.2345678, 30.3456789)
INVALID_LAT = 95.4567891


def fragments() -> list[str]:
    """How a coordinate could appear in a message: repr, rounded to 4-6 decimals."""
    values = [*INSIDE, *OUTSIDE, INVALID_LAT]
    return [repr(v) for v in values] + [f"{v:.{d}f}" for v in values for d in (4, 5, 6)]


async def test_fix_alert_and_dead_letter_leave_no_coordinates_in_info_logs(
    service: Service, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="emwatch")
    subject, device = await service.add_subject()
    async with feed(service, subject) as client:
        t0 = now_ms()
        await service.publish_fix(device, *INSIDE, ts=t0)
        await service.publish_fix(device, *OUTSIDE, ts=t0 + 1000)
        alert = await client.next()
    await service.publish_raw(f"em/v1/devices/{device}/fix",
                              orjson.dumps({"ts": t0 + 2000, "lat": INVALID_LAT, "lon": INSIDE[0]}))
    await service.drain()
    assert (alert["type"], alert["lon"], alert["lat"]) == ("alert", *OUTSIDE)  # the path really ran

    records = [r for r in caplog.records if r.levelno >= logging.INFO]
    leaks = [(r.name, r.getMessage()) for r in records for f in fragments() if f in r.getMessage()]
    assert leaks == []
