"""Payloads the fuzzer found (tests/ingest/test_decode_fuzz.py) do not stop the pipeline: each is a dead
letter, and the good fix published after them still raises its alert."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import OUTSIDE, Service, feed, now_ms

DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(("leaf", "payload", "reason"), [
    ("fix", b'{"ts": %d, "lat": 1, "lon": 2, "vendor": ' + DEEP + b"}", "invalid fix"),
    ("event", b'{"ts": %d, "type": "heartbeat", "note": "a\\u0000b"}', "invalid event"),  # jsonb has no NUL
    ("batch", b'[{"dev": "a\\u0000", "ts": %d, "lat": 1, "lon": 2}]', "invalid fix at index 0"),
])
async def test_poison_message_is_a_dead_letter_and_processing_goes_on(
    service: Service, leaf: str, payload: bytes, reason: str
) -> None:
    subject, device = await service.add_subject()
    topic = f"em/v1/gateways/g-{device}/batch" if leaf == "batch" else f"em/v1/devices/{device}/{leaf}"
    async with feed(service, subject) as client:
        await service.publish_raw(topic, payload.replace(b"%d", str(now_ms()).encode()))
        await service.publish_fix(device, *OUTSIDE)
        assert (await client.next())["type"] == "alert"
    await service.drain()
    conn_rows = await service.pipeline.pool.fetch("SELECT reason FROM dead_letters WHERE topic = $1", topic)
    assert [reason in r["reason"] for r in conn_rows] == [True]
